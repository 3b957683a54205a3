"""The offline default: scikit-learn's handwritten digits (UCI optdigits, 1,797 images of 8x8), upscaled.

scikit-learn ships the images inside the package, so the default experiment needs no download.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset, TensorDataset

from gan_lightning.data.base import GANDataModule
from gan_lightning.errors import ConfigurationError


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


class DigitsDataModule(GANDataModule):
    """scikit-learn digits resized to ``image_size`` (bilinear), grayscale or repeated to RGB."""

    def __init__(self, image_size: int = 32, channels: int = 1, batch_size: int = 64, num_workers: int = 0, seed: int = 0):
        super().__init__(batch_size=batch_size, num_workers=num_workers, seed=seed)
        self.image_size, self.channels = image_size, channels
        self.num_classes = 10

    def build_train_dataset(self) -> Dataset:
        return TensorDataset(*load_digits_tensor(self.image_size, self.channels))
