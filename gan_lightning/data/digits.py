"""The offline default: scikit-learn's handwritten digits (UCI optdigits, 1,797 images of 8x8), upscaled.

scikit-learn ships the images inside the package, so the default experiment needs no download.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset, TensorDataset

from gan_lightning.data.base import GANDataModule
from gan_lightning.errors import ConfigurationError

#: images in scikit-learn's digits (UCI optdigits test set)
NUM_DIGITS = 1797


def load_digits_tensor(image_size: int = 32, channels: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Digits as float images in [-1, 1] of shape (N, channels, image_size, image_size), and labels 0-9."""
    from sklearn.datasets import load_digits

    if channels not in (1, 3):
        raise ConfigurationError(f"channels must be 1 or 3, got {channels}")
    if image_size < 8:
        raise ConfigurationError(f"image_size must be at least 8 (the digits are 8x8), got {image_size}")
    digits = load_digits()
    images = torch.as_tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
    if image_size != 8:
        images = F.interpolate(images, size=(image_size, image_size), mode="bilinear", align_corners=False)
    images = (images.clamp(0, 1) * 2 - 1).expand(-1, channels, -1, -1).contiguous()
    return images, torch.as_tensor(digits.target, dtype=torch.long)


def subset_indices(total: int, size: int, seed: int) -> torch.Tensor:
    """A fixed random subset of ``size`` of ``total`` indices, sorted; the same for a given seed on every machine."""
    return torch.randperm(total, generator=torch.Generator().manual_seed(seed))[:size].sort().values


class DigitsDataModule(GANDataModule):
    """scikit-learn digits resized to ``image_size`` (bilinear), grayscale or repeated to RGB.

    ``subset``: train on a fixed random subset of that many of the 1,797 digits (drawn with ``subset_seed``, the same
    subset whatever the training seed), to study the limited-data regime of Karras et al. 2020 offline. ``held_out``:
    the digits that subset leaves out instead, real images D never trains on (``DiscriminatorOverfittingCallback``).
    """

    def __init__(self, image_size: int = 32, channels: int = 1, batch_size: int = 64, num_workers: int = 0, seed: int = 0,
                 subset: Optional[int] = None, subset_seed: int = 0, held_out: bool = False):
        super().__init__(batch_size=batch_size, num_workers=num_workers, seed=seed)
        if subset is not None and not 1 <= subset <= NUM_DIGITS:
            raise ConfigurationError(f"subset must be between 1 and {NUM_DIGITS} (the number of digits), got {subset}; "
                                     "leave it unset (null) to train on all of them.")
        if held_out and (subset is None or subset == NUM_DIGITS):
            raise ConfigurationError("held_out=true gives the digits a subset leaves out, but subset is "
                                     f"{subset}: set subset (below {NUM_DIGITS}) to the training run's value.")
        self.image_size, self.channels = image_size, channels
        self.subset, self.subset_seed, self.held_out = subset, subset_seed, held_out
        self.num_classes = 10

    def held_out_dataset(self) -> Dataset:
        """The digits this module does not train on: what ``DiscriminatorOverfittingCallback`` scores by default."""
        if self.subset is None or self.subset == NUM_DIGITS:
            raise ConfigurationError(
                f"DigitsDataModule trains on all {NUM_DIGITS} digits, so none are held out: set --data.init_args.subset=N "
                "(e.g. 100) to train on a subset, or give the callback a holdout set."
            )
        return DigitsDataModule(self.image_size, self.channels, subset=self.subset, subset_seed=self.subset_seed,
                                held_out=not self.held_out).train_dataset

    def build_train_dataset(self) -> Dataset:
        images, labels = load_digits_tensor(self.image_size, self.channels)
        if self.subset is not None:
            keep = subset_indices(len(images), self.subset, self.subset_seed)
            if self.held_out:
                outside = torch.ones(len(images), dtype=torch.bool)
                outside[keep] = False
                keep = outside.nonzero().squeeze(1)
            images, labels = images[keep], labels[keep]
        return TensorDataset(images, labels)
