"""Fully connected networks for low-dimensional data such as the 2D Gaussian mixtures."""

from __future__ import annotations

from typing import Sequence

from torch import Tensor, nn

from gan_lightning.errors import ConfigurationError


def _check_dims(name: str, hidden_dims: Sequence[int]) -> None:
    if not hidden_dims or any(int(h) < 1 for h in hidden_dims):
        raise ConfigurationError(f"{name}: hidden_dims must be a non-empty list of positive sizes, got {list(hidden_dims)}")


class MLPGenerator(nn.Module):
    """ReLU MLP generator; the defaults are PacGAN's 2D generator (4 x 400 units with BatchNorm, z of size 2)."""

    def __init__(
        self,
        latent_dim: int = 2,
        output_dim: int = 2,
        hidden_dims: Sequence[int] = (400, 400, 400, 400),
        batch_norm: bool = True,
    ):
        super().__init__()
        _check_dims("MLPGenerator", hidden_dims)
        self.latent_dim = latent_dim
        layers: list[nn.Module] = []
        width = latent_dim
        for h in hidden_dims:
            layers.append(nn.Linear(width, h, bias=not batch_norm))
            if batch_norm:
                layers.append(nn.BatchNorm1d(h))
            layers.append(nn.ReLU(inplace=True))
            width = h
        layers.append(nn.Linear(width, output_dim))
        self.net = nn.Sequential(*layers)

    def forward(self, z: Tensor) -> Tensor:
        return self.net(z)


class MLPDiscriminator(nn.Module):
    """LeakyReLU(0.2) MLP returning one raw score per sample (PacGAN's discriminator is 3 x 200 units)."""

    def __init__(self, input_dim: int = 2, hidden_dims: Sequence[int] = (200, 200, 200), dropout: float = 0.0):
        super().__init__()
        _check_dims("MLPDiscriminator", hidden_dims)
        layers: list[nn.Module] = []
        width = input_dim
        for h in hidden_dims:
            layers += [nn.Linear(width, h), nn.LeakyReLU(0.2, inplace=True)]
            if dropout:
                layers.append(nn.Dropout(dropout))
            width = h
        layers.append(nn.Linear(width, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x.flatten(1)).squeeze(1)
