"""The JSON record of an evaluation: the scores and the protocol that produced them.

A score without its protocol (sample counts, reference set, extractor and weights, resize, seed, EMA or raw
generator) cannot be compared with another one, so both are always written together, during training and from
``python -m gan_lightning evaluate``.
"""

from __future__ import annotations

import json
import math
import os
import platform
from datetime import datetime, timezone
from pathlib import Path
from typing import Any


def library_versions() -> dict[str, str]:
    import lightning
    import torch
    import torch_fidelity

    import gan_lightning

    return {
        "gan_lightning": gan_lightning.__version__,
        "torch": torch.__version__,
        "lightning": lightning.__version__,
        "torch_fidelity": torch_fidelity.__version__,
        "python": platform.python_version(),
    }


def make_record(scores: dict[str, float], protocol: dict[str, Any]) -> dict[str, Any]:
    return {
        "scores": {k: float(v) for k, v in scores.items()},
        "protocol": protocol,
        "versions": library_versions(),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def json_safe(value: Any) -> Any:
    """inf/nan become strings: JSON has no literal for them (reverse KL is inf when no sample is high quality)."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def write_record(record: dict[str, Any], path: str | Path) -> Path:
    """Write atomically (a reader never sees half a file)."""
    out = Path(path).expanduser()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f"{out.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(json_safe(record), indent=2, sort_keys=False) + "\n")
    os.replace(tmp, out)
    return out
