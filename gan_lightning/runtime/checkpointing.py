"""ModelCheckpoint that counts generator steps and writes atomically.

Lightning 2.6's ModelCheckpoint has a separate manual-optimization branch that ignores
``train_time_interval`` and warns on every save; GANModule's ``global_step`` already counts generator
updates, so the ordinary step/time logic is the right one. Files are written to a temporary name and
renamed into place, so a kill during a save leaves the previous checkpoint intact.
"""

from __future__ import annotations

import os
import time
from typing import Any

from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint

from gan_lightning.errors import CheckpointError
from gan_lightning.runtime import internals


class GANCheckpoint(ModelCheckpoint):
    """``every_n_train_steps`` counts generator steps; ``save_last`` also saves when training ends."""

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int) -> None:
        if internals.checkpoint_should_skip(self, trainer):
            return
        every_n_steps, time_interval = internals.checkpoint_intervals(self)
        skip_batch = every_n_steps < 1 or trainer.global_step % every_n_steps != 0
        skip_time = True
        now = time.monotonic()
        if time_interval is not None:
            last = internals.checkpoint_last_time_checked(self)
            skip_time = last is None or (now - last) < time_interval.total_seconds()
            skip_time = trainer.strategy.broadcast(skip_time)  # same decision on every rank
        if skip_batch and skip_time:
            return
        if not skip_time:
            internals.set_checkpoint_last_time_checked(self, now)
        candidates = internals.checkpoint_candidates(self, trainer)
        if self.monitor is not None and self.monitor not in candidates:
            return  # the monitored metric is logged by an evaluation callback later
        internals.save_topk_checkpoint(self, trainer, candidates)
        internals.save_last_checkpoint(self, trainer, candidates)

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        # A run that stops between intervals (max_steps, early stop) still leaves its final state in last.ckpt.
        if self.save_last and not trainer.sanity_checking and internals.checkpoint_last_step_saved(self) != trainer.global_step:
            internals.save_last_checkpoint(self, trainer)

    def _save_checkpoint(self, trainer: Trainer, filepath: str) -> None:  # overrides a private method (canary-tested)
        tmp = f"{filepath}.tmp"
        try:
            trainer.save_checkpoint(tmp, self.save_weights_only)  # ends with a barrier on every rank
            if trainer.is_global_zero:
                with open(tmp, "rb") as f:
                    os.fsync(f.fileno())
                os.replace(tmp, filepath)
        except OSError as err:
            if trainer.is_global_zero and os.path.exists(tmp):
                os.remove(tmp)
            previous = self.last_model_path if self.last_model_path and os.path.exists(self.last_model_path) else None
            raise CheckpointError(
                f"Could not write checkpoint {filepath!r} at generator step {trainer.global_step}: {err.strerror or err}. "
                + (f"The previous checkpoint {previous!r} is intact: " if previous else "")
                + "free space or fix the directory, then resume with --ckpt_path last."
            ) from err
        trainer.strategy.barrier("GANCheckpoint.replace")
        internals.record_checkpoint_saved(self, trainer, filepath)
        if trainer.is_global_zero:
            for logger in trainer.loggers:
                logger.after_save_checkpoint(self)
