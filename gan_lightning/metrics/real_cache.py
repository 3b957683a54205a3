"""On-disk cache of real-image features, keyed so that a stale entry cannot be found.

The key is a sha256 over (a) the reference description (datamodule class and init args, folder, ...), (b) the
sha256 of the exact uint8 images that would be fed to the extractor, and (c) the extractor's identity including
the sha256 of its weights and its resize method. Any change of data, subset, transform, extractor or weights
gives a different file name. (torch-fidelity keys its cache by a user-chosen name and the extractor name only.)
The entry also stores the FID mean/covariance, so FID against a cached reference costs no covariance computation.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Optional

import torch

from gan_lightning.errors import ConfigurationError
from gan_lightning.metrics.features import Features
from gan_lightning.runtime.trust import load_file
from gan_lightning.runtime import cache_dirs

CACHE_ENV = cache_dirs.CACHE_ENV
FORMAT_VERSION = 1


def default_cache_dir() -> Path:
    """``$GAN_LIGHTNING_CACHE`` or ``$TORCH_HOME/gan_lightning/real_features``."""
    return cache_dirs.default_cache_dir("real_features")


def cache_key(key_fields: dict[str, Any]) -> str:
    text = json.dumps({"format": FORMAT_VERSION, **key_fields}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


class RealFeatureCache:
    """Real features and FID statistics stored as ``<cache_dir>/real-<key>.pt`` (plain tensors, weights_only-safe)."""

    def __init__(self, cache_dir: Optional[str | Path] = None):
        self.cache_dir = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()

    def path(self, key_fields: dict[str, Any]) -> Path:
        return self.cache_dir / f"real-{cache_key(key_fields)}.pt"

    def load(self, key_fields: dict[str, Any]) -> Optional[dict[str, Any]]:
        path = self.path(key_fields)
        return load_entry(path) if path.is_file() else None

    def save(self, key_fields: dict[str, Any], features: Features, fid_stats: Optional[dict]) -> Path:
        """Atomic write (temporary file, then rename): concurrent runs never read half a file."""
        path = self.path(key_fields)
        path.parent.mkdir(parents=True, exist_ok=True)
        entry: dict[str, Any] = {"format": FORMAT_VERSION, "key_fields": key_fields, "features": features.to_dict()}
        if fid_stats is not None:
            entry["fid_mu"] = torch.from_numpy(fid_stats["mu"])
            entry["fid_sigma"] = torch.from_numpy(fid_stats["sigma"])
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        torch.save(entry, tmp)
        os.replace(tmp, path)
        return path


def load_entry(path: str | Path) -> dict[str, Any]:
    """A cache entry, read with ``torch.load(weights_only=True)`` (:mod:`gan_lightning.runtime.trust`): a cache folder or a
    ``--reference`` file can come from anyone."""
    entry = load_file(path, what="real-features file",
                      advice="Delete it: gan_lightning computes the real features again and writes a file of plain tensors.")
    if not isinstance(entry, dict) or entry.get("format") != FORMAT_VERSION or "features" not in entry:
        raise ConfigurationError(f"{str(path)!r} is not a real-features file of this gan_lightning version; delete it.")
    return entry


def fid_stats_of(entry: dict[str, Any]) -> Optional[dict]:
    if "fid_mu" not in entry:
        return None
    return {"mu": entry["fid_mu"].numpy(), "sigma": entry["fid_sigma"].numpy()}
