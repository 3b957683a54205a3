"""Where a run's files go: the logger's version directory, or ``default_root_dir`` without a logger.

``trainer.log_dir`` broadcasts from rank 0, so it is a collective: resolve it once in ``setup`` (which every
rank runs) and keep the answer, instead of asking from rank-0-only code later.
"""

from __future__ import annotations

from pathlib import Path

from lightning.pytorch import Trainer


def resolve_run_dir(trainer: Trainer) -> Path:
    """The run directory, e.g. ``runs/default/version_3``. Call it on every rank (it is a broadcast)."""
    log_dir = trainer.log_dir if trainer.loggers else None
    return Path(log_dir if log_dir is not None else trainer.default_root_dir)
