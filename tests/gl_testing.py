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
