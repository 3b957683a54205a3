"""Where gan_lightning keeps its caches (real features, image caches, the digits classifier).

``$GAN_LIGHTNING_CACHE`` when set (one folder for all of them: their file names differ), else a folder per kind
under torch's home, next to torch.hub's downloads, so one ``$TORCH_HOME`` moves every cache of a machine.
"""

from __future__ import annotations

import os
from pathlib import Path

CACHE_ENV = "GAN_LIGHTNING_CACHE"


def torch_home() -> Path:
    """``$TORCH_HOME``, else ``$XDG_CACHE_HOME/torch``, else ``~/.cache/torch``: torch.hub's documented default."""
    if os.environ.get("TORCH_HOME"):
        return Path(os.environ["TORCH_HOME"]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or "~/.cache").expanduser() / "torch"


def default_cache_dir(kind: str) -> Path:
    """``$GAN_LIGHTNING_CACHE`` or ``torch_home()/gan_lightning/<kind>``."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    return torch_home() / "gan_lightning" / kind
