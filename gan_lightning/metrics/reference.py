"""Reference sets the generated samples are compared with, and how a user names one.

A reference is a datamodule's training set (the default during training), any other datamodule (class path and
init args, or a LightningCLI ``config.yaml``), an image folder, a real-features file written by the cache, or,
for the 2D toy data, a mixture name. Its ``description`` is plain data: it goes into the cache key and into
the protocol record.
"""

from __future__ import annotations

import hashlib
import inspect
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Subset

from gan_lightning.errors import ConfigurationError, DatasetError
from gan_lightning.metrics.features import Features, to_uint8
from gan_lightning.runtime.trust import TrustedModules, check_class_paths, import_trusted

# init arguments that change how data is loaded, not which data it is
_LOADING_ARGS = {"batch_size", "num_workers", "shuffle", "download", "cache", "cache_memory_budget_mb", "cache_dir"}


@dataclass
class ImageReference:
    """Real images from a dataset yielding ``(image in [-1, 1], label)``; a seeded random subset if ``num_real`` is smaller."""

    dataset: Dataset
    description: dict[str, Any]
    subset_seed: int = 0
    kind: str = field(default="images", init=False)

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def indices(self, num_real: Optional[int]) -> list[int]:
        total = len(self)
        if num_real is None or num_real >= total:
            return list(range(total))
        chosen = torch.randperm(total, generator=torch.Generator().manual_seed(self.subset_seed))[:num_real]
        return sorted(chosen.tolist())

    def load_uint8(self, num_real: Optional[int], batch_size: int = 256, progress: Optional[Callable[[int], None]] = None) -> Tensor:
        """The (subset of the) images as uint8; ``progress(n)`` is called after each batch of ``n`` images."""
        idx = self.indices(num_real)
        loader = DataLoader(Subset(self.dataset, idx), batch_size=batch_size, shuffle=False)
        chunks = []
        for batch in loader:
            chunks.append(to_uint8(batch[0] if isinstance(batch, (list, tuple)) else batch))
            if progress is not None:
                progress(len(chunks[-1]))
        if not chunks:
            raise DatasetError(f"The reference set {self.description} is empty.")
        return torch.cat(chunks)


@dataclass
class FeaturesFileReference:
    """Real features saved by :mod:`gan_lightning.metrics.real_cache` (usable without the data)."""

    path: Path
    entry: dict[str, Any]
    kind: str = field(default="features", init=False)

    @property
    def description(self) -> dict[str, Any]:
        return {"type": "features_file", "path": str(self.path), "source": self.entry["key_fields"]["reference"]}

    @property
    def features(self) -> Features:
        return Features.from_dict(self.entry["features"])


@dataclass
class MixtureReference:
    """A 2D Gaussian mixture, described by its modes and standard deviation."""

    name: str
    modes: Tensor
    std: float
    kind: str = field(default="points", init=False)

    @property
    def description(self) -> dict[str, Any]:
        return {"type": "mixture", "name": self.name, "num_modes": len(self.modes), "std": self.std}


Reference = ImageReference | FeaturesFileReference | MixtureReference


def describe_datamodule(datamodule: Any) -> dict[str, Any]:
    """Class path and the init arguments that define the data (read back from same-named attributes)."""
    cls = type(datamodule)
    init_args: dict[str, Any] = {}
    for name in inspect.signature(cls.__init__).parameters:
        if name in ("self", "args", "kwargs") or name in _LOADING_ARGS or not hasattr(datamodule, name):
            continue
        value = getattr(datamodule, name)
        if isinstance(value, (tuple, list)):
            value = list(value)
        try:
            json.dumps(value)
        except TypeError:
            value = repr(value)
        init_args[name] = value
    return {"type": "datamodule", "class_path": f"{cls.__module__}.{cls.__qualname__}", "init_args": init_args}


def reference_from_datamodule(datamodule: Any) -> Reference:
    """The datamodule's training set; for the toy mixtures, the mixture itself."""
    if getattr(datamodule, "kind", "image") == "points":
        if not hasattr(datamodule, "modes") or not hasattr(datamodule, "std"):
            raise ConfigurationError(
                f"{type(datamodule).__name__} yields points but has no `modes`/`std`: mode-coverage metrics need a mixture."
            )
        return MixtureReference(getattr(datamodule, "mixture", type(datamodule).__name__), datamodule.modes, float(datamodule.std))
    datamodule.setup("fit")
    return ImageReference(datamodule.train_dataset, describe_datamodule(datamodule))


