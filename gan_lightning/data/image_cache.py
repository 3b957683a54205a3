"""Decode-once image cache: every image decoded, resized and cropped once, then served as uint8 by whole batches.

Per-sample PIL decoding costs about 0.4 ms per small image on one core, which a DCGAN at 32x32 on a CPU or any GPU
waits for. The cache decodes each file once (with exactly the PIL steps of the per-sample path), keeps the set as a
uint8 tensor of shape (N, C, H, W), and converts a whole batch to float in one operation (the same ``/255, -0.5,
/0.5`` that ``ToTensor`` + ``Normalize`` apply), so the tensors are bit-identical to the per-sample path.

Where the set lives:

- ``memory``: a uint8 tensor in this process (N x C x H x W bytes), decoded at every start.
- ``disk``: a ``.npy`` file under the cache folder, memory-mapped (the OS keeps in RAM what fits) and reused by
  later runs. Its name is a hash of the folder's content (relative file names, sizes and modification times), the
  image size and channels, the PIL steps and the Pillow/torchvision versions: an added, removed, renamed or modified
  file, or another size, gives another file. It is read with ``numpy.load(mmap_mode="r", allow_pickle=False)``:
  loading it never runs code.
- ``auto``: ``memory`` when the decoded set fits the memory budget, else no cache (per-sample PIL decoding), with a
  warning that says so and how to change it.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from torch import Tensor
from torch.utils.data import Dataset

from gan_lightning.errors import ConfigurationError
from gan_lightning.runtime import cache_dirs

CACHE_MODES = ("auto", "memory", "disk", "off")
CACHE_ENV = cache_dirs.CACHE_ENV
#: ``auto`` keeps the decoded set in memory up to this size (1 GiB: 330,000 RGB images at 32x32, 87,000 at 64x64).
DEFAULT_MEMORY_BUDGET_MB = 1024.0
FORMAT_VERSION = 1


def default_cache_dir() -> Path:
    """``$GAN_LIGHTNING_CACHE`` (shared with the real-features cache; the file names differ) or
    ``$TORCH_HOME/gan_lightning/image_cache``."""
    return cache_dirs.default_cache_dir("image_cache")


def check_cache_options(mode: str, memory_budget_mb: float, cache_dir: Optional[str]) -> tuple[str, float, Optional[str]]:
    if mode not in CACHE_MODES:
        raise ConfigurationError(f"cache must be one of {', '.join(CACHE_MODES)}; got {mode!r}.")
    if memory_budget_mb < 0:
        raise ConfigurationError(f"cache_memory_budget_mb must be >= 0, got {memory_budget_mb}.")
    return mode, float(memory_budget_mb), cache_dir


def to_model_range(images: Tensor) -> Tensor:
    """uint8 images -> float32 in [-1, 1] by exactly the operations of ``ToTensor()`` + ``Normalize(0.5, 0.5)``."""
    return images.to(torch.float32).div(255).sub_(0.5).div_(0.5)


def folder_key(files: Sequence[Path], root: Path, shape: tuple[int, ...], extra: dict[str, Any]) -> str:
    """sha256 over the files' relative names, sizes and modification times, the decoded shape and the decoding steps."""
    import PIL
    import torchvision

    digest = hashlib.sha256()
    header = {"format": FORMAT_VERSION, "shape": list(shape), "pillow": PIL.__version__,
              "torchvision": torchvision.__version__, **extra}
    digest.update(json.dumps(header, sort_keys=True, default=str).encode())
    for path in files:
        stat = path.stat()
        digest.update(f"\n{path.relative_to(root).as_posix()}\t{stat.st_size}\t{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:32]


class CachedImageDataset(Dataset):
    """Decoded uint8 images (in memory or memory-mapped) with their labels; ``mirror`` adds flipped copies (index i + n).

    ``__getitem__`` returns one ``(image in [-1, 1], label)`` like the per-sample dataset; ``get_batch`` returns a
    whole batch at once, which :class:`~gan_lightning.data.loader.ResumableDataLoader` uses.
    """

    def __init__(self, labels: Sequence[int], files: Sequence[Path], images: Optional[Tensor] = None,
                 path: Optional[Path] = None, mirror: bool = False):
        if (images is None) == (path is None):
            raise ValueError("give exactly one of images (in memory) or path (memory-mapped .npy file)")
        self.labels = torch.as_tensor(list(labels), dtype=torch.long)
        self.files = list(files)
        self.mirror = mirror
        self.path = path
        self._images = images  # a Tensor in memory, or the memory-mapped array once opened in this process

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        if self.path is not None:  # worker processes map the file themselves instead of receiving a copy
            state["_images"] = None
        return state

    @property
    def images(self) -> Tensor | np.ndarray:
        if self._images is None:
            assert self.path is not None
            self._images = np.load(self.path, mmap_mode="r", allow_pickle=False)
        return self._images

    def __len__(self) -> int:
        return len(self.labels) * (2 if self.mirror else 1)

    def uint8_batch(self, indices: Tensor) -> tuple[Tensor, Tensor]:
        n = len(self.labels)
        base = indices % n
        stored = self.images
        if isinstance(stored, np.ndarray):
            images = torch.from_numpy(stored[base.numpy()])  # fancy indexing copies out of the mapped file
        else:
            images = stored[base]
        if self.mirror:
            flipped = indices >= n
            images[flipped] = images[flipped].flip(-1)
        return images, self.labels[base]

    def get_batch(self, indices: Tensor) -> tuple[Tensor, Tensor]:
        images, labels = self.uint8_batch(indices)
        return to_model_range(images), labels

    def __getitem__(self, i: int) -> tuple[Tensor, int]:
        if not -len(self) <= i < len(self):
            raise IndexError(f"index {i} out of range for {len(self)} images")
        images, labels = self.get_batch(torch.tensor([i % len(self)]))
        return images[0], int(labels[0])


def _decode_all(files: Sequence[Path], decode: Callable[[Path], Tensor], out: Tensor | np.ndarray) -> None:
    for i, path in enumerate(files):
        image = decode(path)
        out[i] = image if isinstance(out, Tensor) else image.numpy()


def _resolve_mode(mode: str, nbytes: int, memory_budget_mb: float, count: int, shape: tuple[int, ...]) -> str:
    if mode != "auto":
        return mode
    megabytes = nbytes / 2**20
    if megabytes <= memory_budget_mb:
        return "memory"
    rank_zero_warn(
        f"Image cache off: the {count} decoded images ({count} x {'x'.join(map(str, shape))} uint8 = {megabytes:.0f} MB) "
        f"exceed cache_memory_budget_mb={memory_budget_mb:g}, so every sample is decoded with PIL when it is loaded "
        "(slower). Raise --data.init_args.cache_memory_budget_mb, or set --data.init_args.cache=disk to decode once "
        "into a memory-mapped file."
    )
    return "off"


def cached_dataset(
    files: Sequence[Path],
    labels: Sequence[int],
    decode: Callable[[Path], Tensor],
    shape: tuple[int, int, int],
    decode_description: dict[str, Any],
    mode: str = "auto",
    memory_budget_mb: float = DEFAULT_MEMORY_BUDGET_MB,
    cache_dir: Optional[str | Path] = None,
    mirror: bool = False,
    root: Optional[Path] = None,
) -> Optional[CachedImageDataset]:
    """The decoded set in memory or on disk, or ``None`` when ``mode`` is (or ``auto`` resolves to) ``off``.

    ``decode`` maps one file to a uint8 tensor of ``shape``; ``decode_description`` names what it does (part of the
    disk cache's key); ``root`` is the folder the file names are taken relative to.
    """
    count = len(files)
    nbytes = count * int(np.prod(shape))
    mode = _resolve_mode(mode, nbytes, memory_budget_mb, count, shape)
    if mode == "off":
        return None
    start = time.perf_counter()
    if mode == "memory":
        images = torch.empty((count, *shape), dtype=torch.uint8)
        _decode_all(files, decode, images)
        rank_zero_info(f"Image cache: decoded {count} images once into memory ({nbytes / 2**20:.1f} MB) in "
                       f"{time.perf_counter() - start:.1f} s.")
        return CachedImageDataset(labels, files, images=images, mirror=mirror)
    root = Path(root) if root is not None else Path(os.path.commonpath([str(f.parent) for f in files]))
    folder = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
    path = folder / f"images-{folder_key(files, root, shape, decode_description)}.npy"
    if not _valid(path, (count, *shape)):
        _write(path, files, decode, (count, *shape), root)
        rank_zero_info(f"Image cache: decoded {count} images once into {path} ({nbytes / 2**20:.1f} MB) in "
                       f"{time.perf_counter() - start:.1f} s; later runs on the same folder reuse it.")
    else:
        rank_zero_info(f"Image cache: {count} decoded images from {path}.")
    return CachedImageDataset(labels, files, path=path, mirror=mirror)


def _valid(path: Path, shape: tuple[int, ...]) -> bool:
    """The file exists and holds a uint8 array of the expected shape (a truncated or foreign file is rebuilt)."""
    if not path.is_file():
        return False
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError):
        return False
    return array.dtype == np.uint8 and tuple(array.shape) == shape


def _write(path: Path, files: Sequence[Path], decode: Callable[[Path], Tensor], shape: tuple[int, ...], root: Path) -> None:
    """Decode into a temporary memory-mapped .npy, then rename it: a reader never sees half a file."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ConfigurationError(
            f"Cannot create the image cache folder {str(path.parent)!r} ({err.strerror or err}); set "
            "--data.init_args.cache_dir to a writable folder or use --data.init_args.cache=memory."
        ) from err
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp.npy")
    try:
        array = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=shape)
        _decode_all(files, decode, array)
        array.flush()
        del array
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    info = {"format": FORMAT_VERSION, "root": str(root), "count": shape[0], "shape": list(shape[1:]),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S")}
    path.with_suffix(".json").write_text(json.dumps(info, indent=1) + "\n")  # for people looking into the folder
