"""Preemption for Slurm: on the requeue signal, stop at a generator-step boundary, save ``last.ckpt``, requeue.

Used by ``scripts/slurm/train.sbatch`` (``--trainer.callbacks+=gan_lightning.callbacks.SlurmRequeue``); the
requeued job restarts with ``--ckpt_path last``.

Why not Lightning's own SLURM auto-requeue (``SLURMEnvironment(auto_requeue=True)``)? Its SIGUSR1 handler saves
``hpc_ckpt_N.ckpt`` *inside the signal handler*: at whatever bytecode the main thread was running (between the
discriminator and the generator update of a step, say), and with a barrier that, under DDP, can meet another
rank's gradient all-reduce and hang. It writes into ``default_root_dir`` (the working directory unless set), where
a later, unrelated run started without ``--ckpt_path`` would silently resume from it. Here the handler only sets a
flag; the ranks agree on it at the end of a generator step (one small all-reduce per check, the same kind Lightning
already does every step for SIGTERM), save through the run's checkpoint callback (atomic ``last.ckpt`` in the run
directory, the state ``--ckpt_path last`` resumes exactly), then rank 0 runs ``scontrol requeue``.

Installing this handler first also keeps Lightning from installing its own SIGUSR1 handler (it only registers one
when the signal has no handler yet), so no ``hpc_ckpt`` files are written.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from typing import Any, Optional, Union

from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint

from gan_lightning.runtime import internals


def _signal_number(sig: Union[int, str]) -> int:
    if isinstance(sig, int):
        return sig
    name = sig.upper()
    return int(getattr(signal, name if name.startswith("SIG") else "SIG" + name))


class SlurmRequeue(Callback):
    """Save ``last.ckpt`` and requeue the Slurm job when ``signum`` arrives (``#SBATCH --signal=USR1@90``).

    Args:
        signum: the signal Slurm sends before the time limit or on preemption (name or number).
        requeue: run ``scontrol requeue $SLURM_JOB_ID`` after saving (only inside a Slurm job).
        check_every_n_steps: how often (in generator steps) the ranks compare notes; each check is one
            all-reduce of one integer under DDP. 1 stops at the first step boundary after the signal.
    """

    def __init__(self, signum: Union[int, str] = "SIGUSR1", requeue: bool = True, check_every_n_steps: int = 1) -> None:
        if check_every_n_steps < 1:
            raise ValueError(f"check_every_n_steps must be >= 1, got {check_every_n_steps}")
        self.signum = _signal_number(signum)
        self.requeue = requeue
        self.check_every_n_steps = check_every_n_steps
        self.signalled = False
        self.requeued = False
        self._previous: Any = None
        self._install()  # as early as possible: the default action of SIGUSR1 is to kill the process

    # -- signal handling: the handler only records the signal --------------------------------------------
    def _install(self) -> None:
        if threading.current_thread() is not threading.main_thread() or self._previous is not None:
            return
        self._previous = signal.signal(self.signum, self._handler)

    def _handler(self, signum: int, frame: Any) -> None:
        self.signalled = True

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        self._install()
        if stage == "fit" and self._last_checkpoint_callback(trainer) is None:
            raise ValueError(
                "SlurmRequeue needs a checkpoint callback with save_last=True (e.g. "
                "gan_lightning.callbacks.GANCheckpoint with save_last: true) so that the requeued job's "
                "--ckpt_path last finds the saved state."
            )

    def teardown(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if self._previous is not None and threading.current_thread() is threading.main_thread():
            signal.signal(self.signum, self._previous)
            self._previous = None

    # -- at a generator-step boundary: agree, save, requeue, stop ------------------------------------------
    @staticmethod
    def _last_checkpoint_callback(trainer: Trainer) -> Optional[ModelCheckpoint]:
        for cb in trainer.checkpoint_callbacks:
            if isinstance(cb, ModelCheckpoint) and cb.save_last is True:
                return cb
        return None

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if trainer.global_step % self.check_every_n_steps != 0:
            return
        if not trainer.strategy.reduce_boolean_decision(self.signalled, all=False):
            return
        ckpt = self._last_checkpoint_callback(trainer)
        assert ckpt is not None  # checked in setup
        internals.save_last_checkpoint(ckpt, trainer)  # collective; barrier included
        _say(trainer, f"SlurmRequeue: signal {self.signum} received; saved {ckpt.last_model_path} "
                      f"at generator step {trainer.global_step}")
        trainer.should_stop = True
        if self.requeue and trainer.is_global_zero:
            self.requeued = self._requeue(trainer)

    def _requeue(self, trainer: Trainer) -> bool:
        job = os.environ.get("SLURM_JOB_ID")
        if os.environ.get("SLURM_ARRAY_JOB_ID") and os.environ.get("SLURM_ARRAY_TASK_ID"):
            job = f"{os.environ['SLURM_ARRAY_JOB_ID']}_{os.environ['SLURM_ARRAY_TASK_ID']}"
        if not job:
            _say(trainer, "SlurmRequeue: not in a Slurm job; stopping without requeue")
            return False
        result = subprocess.run(["scontrol", "requeue", job], capture_output=True, text=True)
        if result.returncode != 0:
            _say(trainer, f"SlurmRequeue: `scontrol requeue {job}` failed ({result.returncode}): "
                          f"{result.stderr.strip()}")
            return False
        _say(trainer, f"SlurmRequeue: requeued job {job}")
        return True


def _say(trainer: Trainer, message: str) -> None:
    if trainer.is_global_zero:
        print(message, file=sys.stderr, flush=True)
