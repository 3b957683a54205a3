"""``<run>/run_record.json``: written once, when a run has trained to its end; the sign that it is finished.

A sweep (``python -m gan_lightning sweep``) skips the runs that have this file and resumes the others with
``--ckpt_path last``. Only the run itself can tell a finished fit from one stopped early for preemption (the
SlurmRequeue callback stops training at a step boundary, and the process then exits normally) or by SIGTERM, so the
record is written from inside the fit, after the final evaluation and the final ``last.ckpt``. It also keeps the
wall and CPU time of fit summed over every attempt (its state travels in the checkpoint).
"""

from __future__ import annotations

import socket
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Optional

from lightning.pytorch import Callback, LightningModule, Trainer

from gan_lightning.callbacks._run_dir import resolve_run_dir
from gan_lightning.callbacks.slurm import SlurmRequeue
from gan_lightning.metrics.record import write_record

RUN_RECORD = "run_record.json"


class RunRecord(Callback):
    """Write ``<run>/run_record.json`` (final step, epoch, wall and CPU time of fit, attempts) when fit ends at its
    own limit (max_steps, max_epochs, early stopping), not when it was stopped to be resumed later."""

    def __init__(self) -> None:
        self.previous_wall_s = 0.0  # time of earlier attempts, restored from the checkpoint
        self.previous_cpu_s = 0.0
        self.previous_attempts = 0
        self._started: Optional[tuple[float, float]] = None  # (monotonic, process CPU) when this attempt began
        self._run_dir: Optional[Path] = None

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        self._started = (time.monotonic(), time.process_time())
        self._run_dir = resolve_run_dir(trainer)  # a broadcast: every rank calls it here

    def wall_s(self) -> float:
        return self.previous_wall_s + (time.monotonic() - self._started[0] if self._started else 0.0)

    def cpu_s(self) -> float:
        """CPU time of this process (all its threads) during fit, summed over attempts."""
        return self.previous_cpu_s + (time.process_time() - self._started[1] if self._started else 0.0)

    def state_dict(self) -> dict[str, Any]:
        return {"wall_s": self.wall_s(), "cpu_s": self.cpu_s(), "attempts": self.previous_attempts + 1}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.previous_wall_s = float(state_dict.get("wall_s", 0.0))
        self.previous_cpu_s = float(state_dict.get("cpu_s", 0.0))
        self.previous_attempts = int(state_dict.get("attempts", 0))
        # what this process ran before the restore (setup, loading) counts from now on only
        self._started = (time.monotonic(), time.process_time())

    @staticmethod
    def stopped_to_resume(trainer: Trainer) -> bool:
        """Preempted (SlurmRequeue got its signal) or told to terminate: the run is not finished."""
        signalled = any(isinstance(cb, SlurmRequeue) and cb.signalled for cb in trainer.callbacks)
        return signalled or bool(getattr(trainer, "received_sigterm", False)) or trainer.interrupted

    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self.stopped_to_resume(trainer) or not trainer.is_global_zero or self._run_dir is None:
            return
        write_record(
            {
                "finished": True,
                "global_step": int(trainer.global_step),
                "epoch": int(trainer.current_epoch),
                "train_wall_s": round(self.wall_s(), 3),
                "train_cpu_s": round(self.cpu_s(), 3),
                "attempts": self.previous_attempts + 1,
                "host": socket.gethostname(),
                "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            },
            self._run_dir / RUN_RECORD,
        )
