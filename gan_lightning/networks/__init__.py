"""Reference generator/discriminator architectures. Any ``nn.Module`` works with ``GANModule``.

A generator maps a latent batch of shape ``(N, latent_dim)`` to samples and exposes ``latent_dim``;
a discriminator maps samples to raw scores of shape ``(N,)`` or ``(N, 1)`` (no sigmoid).
"""

from gan_lightning.networks.dcgan import DCGANDiscriminator, DCGANGenerator
from gan_lightning.networks.mlp import MLPDiscriminator, MLPGenerator

__all__ = ["DCGANDiscriminator", "DCGANGenerator", "MLPDiscriminator", "MLPGenerator"]
