"""ModelCheckpoint that counts generator steps, saves the final state where training stops, and writes atomically.

Lightning 2.6's ModelCheckpoint has a separate manual-optimization branch that ignores
``train_time_interval`` and warns on every save; GANModule's ``global_step`` already counts generator
updates, so the ordinary step/time logic is the right one. Files are written to a temporary name and
renamed into place, so a kill during a save leaves the previous checkpoint intact.

The final ``last.ckpt`` is written at the end of the generator step after which training stops, not at
``on_train_end``: by then Lightning has closed the epoch (its loop state records the epoch as completed even
when ``max_steps`` stopped it half-way) and end-of-training hooks may have drawn random numbers. A run
resumed from an ``on_train_end`` checkpoint with a larger ``max_steps`` would start a new epoch, with a new
data order, instead of finishing the interrupted one. Saved at the step's end, the checkpoint is the one a
longer run writes when it passes that step, so "stop at N, continue to M" is the run straight to M.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path
from typing import Any

from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint

from gan_lightning.errors import CheckpointError
from gan_lightning.runtime import internals


def training_stops_after_this_step(trainer: Trainer) -> bool:
    """Whether ``fit`` ends after the generator step that just finished (called from ``on_train_batch_end``).

    The same conditions as Lightning's fit and epoch loops, through public Trainer properties: ``max_steps``
    reached; the last batch of the last epoch of ``max_epochs``; or a stop request (``trainer.should_stop``,
    set by early stopping, a timer, the collapse monitor) once ``min_steps`` and ``min_epochs`` are met.
    A stop requested later, by validation or an epoch-end hook, is not visible here.
    """
    if trainer.max_steps not in (None, -1) and trainer.global_step >= trainer.max_steps:
        return True
    last_epoch = trainer.max_epochs not in (None, -1) and trainer.current_epoch + 1 >= trainer.max_epochs
    if last_epoch and trainer.is_last_batch:
        return True
    if not trainer.should_stop:
        return False
    # Lightning compares min_epochs with the epochs processed: after the last batch its fit loop decides, with
    # this epoch counted (Lightning sets min_epochs=1 when only min_steps is given).
    epochs_processed = trainer.current_epoch + (1 if trainer.is_last_batch else 0)
    met_min_steps = not trainer.min_steps or trainer.global_step >= trainer.min_steps
    met_min_epochs = not trainer.min_epochs or epochs_processed >= trainer.min_epochs
    return met_min_steps and met_min_epochs


class GANCheckpoint(ModelCheckpoint):
    """``every_n_train_steps`` counts generator steps; ``save_last`` also saves the step where training stops."""

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
        if not (skip_batch and skip_time):
            if not skip_time:
                internals.set_checkpoint_last_time_checked(self, now)
            candidates = internals.checkpoint_candidates(self, trainer)
            # A monitored metric missing here is logged by an evaluation callback later.
            if self.monitor is None or self.monitor in candidates:
                internals.save_topk_checkpoint(self, trainer, candidates)
                internals.save_last_checkpoint(self, trainer, candidates)
        if self.save_last and internals.checkpoint_last_step_saved(self) != trainer.global_step:
            if training_stops_after_this_step(trainer):
                # The run's final state, with the loops still inside this epoch (see the module docstring).
                internals.save_last_checkpoint(self, trainer)

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        super().on_train_start(trainer, pl_module)
        self._keep_writing_the_resumed_last(trainer)

    def _keep_writing_the_resumed_last(self, trainer: Trainer) -> None:
        """A run resumed from the ``last.ckpt`` in its own checkpoint folder goes on writing that file.

        Lightning restores ``last_model_path`` only when the folder is the one the checkpoint was written in; after
        a run directory was copied or renamed it forgets it, finds ``last.ckpt`` "taken" and writes ``last-v1.ckpt``
        beside it, so the next ``--ckpt_path last`` would resume the stale ``last.ckpt`` and lose the steps since."""
        ckpt = trainer.ckpt_path
        if not (self.save_last and ckpt and self.dirpath) or self.last_model_path:
            return
        path = Path(ckpt)
        # last.ckpt, or a last-vN.ckpt an earlier version left: either way go on writing last.ckpt, the file
        # `--ckpt_path last` resumes (a user's copy such as last_step5000.ckpt is not one of ours)
        ours = (path.suffix == self.FILE_EXTENSION and re.fullmatch(rf"{re.escape(self.CHECKPOINT_NAME_LAST)}(-v\d+)?", path.stem)
                and path.parent.resolve() == Path(self.dirpath).resolve())
        # every rank must agree: Lightning's version-counter loop around last.ckpt calls a collective per iteration
        if trainer.strategy.broadcast(bool(ours)):
            self.last_model_path = os.path.join(self.dirpath, self.CHECKPOINT_NAME_LAST + self.FILE_EXTENSION)

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        # A run stopped where training_stops_after_this_step cannot see it (by validation, an epoch-end hook)
        # still leaves its final state in last.ckpt; its loop state then records the epoch as completed.
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
