"""DCGAN (Radford et al. 2016, "Unsupervised Representation Learning with Deep Convolutional GANs").

Strided (transposed) 4x4 convolutions double/halve the resolution between 4x4 and ``image_size``; G uses
BatchNorm + ReLU and a tanh output, D uses LeakyReLU(0.2) and BatchNorm after the first layer, and
weights start from N(0, 0.02) as in the paper.
"""

from __future__ import annotations

import math

from torch import Tensor, nn

from gan_lightning.errors import ConfigurationError

_MIN_SIZE, _MAX_SIZE = 8, 512


def _num_doublings(cls_name: str, image_size: int) -> int:
    n = int(round(math.log2(image_size))) if image_size > 0 else 0
    if image_size < _MIN_SIZE or image_size > _MAX_SIZE or 2**n != image_size:
        raise ConfigurationError(
            f"{cls_name} cannot produce image_size={image_size}: DCGAN doubles the resolution from 4x4, so the size "
            f"must be a power of two between {_MIN_SIZE} and {_MAX_SIZE} (for example 32 or 64). "
            "Resize the data instead (for example --data.init_args.image_size=32)."
        )
    return n - 2


def _dcgan_init(module: nn.Module) -> None:
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
        nn.init.normal_(module.weight, 0.0, 0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.BatchNorm2d):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


class DCGANGenerator(nn.Module):
    """Latent (N, latent_dim) -> images (N, channels, image_size, image_size) in [-1, 1]."""

    def __init__(
        self,
        latent_dim: int = 100,
        image_size: int = 32,
        channels: int = 3,
        width: int = 64,
        batch_norm: bool = True,
    ):
        super().__init__()
        doublings = _num_doublings(type(self).__name__, image_size)
        self.latent_dim, self.image_size, self.channels = latent_dim, image_size, channels
        feats = width * 2 ** (doublings - 1)
        layers: list[nn.Module] = [nn.ConvTranspose2d(latent_dim, feats, 4, 1, 0, bias=not batch_norm)]
        for _ in range(doublings - 1):
            if batch_norm:
                layers.append(nn.BatchNorm2d(feats))
            layers += [nn.ReLU(inplace=True), nn.ConvTranspose2d(feats, feats // 2, 4, 2, 1, bias=not batch_norm)]
            feats //= 2
        if batch_norm:
            layers.append(nn.BatchNorm2d(feats))
        layers += [nn.ReLU(inplace=True), nn.ConvTranspose2d(feats, channels, 4, 2, 1), nn.Tanh()]
        self.net = nn.Sequential(*layers)
        self.apply(_dcgan_init)

    def forward(self, z: Tensor) -> Tensor:
        return self.net(z.view(z.shape[0], self.latent_dim, 1, 1))


class DCGANDiscriminator(nn.Module):
    """Images -> one raw score per image. ``dropout`` > 0 adds Dropout2d after each hidden block."""

    def __init__(
        self,
        image_size: int = 32,
        channels: int = 3,
        width: int = 64,
        batch_norm: bool = True,
        dropout: float = 0.0,
    ):
        super().__init__()
        halvings = _num_doublings(type(self).__name__, image_size)
        self.image_size, self.channels = image_size, channels
        feats = width
        layers: list[nn.Module] = [nn.Conv2d(channels, feats, 4, 2, 1), nn.LeakyReLU(0.2, inplace=True)]
        if dropout:
            layers.append(nn.Dropout2d(dropout))
        for _ in range(halvings - 1):
            layers.append(nn.Conv2d(feats, feats * 2, 4, 2, 1, bias=not batch_norm))
            if batch_norm:
                layers.append(nn.BatchNorm2d(feats * 2))
            layers.append(nn.LeakyReLU(0.2, inplace=True))
            if dropout:
                layers.append(nn.Dropout2d(dropout))
            feats *= 2
        layers.append(nn.Conv2d(feats, 1, 4, 1, 0))
        self.net = nn.Sequential(*layers)
        self.apply(_dcgan_init)

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[-1] != self.image_size or x.shape[-2] != self.image_size or x.shape[1] != self.channels:
            raise ConfigurationError(
                f"DCGANDiscriminator expects images of shape ({self.channels}, {self.image_size}, {self.image_size}) "
                f"but got {tuple(x.shape[1:])}; set the discriminator's image_size/channels to match the data."
            )
        return self.net(x).flatten()