def datamodule_from_config(config: dict[str, Any], trusted_modules: Optional[str] = None, source: str = "--reference") -> Any:
    """Build a datamodule from ``{"class_path": ..., "init_args": {...}}`` (short names resolve in gan_lightning.data).

    The class must come from a trusted module (:mod:`gan_lightning.runtime.trust`): a run's ``config.yaml`` travels with its
    checkpoints, and a class path there could name any callable.
    """
    if "data" in config and isinstance(config["data"], dict):  # a whole LightningCLI config.yaml
        config = config["data"]
    class_path = config.get("class_path")
    if not isinstance(class_path, str):
        raise ConfigurationError(f"A reference datamodule needs a class_path, e.g. gan_lightning.data.CIFAR10DataModule; got {config}.")
    trusted = TrustedModules(trusted_modules)
    check_class_paths(config.get("init_args") or {}, "data.init_args", source, trusted)
    if "." not in class_path:
        class_path = f"gan_lightning.data.{class_path}"
    try:
        cls = import_trusted(class_path, "data.class_path", source, trusted)
    except ConfigurationError as err:
        raise ConfigurationError(f"Cannot import datamodule class {class_path!r} ({err}).") from err
    try:
        return cls(**(config.get("init_args") or {}))
    except TypeError as err:
        raise ConfigurationError(f"Cannot build {class_path} with init_args {config.get('init_args')} ({err}).") from err


def parse_reference(spec: str | dict, sample_shape: tuple[int, ...], trusted_modules: Optional[str] = None) -> Reference:
    """Turn ``--reference`` into a reference set; ``sample_shape`` is the shape of one generated sample.

    Accepted: a mixture name (``ring8``, ``grid25``); a ``.pt`` real-features file from the cache; a folder of images
    (resized and centre-cropped to the generated size); a YAML/JSON file or inline ``{class_path: ..., init_args: ...}``
    describing a datamodule, including a run's ``config.yaml``. A datamodule's class must come from a trusted module
    (gan_lightning, torch, torchvision, ``trusted_modules`` or ``$GAN_LIGHTNING_TRUSTED_MODULES``).
    """
    from gan_lightning.data import ImageFolderDataModule, mixture_modes
    from gan_lightning.data.mixtures import MIXTURES

    if isinstance(spec, dict):
        return reference_from_datamodule(datamodule_from_config(spec, trusted_modules))
    if spec in MIXTURES:
        modes, std = mixture_modes(spec)
        return MixtureReference(spec, modes, std)
    path = Path(spec).expanduser()
    if path.suffix == ".pt" and path.is_file():
        from gan_lightning.metrics.real_cache import load_entry

        return FeaturesFileReference(path, load_entry(path))
    if path.is_dir():
        if len(sample_shape) != 3:
            raise ConfigurationError(f"An image folder reference needs an image generator; samples have shape {sample_shape}.")
        channels, size = sample_shape[0], sample_shape[-1]
        return reference_from_datamodule(ImageFolderDataModule(str(path), image_size=size, channels=channels))
    if path.suffix in (".yaml", ".yml", ".json") and path.is_file() or spec.lstrip().startswith("{"):
        import yaml

        config = yaml.safe_load(path.read_text() if path.is_file() else spec)
        source = f"Reference file {str(path)!r}" if path.is_file() else "--reference"
        return reference_from_datamodule(datamodule_from_config(config, trusted_modules, source))
    raise ConfigurationError(
        f"Cannot use {spec!r} as --reference: give a mixture name (ring8, grid25), a folder of images, a real-features "
        ".pt file written by the cache, or a datamodule config (a YAML file such as a run's config.yaml, or "
        "'{class_path: gan_lightning.data.CIFAR10DataModule, init_args: {root: data}}')."
    )


def content_sha256(images: Tensor) -> str:
    """sha256 of the exact uint8 images fed to the extractor: the part of the cache key that makes staleness impossible."""
    digest = hashlib.sha256(f"{tuple(images.shape)}".encode())
    digest.update(images.contiguous().numpy().tobytes())
    return digest.hexdigest()
