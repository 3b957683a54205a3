"""Any folder of images: ImageFolder layout (one sub-folder per class) or a flat folder (label 0)."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional, Sequence

import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset
from torchvision import transforms as T

from gan_lightning.data.base import GANDataModule
from gan_lightning.errors import ConfigurationError, DatasetError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm")


def image_transform(image_size: int, channels: int) -> Callable:
    """Resize the short side, centre-crop to a square and scale to [-1, 1] (the DCGAN convention)."""
    if channels not in (1, 3):
        raise ConfigurationError(f"channels must be 1 (grayscale) or 3 (RGB), got {channels}")
    steps: list[Callable] = [T.Resize(image_size, antialias=True), T.CenterCrop(image_size)]
    if channels == 1:
        steps.append(T.Grayscale(1))
    steps += [T.ToTensor(), T.Normalize([0.5] * channels, [0.5] * channels)]
    return T.Compose(steps)


class ImageFileDataset(Dataset):
    """Images found recursively under ``root``; the label is the index of the first-level sub-folder."""

    def __init__(self, root: str | Path, transform: Callable, channels: int = 3, extensions: Sequence[str] = IMAGE_EXTENSIONS):
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

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        path = self.files[i]
        try:
            with Image.open(path) as img:
                img = img.convert(self.mode)
        except (UnidentifiedImageError, OSError, SyntaxError) as err:
            raise DatasetError(f"Cannot read image {str(path)!r} ({err}). Delete or replace the file and restart.") from err
        return self.transform(img), self.labels[i]


class ImageFolderDataModule(GANDataModule):
    """Images from ``root`` resized and centre-cropped to ``image_size``, RGB (channels=3) or grayscale (1)."""

    def __init__(
        self,
        root: str,
        image_size: int = 64,
        channels: int = 3,
        batch_size: int = 64,
        num_workers: int = 0,
        seed: int = 0,
        extensions: Optional[list[str]] = None,
    ):
        super().__init__(batch_size=batch_size, num_workers=num_workers, seed=seed)
        self.root, self.image_size, self.channels = root, image_size, channels
        self.extensions = tuple(extensions) if extensions else IMAGE_EXTENSIONS
        self.transform = image_transform(image_size, channels)

    def build_train_dataset(self) -> Dataset:
        dataset = ImageFileDataset(self.root, self.transform, self.channels, self.extensions)
        self.num_classes = max(1, len(dataset.classes))
        return dataset
