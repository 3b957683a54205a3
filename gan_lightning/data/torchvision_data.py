"""torchvision's MNIST, Fashion-MNIST and CIFAR-10, with a download flag and clear offline errors."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from torch.utils.data import Dataset
from torchvision import datasets

from gan_lightning.data.base import GANDataModule
from gan_lightning.data.folder import image_transform
from gan_lightning.errors import DatasetError


class TorchvisionDataModule(GANDataModule):
    """Base for torchvision datasets. ``channels`` defaults to the dataset's own (1 for MNIST, 3 for CIFAR-10)."""

    dataset_class: type = datasets.MNIST
    native_channels: int = 1
    #: where torchvision looks for the files, relative to ``root``
    expected_files: str = ""

    def __init__(
        self,
        root: str = "data",
        download: bool = True,
        image_size: int = 32,
        channels: Optional[int] = None,
        batch_size: int = 64,
        num_workers: int = 2,
        seed: int = 0,
    ):
        super().__init__(batch_size=batch_size, num_workers=num_workers, seed=seed)
        self.root, self.download, self.image_size = root, download, image_size
        self.channels = channels or self.native_channels
        self.transform = image_transform(image_size, self.channels)
        self.num_classes = 10

    def _open(self, download: bool) -> Dataset:
        return self.dataset_class(self.root, train=True, transform=self.transform, download=download)

    def prepare_data(self) -> None:
        if self.download:
            self._open_or_explain(download=True)

    def build_train_dataset(self) -> Dataset:
        return self._open_or_explain(download=False)

    def _open_or_explain(self, download: bool) -> Dataset:
        name = self.dataset_class.__name__
        where = Path(self.root).expanduser().resolve() / self.expected_files
        try:
            return self._open(download)
        except RuntimeError as err:
            if download:
                raise self._download_failed(name, where, err) from err
            raise DatasetError(
                f"{name} was not found under {str(where)!r}. Put the files there, point --data.init_args.root at "
                "the folder that holds them, or set --data.init_args.download=true to fetch them."
            ) from err
        except OSError as err:  # URLError, socket errors, DNS failures are OSErrors
            raise self._download_failed(name, where, err) from err

    def _download_failed(self, name: str, where: Path, err: Exception) -> DatasetError:
        return DatasetError(
            f"Could not download {name} into {str(where)!r} ({err}). Without internet access, copy the dataset "
            f"files there yourself (torchvision's layout: {self.expected_files}) and run with --data.init_args.download=false."
        )


class MNISTDataModule(TorchvisionDataModule):
    dataset_class = datasets.MNIST
    native_channels = 1
    expected_files = "MNIST/raw/ (train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte)"


class FashionMNISTDataModule(TorchvisionDataModule):
    dataset_class = datasets.FashionMNIST
    native_channels = 1
    expected_files = "FashionMNIST/raw/ (train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte)"


class CIFAR10DataModule(TorchvisionDataModule):
    dataset_class = datasets.CIFAR10
    native_channels = 3
    expected_files = "cifar-10-batches-py/ (data_batch_1 ... data_batch_5, test_batch, batches.meta)"
