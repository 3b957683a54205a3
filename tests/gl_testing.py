"""Callbacks and networks used by tests that run the CLI (importable with PYTHONPATH=tests), outside gan_lightning."""

import os
import random
import signal

import numpy as np
import torch
from lightning.pytorch.callbacks import Callback

from gan_lightning.networks import MLPGenerator


class KillAtStep(Callback):
    """SIGKILL the process right after generator step ``step``: a crash, with no chance to clean up."""

    def __init__(self, step: int):
        self.step = step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step == self.step:
            os.kill(os.getpid(), signal.SIGKILL)


class DrawsRandomNumbers(Callback):
    """Draw from the global torch/numpy/python RNGs where user callbacks do (augmentations, noise schedules):
    at every epoch start and every batch start, between one generator step and the next."""

    @staticmethod
    def _draw():
        torch.rand(1)
        np.random.rand()
        random.random()

    def on_train_epoch_start(self, trainer, pl_module):
        self._draw()

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self._draw()


class TrustedGenerator(MLPGenerator):
    """An MLPGenerator defined outside gan_lightning: a user's own network, which a checkpoint names by class path."""


class KillSweepOnce(Callback):
    """SIGKILL the whole process group (a sweep and all its runs) right after generator step ``step`` of the run whose
    directory ends with ``run``, once ``wait_for`` exists (a path relative to the sweep directory, e.g. another run's
    run_record.json). Kills only once per sweep directory (``killed_once`` marker there); pre-create the marker to
    disable it. Paths are relative to the sweep so the same fit options serve every sweep of a test."""

    def __init__(self, step: int, run: str, wait_for: str = "", timeout_s: float = 600.0):
        self.step, self.run, self.wait_for, self.timeout_s = step, run, wait_for, timeout_s

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        import time
        from pathlib import Path

        run_dir = Path(trainer.log_dir)
        sweep_dir = run_dir.parent.parent
        marker = sweep_dir / "killed_once"
        if trainer.global_step != self.step or not str(run_dir).endswith(self.run) or marker.exists():
            return
        deadline = time.monotonic() + self.timeout_s
        while self.wait_for and not (sweep_dir / self.wait_for).exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        marker.write_text("")
        os.killpg(os.getpgid(0), signal.SIGKILL)
