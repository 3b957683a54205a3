"""Any folder of images: ImageFolder layout (one sub-folder per class) or a flat folder (label 0).

By default the images are decoded, resized and cropped once and kept as uint8 (:mod:`gan_lightning.data.image_cache`)
when they fit a memory budget; otherwise every sample is decoded with PIL when the loader asks for it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Literal, Optional, Sequence

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset
from torchvision import transforms as T

from gan_lightning.data import image_cache
from gan_lightning.data.base import GANDataModule
from gan_lightning.errors import ConfigurationError, DatasetError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm")


#: What :func:`resize_and_crop` does, for the image cache's key.
RESIZE_AND_CROP = "PIL: resize the short side (bilinear, antialias), centre crop, grayscale if channels=1"


def resize_and_crop(image_size: int, channels: int) -> list[Callable]:
    """The PIL steps of :func:`image_transform`: resize the short side and centre-crop to a square."""
    if channels not in (1, 3):
        raise ConfigurationError(f"channels must be 1 (grayscale) or 3 (RGB), got {channels}")
    steps: list[Callable] = [T.Resize(image_size, antialias=True), T.CenterCrop(image_size)]
    if channels == 1:
        steps.append(T.Grayscale(1))
    return steps


def image_transform(image_size: int, channels: int) -> Callable:
    """Resize the short side, centre-crop to a square and scale to [-1, 1] (the DCGAN convention)."""
    steps = resize_and_crop(image_size, channels)
    steps += [T.ToTensor(), T.Normalize([0.5] * channels, [0.5] * channels)]
    return T.Compose(steps)


def open_image(path: Path, mode: str) -> Image.Image:
    """The decoded image in ``mode`` ("RGB" or "L"); an unreadable file is a one-line DatasetError naming it."""
    try:
        with Image.open(path) as img:
            return img.convert(mode)
    except (UnidentifiedImageError, OSError, SyntaxError) as err:
        raise DatasetError(f"Cannot read image {str(path)!r} ({err}). Delete or replace the file and restart.") from err


class ImageFileDataset(Dataset):
    """Images found recursively under ``root``; the label is the index of the first-level sub-folder.

    With ``mirror`` the dataset holds every image twice, as is (index i) and flipped left-right (index i + n):
    StyleGAN2-ADA's dataset x-flips (``--mirror``, Karras et al. 2020), which double a small dataset and stay
    exactly reproducible (a flip depends on the index, not on a random draw).
    """

    def __init__(
        self,
        root: str | Path,
        transform: Callable,
        channels: int = 3,
        extensions: Sequence[str] = IMAGE_EXTENSIONS,
        mirror: bool = False,
    ):
        self.root = Path(root).expanduser()
        if not self.root.is_dir():
            raise DatasetError(f"Image folder {str(self.root)!r} does not exist; set --data.init_args.root to a folder of images.")
        exts = tuple(e.lower() for e in extensions)
        self.files = sorted(p for p in self.root.rglob("*") if p.is_file() and p.suffix.lower() in exts)
        if not self.files:
            raise DatasetError(
                f"No images found in {str(self.root)!r} (looked recursively for {', '.join(exts)}). "
                "Put images there (flat, or one sub-folder per class) or point --data.init_args.root elsewhere."
            )
        self.classes = sorted({p.relative_to(self.root).parts[0] for p in self.files if len(p.relative_to(self.root).parts) > 1})
        index = {c: i for i, c in enumerate(self.classes)}
        self.labels = [index.get(p.relative_to(self.root).parts[0], 0) if len(p.relative_to(self.root).parts) > 1 else 0 for p in self.files]
        self.transform = transform
        self.mode = "L" if channels == 1 else "RGB"
        self.mirror = mirror

    def __len__(self) -> int:
        return len(self.files) * (2 if self.mirror else 1)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        n = len(self.files)
        image = self.transform(open_image(self.files[i % n], self.mode))
        if i >= n:  # the mirrored copy
            image = image.flip(-1)
        return image, self.labels[i % n]


class ImageFolderDataModule(GANDataModule):
    """Images from ``root`` resized and centre-cropped to ``image_size``, RGB (channels=3) or grayscale (1).

    Args:
        mirror: add a left-right flipped copy of every image (StyleGAN2-ADA's ``--mirror``; doubles the dataset).
        cache: ``auto`` (default): decode, resize and crop every image once and keep the set in memory as uint8 when
            it fits ``cache_memory_budget_mb``, else decode per sample with PIL (a warning says so); ``memory``:
            always in memory; ``disk``: once into a memory-mapped file under ``cache_dir``, reused by later runs
            while the folder is unchanged; ``off``: decode per sample. The cached and the per-sample path give
            identical tensors (see :mod:`gan_lightning.data.image_cache`).
        cache_memory_budget_mb: the largest decoded set (uint8, N x C x image_size²) ``auto`` keeps in memory.
        cache_dir: folder of ``disk`` caches (default ``$GAN_LIGHTNING_CACHE`` or ``$TORCH_HOME/gan_lightning/image_cache``).
    """

    def __init__(
        self,
        root: str,
        image_size: int = 64,
        channels: int = 3,
        batch_size: int = 64,
        num_workers: int = 0,
        seed: int = 0,
        extensions: Optional[list[str]] = None,
        mirror: bool = False,
        cache: Literal["auto", "memory", "disk", "off"] = "auto",
        cache_memory_budget_mb: float = image_cache.DEFAULT_MEMORY_BUDGET_MB,
        cache_dir: Optional[str] = None,
    ):
        super().__init__(batch_size=batch_size, num_workers=num_workers, seed=seed)
        self.root, self.image_size, self.channels = root, image_size, channels
        self.extensions = tuple(extensions) if extensions else IMAGE_EXTENSIONS
        self.transform = image_transform(image_size, channels)
        self.mirror = mirror
        self.cache, self.cache_memory_budget_mb, self.cache_dir = image_cache.check_cache_options(cache, cache_memory_budget_mb, cache_dir)

    def _files(self) -> ImageFileDataset:
        return ImageFileDataset(self.root, self.transform, self.channels, self.extensions, self.mirror)

    def _decode(self) -> Callable[[Path], torch.Tensor]:
        """One file -> uint8 (C, H, W): the PIL part of the per-sample transform, without the float conversion."""
        steps, mode = T.Compose(resize_and_crop(self.image_size, self.channels)), "L" if self.channels == 1 else "RGB"

        def decode(path: Path) -> torch.Tensor:
            array = np.asarray(steps(open_image(path, mode)), dtype=np.uint8)
            return torch.from_numpy(array.reshape(self.image_size, self.image_size, self.channels).copy()).permute(2, 0, 1)

        return decode

    def _cached(self, files: ImageFileDataset, mode: str) -> Optional[Dataset]:
        return image_cache.cached_dataset(
            files.files, files.labels, self._decode(), (self.channels, self.image_size, self.image_size),
            {"transform": RESIZE_AND_CROP}, mode=mode, memory_budget_mb=self.cache_memory_budget_mb,
            cache_dir=self.cache_dir, mirror=self.mirror, root=files.root,
        )

    def prepare_data(self) -> None:
        # Lightning calls this on one process per node before setup: build a disk cache there, not on every rank.
        if self.cache == "disk":
            self._cached(self._files(), "disk")

    def build_train_dataset(self) -> Dataset:
        files = self._files()
        self.num_classes = max(1, len(files.classes))
        cached = self._cached(files, self.cache)
        if cached is None:
            return files
        cached.classes = files.classes  # type: ignore[attr-defined]
        return cached
