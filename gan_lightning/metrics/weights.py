"""Where the InceptionV3 weights come from, and a fingerprint of whatever weights are used.

Order: an explicit path (config / CLI), then the ``GAN_LIGHTNING_INCEPTION_WEIGHTS`` environment variable, then
torch.hub's cache (``$TORCH_HOME/hub/checkpoints``), then a download into that cache. Offline, the error names the
file, its URL and the places it can be put. The weights are torch-fidelity's conversion of the TensorFlow
2015-12-05 graph that Heusel et al. (2017) used for FID.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Optional

import torch

from gan_lightning.errors import ConfigurationError

INCEPTION_WEIGHTS_FILE = "weights-inception-2015-12-05-6726825d.pth"
INCEPTION_WEIGHTS_URL = f"https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/{INCEPTION_WEIGHTS_FILE}"
INCEPTION_WEIGHTS_ENV = "GAN_LIGHTNING_INCEPTION_WEIGHTS"

_sha256_memo: dict[tuple[str, int, int], str] = {}


def hub_checkpoint_dir() -> Path:
    """torch.hub's download folder: ``$TORCH_HOME/hub/checkpoints`` (``~/.cache/torch/hub/checkpoints`` by default)."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def resolve_inception_weights(path: Optional[str] = None, download: bool = True) -> Path:
    """The path of the InceptionV3 weights file, downloading it into torch.hub's cache when it is nowhere else."""
    for source, candidate in (("the configured path", path), (f"${INCEPTION_WEIGHTS_ENV}", os.environ.get(INCEPTION_WEIGHTS_ENV))):
        if candidate:
            file = Path(candidate).expanduser()
            if not file.is_file():
                raise ConfigurationError(
                    f"Inception weights file {str(file)!r} (from {source}) does not exist. Point it at a copy of "
                    f"{INCEPTION_WEIGHTS_FILE} (download: {INCEPTION_WEIGHTS_URL})."
                )
            return file
    cached = hub_checkpoint_dir() / INCEPTION_WEIGHTS_FILE
    if cached.is_file():
        return cached
    if download:
        try:
            cached.parent.mkdir(parents=True, exist_ok=True)
            # hash_prefix: the file name carries the first 8 hex digits of its sha256, as torch.hub expects
            torch.hub.download_url_to_file(INCEPTION_WEIGHTS_URL, str(cached), hash_prefix="6726825d", progress=True)
            return cached
        except (OSError, RuntimeError) as err:  # URLError is an OSError; a hash mismatch is a RuntimeError
            reason = f"downloading it failed ({err})"
    else:
        reason = "downloads are disabled"
    raise ConfigurationError(
        f"The InceptionV3 weights for FID/IS/KID are missing and {reason}. Download {INCEPTION_WEIGHTS_FILE} from "
        f"{INCEPTION_WEIGHTS_URL} on a machine with internet access, then either put it in {str(cached.parent)!r} "
        f"(torch.hub's cache; set TORCH_HOME to move it), set the environment variable {INCEPTION_WEIGHTS_ENV} to its "
        "path, or pass its path as feature_extractor_weights (callback) / --feature_extractor_weights (evaluate)."
    )


def file_sha256(path: str | Path) -> str:
    """sha256 of a file's bytes (memoised per path, size and mtime: a changed file gets a new hash)."""
    file = Path(path).expanduser().resolve()
    stat = file.stat()
    key = (str(file), stat.st_size, stat.st_mtime_ns)
    if key not in _sha256_memo:
        digest = hashlib.sha256()
        with open(file, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 22), b""):
                digest.update(chunk)
        _sha256_memo[key] = digest.hexdigest()
    return _sha256_memo[key]


def module_sha256(module: torch.nn.Module) -> str:
    """sha256 of a module's class and state (parameter and buffer names, shapes, dtypes and values)."""
    digest = hashlib.sha256(f"{type(module).__module__}.{type(module).__qualname__}".encode())
    for name, tensor in sorted(module.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{tuple(t.shape)}:{t.dtype}".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()
