"""Stacked Digits: the Stacked-MNIST protocol on scikit-learn's digits, offline. 1,000 modes.

Stacked MNIST (Metz et al. 2017, "Unrolled Generative Adversarial Networks"; Srivastava et al. 2017, "VEEGAN";
Lin et al. 2018, "PacGAN", Table 2) puts three independently drawn MNIST digits into the R, G and B channels of one
image, so the data has 10³ = 1,000 modes (digit triples) that a classifier can count on generated samples
(:mod:`gan_lightning.metrics.digits_classifier`). Here the digits are scikit-learn's 1,797 8x8 digits at the
DCGAN's resolution (32x32, bilinear, as :class:`~gan_lightning.data.DigitsDataModule`), which ship with the package.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.utils.data import Dataset

from gan_lightning.data.base import GANDataModule
from gan_lightning.data.digits import load_digits_tensor
from gan_lightning.errors import ConfigurationError

NUM_MODES = 1000


def triple_label(channel_labels: Tensor) -> Tensor:
    """(N, 3) digit labels -> mode index 100 * R + 10 * G + B in [0, 999]."""
    return channel_labels[:, 0] * 100 + channel_labels[:, 1] * 10 + channel_labels[:, 2]


class StackedDigitsDataset(Dataset):
    """Triples of digit indices ``picks`` (N, 3); an image is assembled from its three digits when it is fetched.

    Items are ``(image (3, H, W) in [-1, 1], mode 0-999)``; ``get_batch`` assembles a whole batch with one index
    operation (the training loader uses it).
    """

    def __init__(self, digits: Tensor, digit_labels: Tensor, picks: Tensor):
        self.digits, self.digit_labels, self.picks = digits, digit_labels, picks

    def __len__(self) -> int:
        return len(self.picks)

    @property
    def channel_labels(self) -> Tensor:
        """(N, 3): the digit in each channel."""
        return self.digit_labels[self.picks]

    def get_batch(self, indices: Tensor) -> tuple[Tensor, Tensor]:
        picks = self.picks[indices]
        images = self.digits[picks].squeeze(2)  # (B, 3, 1, H, W) -> (B, 3, H, W)
        return images, triple_label(self.digit_labels[picks])

    def __getitem__(self, i: int) -> tuple[Tensor, int]:
        images, labels = self.get_batch(torch.tensor([i]))
        return images[0], int(labels[0])


class StackedDigitsDataModule(GANDataModule):
    """``num_samples`` RGB images whose channels are three digits drawn independently and uniformly from the 1,797.

    The triples are drawn once from ``seed`` (which also fixes the data order), so every run with the same seed
    trains on the same set. Labels are the mode (digit triple) 0-999.
    """

    def __init__(self, num_samples: int = 25_600, image_size: int = 32, batch_size: int = 64, num_workers: int = 0, seed: int = 0):
        super().__init__(batch_size=batch_size, num_workers=num_workers, seed=seed)
        if num_samples < 1:
            raise ConfigurationError(f"num_samples must be >= 1, got {num_samples}")
        self.num_samples, self.image_size = num_samples, image_size
        self.num_classes = NUM_MODES

    def build_train_dataset(self) -> Dataset:
        digits, labels = load_digits_tensor(self.image_size, channels=1)
        generator = torch.Generator().manual_seed(self.seed)
        picks = torch.randint(len(digits), (self.num_samples, 3), generator=generator)
        return StackedDigitsDataset(digits, labels, picks)
