"""LightningDataModules that all yield ``(sample, label)`` batches through a resumable loader."""

from gan_lightning.data.base import GANDataModule
from gan_lightning.data.digits import DigitsDataModule
from gan_lightning.data.folder import ImageFolderDataModule
from gan_lightning.data.loader import ResumableDataLoader, ResumableSampler
from gan_lightning.data.mixtures import GaussianMixtureDataModule, mixture_modes, sample_mixture
from gan_lightning.data.stacked_digits import StackedDigitsDataModule
from gan_lightning.data.torchvision_data import CIFAR10DataModule, FashionMNISTDataModule, MNISTDataModule

__all__ = [
    "CIFAR10DataModule",
    "DigitsDataModule",
    "FashionMNISTDataModule",
    "GANDataModule",
    "GaussianMixtureDataModule",
    "ImageFolderDataModule",
    "MNISTDataModule",
    "ResumableDataLoader",
    "ResumableSampler",
    "StackedDigitsDataModule",
    "mixture_modes",
    "sample_mixture",
]
