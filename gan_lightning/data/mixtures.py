"""2D Gaussian mixtures, the classic mode-collapse testbed, exactly as in PacGAN's code.

ring8: 8 modes at (cos 2*pi*k/8, sin 2*pi*k/8), std 0.01 (note: k/8, not linspace(0, 2*pi, 8), which
repeats a mode). grid25: 25 modes on {-4, -2, 0, 2, 4}^2, std 0.05. See Lin et al. 2018, "PacGAN".
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch.utils.data import Dataset, TensorDataset

from gan_lightning.data.base import GANDataModule
from gan_lightning.errors import ConfigurationError

MIXTURES = ("ring8", "grid25")


def mixture_modes(name: str) -> tuple[torch.Tensor, float]:
    """(modes of shape (K, 2), standard deviation) of a named mixture."""
    if name == "ring8":
        angles = 2 * math.pi * torch.arange(8, dtype=torch.float64) / 8
        return torch.stack([angles.cos(), angles.sin()], dim=1).float(), 0.01
    if name == "grid25":
        axis = torch.tensor([-4.0, -2.0, 0.0, 2.0, 4.0])
        return torch.cartesian_prod(axis, axis), 0.05
    raise ConfigurationError(f"Unknown mixture {name!r}; choose one of {', '.join(MIXTURES)}.")


def sample_mixture(name: str, n: int, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """n points drawn uniformly over the modes, with the index of the mode each came from."""
    modes, std = mixture_modes(name)
    labels = torch.randint(len(modes), (n,), generator=generator)
    points = modes[labels] + std * torch.randn(n, 2, generator=generator)
    return points, labels


class GaussianMixtureDataModule(GANDataModule):
    """A fixed pool of ``num_samples`` points drawn once from ``seed`` (batch 100 as in PacGAN)."""

    kind = "points"

    def __init__(
        self,
        mixture: Literal["ring8", "grid25"] = "ring8",
        num_samples: int = 100_000,
        batch_size: int = 100,
        num_workers: int = 0,
        seed: int = 0,
    ):
        super().__init__(batch_size=batch_size, num_workers=num_workers, seed=seed)
        self.modes, self.std = mixture_modes(mixture)
        self.mixture = mixture
        self.num_samples = num_samples
        self.num_classes = len(self.modes)

    def build_train_dataset(self) -> Dataset:
        generator = torch.Generator().manual_seed(self.seed)
        return TensorDataset(*sample_mixture(self.mixture, self.num_samples, generator))
