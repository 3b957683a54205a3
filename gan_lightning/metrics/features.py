"""Feature extractors: the standard InceptionV3, or any ``nn.Module`` the user brings.

A network file (``--feature_extractor PATH``, the collapse monitor's ``classifier``) holds data only: a class path,
plain init arguments and a state dict (:func:`save_module_file`), rebuilt without running code from the file.
Pickled modules and TorchScript programs are refused: both are code (PyTorch's SECURITY.md says TorchScript
models must be treated like executable code from their provider).

Images are first quantised to uint8 exactly as if they were written to PNG (clamp, round; never the
wrap-around of ``(x * 255).byte()``), so generated and real images go through the same conversion. Features are
computed in float32 with autocast off: Lightning's mixed precision would otherwise change the scores by ~1%.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import torch
from torch import Tensor, nn

from gan_lightning.errors import ConfigurationError
from gan_lightning.runtime.trust import (
    TrustedModules,
    check_class_paths,
    forced_weights_only,
    import_trusted,
    is_plain,
    is_weights_only_refusal,
    load_file,
    unsafe_file_error,
)
from gan_lightning.metrics.weights import file_sha256, module_sha256, resolve_inception_weights


@dataclass
class Features:
    """Per-sample features (N, D) for FID/KID/precision-recall and class logits (N, C) for IS (None if unavailable)."""

    pool: Tensor
    logits: Optional[Tensor] = None

    def __len__(self) -> int:
        return len(self.pool)

    def to_dict(self) -> dict[str, Tensor]:
        out = {"pool": self.pool}
        if self.logits is not None:
            out["logits"] = self.logits
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Tensor]) -> "Features":
        return cls(d["pool"], d.get("logits"))


def to_uint8(images: Tensor) -> Tensor:
    """Images in [-1, 1] -> uint8 in [0, 255] with clamping and rounding (no wrap-around past 1.0)."""
    return ((images.detach().float() + 1) * 127.5).round_().clamp_(0, 255).to(torch.uint8)


def autocast_off(device: torch.device):
    """A context that disables autocast on ``device`` (features must be float32 whatever the training precision)."""
    return torch.autocast(device_type=device.type, enabled=False)


class FeatureExtractor(nn.Module):
    """Base class: maps a batch of uint8 images (N, C, H, W) to :class:`Features`.

    ``identity()`` describes the extractor and its weights; it is part of the real-statistics cache key and
    of the JSON protocol record, so scores from different extractors or weights are never mixed.
    """

    resize: str = "none"

    def extract_batch(self, images: Tensor) -> Features:
        raise NotImplementedError

    def identity(self) -> dict[str, Any]:
        raise NotImplementedError

    @torch.no_grad()
    def extract(self, images: Tensor, batch_size: int = 64, progress: Optional[Callable[[int], None]] = None) -> Features:
        """Features of uint8 images, in float32 on the CPU, batch by batch on the extractor's device;
        ``progress(n)`` is called after each batch of ``n`` images."""
        if images.dtype != torch.uint8:
            raise ConfigurationError(f"Feature extractors take uint8 images; got {images.dtype} (use to_uint8 first).")
        device = next(iter(self.parameters()), torch.empty(0)).device
        pools, logits = [], []
        with autocast_off(device):
            for start in range(0, len(images), batch_size):
                out = self.extract_batch(images[start : start + batch_size].to(device))
                pools.append(out.pool.float().cpu())
                if out.logits is not None:
                    logits.append(out.logits.float().cpu())
                if progress is not None:
                    progress(len(out.pool))
        if not pools:
            raise ConfigurationError("No images to extract features from.")
        return Features(torch.cat(pools), torch.cat(logits) if logits else None)


class InceptionV3Features(FeatureExtractor):
    """torch-fidelity's TF-compatible InceptionV3: pool3 (2048-d) for FID/KID/PR, unbiased logits for IS.

    Inputs of any size are resized to 299x299 with torch-fidelity's TF1-compatible bilinear resize, which is
    what makes the scores comparable with the TTUR reference code (Heusel et al. 2017) and with torch-fidelity.
    Grayscale images are repeated to three channels.
    """

    resize = "tf1-bilinear-299 (torch-fidelity)"

    def __init__(self, weights_path: Optional[str] = None, download: bool = True):
        super().__init__()
        from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

        self.weights_path = resolve_inception_weights(weights_path, download=download)
        try:
            with forced_weights_only():  # torch-fidelity reads the file with weights_only=False
                self.net = FeatureExtractorInceptionV3(
                    "inception-v3-compat", ["2048", "logits_unbiased"], feature_extractor_weights_path=str(self.weights_path)
                )
        except Exception as err:  # noqa: BLE001 - torch.load raises many kinds of errors
            if is_weights_only_refusal(err):
                raise unsafe_file_error(
                    f"InceptionV3 weights file {str(self.weights_path)!r}", err,
                    "Replace it with torch-fidelity's file (a plain state dict) from a fresh download."
                ) from None
            if not isinstance(err, (RuntimeError, EOFError, OSError)):
                raise
            raise ConfigurationError(
                f"Cannot load InceptionV3 weights from {str(self.weights_path)!r} ({err}); the file is not torch-fidelity's "
                "InceptionV3 state dict. Replace it with a fresh download."
            ) from err
        self._sha256 = file_sha256(self.weights_path)

    def extract_batch(self, images: Tensor) -> Features:
        if images.shape[1] == 1:
            images = images.expand(-1, 3, -1, -1)
        if images.shape[1] != 3:
            raise ConfigurationError(f"InceptionV3 takes 1- or 3-channel images; got {images.shape[1]} channels.")
        pool, logits = self.net(images.contiguous())
        return Features(pool, logits)

    def identity(self) -> dict[str, Any]:
        return {
            "name": "inception-v3-compat (torch-fidelity)",
            "layers": {"fid/kid/pr": "2048 (pool3)", "is": "logits_unbiased"},
            "weights_sha256": self._sha256,
            "weights_path": str(self.weights_path),
            "resize": self.resize,
        }


class ModuleFeatures(FeatureExtractor):
    """Any ``nn.Module`` as feature extractor, e.g. a classifier trained on the user's own domain.

    The module receives float images in the data's range [-1, 1] (after the same uint8 quantisation as the
    reference images) at their own resolution, and returns either features ``(N, D)`` or a pair
    ``(features, logits)``; IS is reported only when logits are returned.
    """

    resize = "none (the module's own input)"

    def __init__(self, module: nn.Module, name: Optional[str] = None):
        super().__init__()
        if not isinstance(module, nn.Module):
            raise ConfigurationError(f"feature_extractor must be an nn.Module, got {type(module).__name__}.")
        self.module = module.eval()
        for p in module.parameters():  # (ScriptModules have no requires_grad_ of their own)
            p.requires_grad_(False)
        self.name = name or f"{type(module).__module__}.{type(module).__qualname__}"
        self._sha256: Optional[str] = None

    def extract_batch(self, images: Tensor) -> Features:
        out = self.module(images.float() / 127.5 - 1)
        if isinstance(out, (tuple, list)):
            if len(out) != 2:
                raise ConfigurationError(f"{self.name} returned {len(out)} outputs; return features or (features, logits).")
            return Features(out[0].flatten(1), out[1].flatten(1))
        return Features(out.flatten(1))

    def identity(self) -> dict[str, Any]:
        if self._sha256 is None:  # the module is frozen, so its hash is computed once
            self._sha256 = module_sha256(self.module)
        return {"name": self.name, "weights_sha256": self._sha256, "resize": self.resize}


def build_feature_extractor(feature_extractor: Optional[nn.Module | str] = None, weights_path: Optional[str] = None,
                            trusted_modules: Optional[str] = None) -> FeatureExtractor:
    """InceptionV3 by default; ``digits``: the digits classifier's penultimate features
    (:mod:`gan_lightning.metrics.digits_classifier`); an ``nn.Module`` (or the path of a file written by
    :func:`save_module_file`) otherwise."""
    if feature_extractor is None or feature_extractor == "inception":
        return InceptionV3Features(weights_path)
    if feature_extractor == "digits":
        from gan_lightning.metrics.digits_classifier import DigitsClassifierFeatures

        return DigitsClassifierFeatures()
    if isinstance(feature_extractor, FeatureExtractor):
        return feature_extractor
    if isinstance(feature_extractor, nn.Module):
        return ModuleFeatures(feature_extractor)
    return ModuleFeatures(load_module_file(str(feature_extractor), trusted_modules), name=str(feature_extractor))


#: ``format`` of the files written by :func:`save_module_file`.
MODULE_FILE_FORMAT = "gan_lightning.module/1"

_CONVERT = (
    "A file holding a pickled module (torch.save(module)) or a TorchScript program is code, so it is not read; in a "
    "Python session where you trust the file, load the network and save it again with "
    "gan_lightning.metrics.save_module_file(module, path, init_args={...})."
)


def save_module_file(module: nn.Module, path: str | Path, init_args: Optional[dict[str, Any]] = None,
                     class_path: Optional[str] = None) -> Path:
    """Save a network (feature extractor, classifier) as data that :func:`load_module_file` rebuilds without running
    code from the file: its class path, the plain init arguments that rebuild it, and its ``state_dict``.

    ``class_path`` defaults to the module's class; it may also name a function returning the module (e.g.
    ``torchvision.models.resnet18``). Loading it needs that class's module to be trusted (gan_lightning, torch,
    torchvision, or ``--trusted_modules`` / ``$GAN_LIGHTNING_TRUSTED_MODULES``).
    """
    init_args = dict(init_args or {})
    if not is_plain(init_args):
        raise ConfigurationError(f"init_args must hold plain values (numbers, strings, lists, dicts); got {init_args!r}.")
    entry = {
        "format": MODULE_FILE_FORMAT,
        "class_path": class_path or f"{type(module).__module__}.{type(module).__qualname__}",
        "init_args": init_args,
        "state_dict": {k: v.detach().cpu() for k, v in module.state_dict().items()},
    }
    out = Path(path).expanduser()
    torch.save(entry, out)
    return out


def load_module_file(path: str, trusted_modules: Optional[str] = None) -> nn.Module:
    """A network saved with :func:`save_module_file`, rebuilt without running code from the file: read with
    ``torch.load(weights_only=True)``, its class imported only from a trusted module (:mod:`gan_lightning.runtime.trust`)."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise ConfigurationError(
            f"Feature extractor {path!r} is neither 'inception' nor an existing file; save your module with "
            "gan_lightning.metrics.save_module_file(module, path, init_args={...}) and pass that path."
        )
    entry = load_file(file, what="network file", advice=_CONVERT)
    if not isinstance(entry, dict) or entry.get("format") != MODULE_FILE_FORMAT:
        raise ConfigurationError(f"{path!r} is not a network file written by save_module_file. {_CONVERT}")
    source = f"Network file {str(file)!r}"
    trusted = TrustedModules(trusted_modules)
    init_args = entry.get("init_args") or {}
    check_class_paths(init_args, "init_args", source, trusted)
    build = import_trusted(str(entry.get("class_path")), "class_path", source, trusted)
    try:
        module = build(**init_args)
    except TypeError as err:
        raise ConfigurationError(f"{source}: cannot build {entry['class_path']} with init_args {init_args} ({err}).") from err
    if not isinstance(module, nn.Module):
        raise ConfigurationError(f"{source}: {entry['class_path']} built a {type(module).__name__}, not an nn.Module.")
    try:
        module.load_state_dict(entry["state_dict"])
    except RuntimeError as err:
        raise ConfigurationError(
            f"{source}: its weights do not fit {entry['class_path']}({init_args}) ({str(err).splitlines()[0]}); save it "
            "again with the init_args that built the network."
        ) from err
    return module
