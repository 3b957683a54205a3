"""Feature extractors: the standard InceptionV3, or any ``nn.Module`` the user brings.

Images are first quantised to uint8 exactly as if they were written to PNG (clamp, round; never the
wrap-around of ``(x * 255).byte()``), so generated and real images go through the same conversion. Features are
computed in float32 with autocast off: Lightning's mixed precision would otherwise change the scores by ~1%.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import torch
from torch import Tensor, nn

from gan_lightning.errors import ConfigurationError
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
    def extract(self, images: Tensor, batch_size: int = 64) -> Features:
        """Features of uint8 images, in float32 on the CPU, batch by batch on the extractor's device."""
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
            self.net = FeatureExtractorInceptionV3(
                "inception-v3-compat", ["2048", "logits_unbiased"], feature_extractor_weights_path=str(self.weights_path)
            )
        except (RuntimeError, EOFError, OSError) as err:
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


def build_feature_extractor(feature_extractor: Optional[nn.Module | str] = None, weights_path: Optional[str] = None) -> FeatureExtractor:
    """InceptionV3 by default; ``digits``: the digits classifier's penultimate features
    (:mod:`gan_lightning.metrics.digits_classifier`); an ``nn.Module`` (or the path of a saved / TorchScript module)."""
    if feature_extractor is None or feature_extractor == "inception":
        return InceptionV3Features(weights_path)
    if feature_extractor == "digits":
        from gan_lightning.metrics.digits_classifier import DigitsClassifierFeatures

        return DigitsClassifierFeatures()
    if isinstance(feature_extractor, FeatureExtractor):
        return feature_extractor
    if isinstance(feature_extractor, nn.Module):
        return ModuleFeatures(feature_extractor)
    return ModuleFeatures(load_module_file(str(feature_extractor)), name=str(feature_extractor))


def load_module_file(path: str) -> nn.Module:
    """A module saved with ``torch.jit.save`` or ``torch.save(module)``."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise ConfigurationError(
            f"Feature extractor {path!r} is neither 'inception' nor an existing file; save your module with "
            "torch.jit.save(torch.jit.script(module), path) or torch.save(module, path) and pass that path."
        )
    try:
        return torch.jit.load(str(file), map_location="cpu")
    except RuntimeError:
        pass
    module = torch.load(str(file), map_location="cpu", weights_only=False)
    if not isinstance(module, nn.Module):
        raise ConfigurationError(f"{path!r} holds a {type(module).__name__}, not an nn.Module; save the module itself.")
    return module
