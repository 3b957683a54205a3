"""Fully connected networks for low-dimensional data such as the 2D Gaussian mixtures.

The defaults follow PacGAN's 2D experiments (Lin et al. 2018). Options, all off by default: ``spectral_norm``
(Miyato et al. 2018), class conditioning by concatenating the one-hot label to the input (Mirza & Osindero
2014, "Conditional Generative Adversarial Nets") and a minibatch layer before D's last Linear (``layers.py``).
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch import Tensor, nn

from gan_lightning.errors import ConfigurationError
from gan_lightning.networks.layers import (
    build_minibatch_layer,
    check_labels,
    check_num_classes,
    one_hot,
    spectral_normalize,
)


def _check_dims(name: str, hidden_dims: Sequence[int]) -> None:
    if not hidden_dims or any(int(h) < 1 for h in hidden_dims):
        raise ConfigurationError(f"{name}: hidden_dims must be a non-empty list of positive sizes, got {list(hidden_dims)}")


def generator_blocks(width: int, hidden_dims: Sequence[int], batch_norm: bool) -> tuple[list[nn.Module], int]:
    """Linear (no bias before BatchNorm), BatchNorm, ReLU per hidden size: the generator trunk of every shipped MLP."""
    layers: list[nn.Module] = []
    for h in hidden_dims:
        layers.append(nn.Linear(width, h, bias=not batch_norm))
        if batch_norm:
            layers.append(nn.BatchNorm1d(h))
        layers.append(nn.ReLU(inplace=True))
        width = h
    return layers, width


def discriminator_blocks(
    owner: str, width: int, hidden_dims: Sequence[int], dropout: float, minibatch_layer: str
) -> tuple[list[nn.Module], int]:
    """Linear, LeakyReLU(0.2), optional dropout per hidden size, then the optional minibatch layer: the
    discriminator trunk of every shipped MLP; returns the layers and the width of their output."""
    layers: list[nn.Module] = []
    for h in hidden_dims:
        layers += [nn.Linear(width, h), nn.LeakyReLU(0.2, inplace=True)]
        if dropout:
            layers.append(nn.Dropout(dropout))
        width = h
    mb_layer, extra = build_minibatch_layer(owner, minibatch_layer, width)
    if mb_layer is not None:
        layers.append(mb_layer)
    return layers, width + extra


class MLPGenerator(nn.Module):
    """ReLU MLP generator; the defaults are PacGAN's 2D generator (4 x 400 units with BatchNorm, z of size 2).

    With ``num_classes`` > 0, ``forward(z, labels)`` concatenates the one-hot label to z.
    """

    def __init__(
        self,
        latent_dim: int = 2,
        output_dim: int = 2,
        hidden_dims: Sequence[int] = (400, 400, 400, 400),
        batch_norm: bool = True,
        num_classes: int = 0,
        spectral_norm: bool = False,
    ):
        super().__init__()
        _check_dims("MLPGenerator", hidden_dims)
        self.num_classes = check_num_classes("MLPGenerator", num_classes, "--model.generator.init_args.num_classes")
        self.latent_dim, self.output_dim = latent_dim, output_dim
        layers, width = generator_blocks(latent_dim + num_classes, hidden_dims, batch_norm)
        layers.append(nn.Linear(width, output_dim))
        self.net = nn.Sequential(*layers)
        if spectral_norm:
            spectral_normalize(self)

    def forward(self, z: Tensor, labels: Optional[Tensor] = None) -> Tensor:
        if self.num_classes:
            labels = check_labels("MLPGenerator", labels, self.num_classes, z.shape[0])
            z = torch.cat([z, one_hot(labels, self.num_classes, z.dtype)], dim=1)
        return self.net(z)


class MLPDiscriminator(nn.Module):
    """LeakyReLU(0.2) MLP returning one raw score per sample (PacGAN's discriminator is 3 x 200 units).

    Inputs are flattened, so ``input_dim`` is the number of values per sample. With ``num_classes`` > 0,
    ``forward(x, labels)`` concatenates the one-hot label to the input. ``minibatch_layer`` ("stddev" or
    "discrimination") is inserted before the last Linear.
    """

    def __init__(
        self,
        input_dim: int = 2,
        hidden_dims: Sequence[int] = (200, 200, 200),
        dropout: float = 0.0,
        num_classes: int = 0,
        spectral_norm: bool = False,
        minibatch_layer: str = "none",
    ):
        super().__init__()
        _check_dims("MLPDiscriminator", hidden_dims)
        self.num_classes = check_num_classes(
            "MLPDiscriminator", num_classes, "--model.discriminator.init_args.num_classes"
        )
        self.input_dim = input_dim
        layers, width = discriminator_blocks("MLPDiscriminator", input_dim + num_classes, hidden_dims, dropout, minibatch_layer)
        layers.append(nn.Linear(width, 1))
        self.minibatch_layer = minibatch_layer
        self.net = nn.Sequential(*layers)
        if spectral_norm:
            spectral_normalize(self)

    def forward(self, x: Tensor, labels: Optional[Tensor] = None) -> Tensor:
        x = x.flatten(1)
        if x.shape[1] != self.input_dim:
            raise ConfigurationError(
                f"MLPDiscriminator expects {self.input_dim} values per sample but got {x.shape[1]}; set "
                f"--model.discriminator.init_args.input_dim={x.shape[1]}."
            )
        if self.num_classes:
            labels = check_labels("MLPDiscriminator", labels, self.num_classes, x.shape[0])
            x = torch.cat([x, one_hot(labels, self.num_classes, x.dtype)], dim=1)
        return self.net(x).squeeze(1)
