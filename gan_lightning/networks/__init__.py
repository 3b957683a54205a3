"""Reference generator/discriminator architectures. Any ``nn.Module`` works with ``GANModule``.

A generator maps a latent batch of shape ``(N, latent_dim)`` to samples and exposes ``latent_dim``;
a discriminator maps samples to raw scores of shape ``(N,)`` or ``(N, 1)`` (no sigmoid). A conditional
network has ``num_classes > 0`` and takes a LongTensor of labels ``(N,)`` as second argument
(``G(z, labels)``, ``D(x, labels)``); unconditional ones have ``num_classes = 0``.
"""

from gan_lightning.networks.dcgan import DCGANDiscriminator, DCGANGenerator
from gan_lightning.networks.layers import (
    ConditionalBatchNorm2d,
    MinibatchDiscrimination,
    MinibatchStdDev,
    spectral_normalize,
)
from gan_lightning.networks.mlp import MLPDiscriminator, MLPGenerator
from gan_lightning.networks.packing import PackedDiscriminator
from gan_lightning.networks.resnet import SNGANResNetDiscriminator, SNGANResNetGenerator

__all__ = [
    "ConditionalBatchNorm2d",
    "DCGANDiscriminator",
    "DCGANGenerator",
    "MLPDiscriminator",
    "MLPGenerator",
    "MinibatchDiscrimination",
    "MinibatchStdDev",
    "PackedDiscriminator",
    "SNGANResNetDiscriminator",
    "SNGANResNetGenerator",
    "spectral_normalize",
]
