"""DCGAN (Radford et al. 2016, "Unsupervised Representation Learning with Deep Convolutional GANs").

Strided (transposed) 4x4 convolutions double/halve the resolution between 4x4 and ``image_size``; G uses
BatchNorm + ReLU and a tanh output, D uses LeakyReLU(0.2) and BatchNorm after the first layer, and
weights start from N(0, 0.02) as in the paper.

Options (all off by default): ``spectral_norm`` (Miyato et al. 2018), class conditioning by concatenating
one-hot labels to z and one-hot label maps to the image (Mirza & Osindero 2014, "Conditional Generative
Adversarial Nets"), and a minibatch layer before D's final scoring layer (see ``layers.py``).
"""

from __future__ import annotations

import math
from typing import Optional

import torch
from torch import Tensor, nn

from gan_lightning.errors import ConfigurationError
from gan_lightning.networks.layers import (
    MinibatchStdDev,
    build_minibatch_layer,
    check_labels,
    check_num_classes,
    one_hot,
    spectral_normalize,
)

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


def generator_input_features(width: int, doublings: int) -> int:
    """Channels of the generator's first 4x4 feature map: ``width`` doubled once per up-sampling block after it."""
    return width * 2 ** (doublings - 1)


def generator_body(feats: int, doublings: int, channels: int, batch_norm: bool) -> list[nn.Module]:
    """The DCGAN generator after its input layer (the 4x4 transposed convolution from z and its BatchNorm).

    ReLU, then ``doublings - 1`` blocks of stride-2 ConvTranspose2d (halving the channels) + BatchNorm + ReLU, and
    the stride-2 ConvTranspose2d to ``channels`` with tanh. Split out so that MGAN's generators
    (:class:`~gan_lightning.variants.mgan.MultiDCGANGenerator`) can share it behind their own input layers; the
    order of the layers is that of :class:`DCGANGenerator`'s ``net``, whose state_dict keys it keeps.
    """
    layers: list[nn.Module] = []
    for _ in range(doublings - 1):
        layers += [nn.ReLU(inplace=True), nn.ConvTranspose2d(feats, feats // 2, 4, 2, 1, bias=not batch_norm)]
        if batch_norm:
            layers.append(nn.BatchNorm2d(feats // 2))
        feats //= 2
    layers += [nn.ReLU(inplace=True), nn.ConvTranspose2d(feats, channels, 4, 2, 1), nn.Tanh()]
    return layers


def discriminator_trunk(
    in_channels: int, halvings: int, width: int, batch_norm: bool, dropout: float
) -> tuple[list[nn.Module], int]:
    """The DCGAN discriminator up to its last 4x4 feature map, and that map's number of channels.

    A stride-2 Conv2d + LeakyReLU(0.2) without BatchNorm on the image (as in the DCGAN paper), then ``halvings - 1``
    stride-2 Conv2d (doubling the channels) + BatchNorm + LeakyReLU blocks; Dropout2d after each block when
    ``dropout`` > 0. Shared by :class:`DCGANDiscriminator` and MGAN's
    :class:`~gan_lightning.variants.mgan.MGANDCGANDiscriminator`, which put different heads on it.
    """
    feats = width
    layers: list[nn.Module] = [nn.Conv2d(in_channels, feats, 4, 2, 1), nn.LeakyReLU(0.2, inplace=True)]
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
    return layers, feats


class DCGANGenerator(nn.Module):
    """Latent (N, latent_dim) -> images (N, channels, image_size, image_size) in [-1, 1].

    With ``num_classes`` > 0 the generator is conditional: ``forward(z, labels)`` concatenates the one-hot
    label to z (Mirza & Osindero 2014).
    """

    def __init__(
        self,
        latent_dim: int = 100,
        image_size: int = 32,
        channels: int = 3,
        width: int = 64,
        batch_norm: bool = True,
        num_classes: int = 0,
        spectral_norm: bool = False,
    ):
        super().__init__()
        doublings = _num_doublings(type(self).__name__, image_size)
        self.num_classes = check_num_classes(
            type(self).__name__, num_classes, "--model.generator.init_args.num_classes"
        )
        self.latent_dim, self.image_size, self.channels = latent_dim, image_size, channels
        feats = generator_input_features(width, doublings)
        in_dim = latent_dim + num_classes
        layers: list[nn.Module] = [nn.ConvTranspose2d(in_dim, feats, 4, 1, 0, bias=not batch_norm)]
        if batch_norm:
            layers.append(nn.BatchNorm2d(feats))
        layers += generator_body(feats, doublings, channels, batch_norm)
        self.net = nn.Sequential(*layers)
        self.apply(_dcgan_init)
        if spectral_norm:
            spectral_normalize(self)

    def forward(self, z: Tensor, labels: Optional[Tensor] = None) -> Tensor:
        z = z.reshape(z.shape[0], self.latent_dim)
        if self.num_classes:
            labels = check_labels(type(self).__name__, labels, self.num_classes, z.shape[0])
            z = torch.cat([z, one_hot(labels, self.num_classes, z.dtype)], dim=1)
        return self.net(z.view(z.shape[0], -1, 1, 1))


class DCGANDiscriminator(nn.Module):
    """Images -> one raw score per image. ``dropout`` > 0 adds Dropout2d after each hidden block.

    ``minibatch_layer``: "stddev" appends ProGAN's minibatch-std channel to the last 4x4 feature map before
    the final 4x4 convolution; "discrimination" flattens that map, appends Salimans et al.'s minibatch
    features and scores with a linear layer instead of the 4x4 convolution. With ``num_classes`` > 0,
    ``forward(x, labels)`` appends ``num_classes`` one-hot label maps to the image channels (Mirza &
    Osindero 2014).
    """

    def __init__(
        self,
        image_size: int = 32,
        channels: int = 3,
        width: int = 64,
        batch_norm: bool = True,
        dropout: float = 0.0,
        num_classes: int = 0,
        spectral_norm: bool = False,
        minibatch_layer: str = "none",
    ):
        super().__init__()
        name = type(self).__name__
        halvings = _num_doublings(name, image_size)
        self.num_classes = check_num_classes(name, num_classes, "--model.discriminator.init_args.num_classes")
        self.image_size, self.channels = image_size, channels
        layers, feats = discriminator_trunk(channels + num_classes, halvings, width, batch_norm, dropout)
        mb_layer, extra = build_minibatch_layer(name, minibatch_layer, feats * 4 * 4)
        if mb_layer is None:
            layers.append(nn.Conv2d(feats, 1, 4, 1, 0))
        elif isinstance(mb_layer, MinibatchStdDev):
            layers += [mb_layer, nn.Conv2d(feats + extra, 1, 4, 1, 0)]
        else:
            layers += [nn.Flatten(), mb_layer, nn.Linear(feats * 4 * 4 + extra, 1)]
        self.minibatch_layer = minibatch_layer
        self.net = nn.Sequential(*layers)
        self.apply(_dcgan_init)
        if spectral_norm:
            spectral_normalize(self)

    def forward(self, x: Tensor, labels: Optional[Tensor] = None) -> Tensor:
        if x.dim() != 4 or tuple(x.shape[1:]) != (self.channels, self.image_size, self.image_size):
            raise ConfigurationError(
                f"DCGANDiscriminator expects images of shape ({self.channels}, {self.image_size}, {self.image_size}) "
                f"but got {tuple(x.shape[1:])}; set the discriminator's image_size/channels to match the data."
            )
        if self.num_classes:
            labels = check_labels(type(self).__name__, labels, self.num_classes, x.shape[0])
            maps = one_hot(labels, self.num_classes, x.dtype)[:, :, None, None]
            x = torch.cat([x, maps.expand(-1, -1, x.shape[2], x.shape[3])], dim=1)
        return self.net(x).flatten()

