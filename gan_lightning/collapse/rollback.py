"""Rollback of :class:`~gan_lightning.collapse.monitor.ModeCollapseMonitor`: keep the last healthy state, restore it,
switch remedies on, count rollbacks.

The monitor owns one :class:`Rollback` and decides *when* (a healthy check: :meth:`Rollback.keep`; a collapse:
:meth:`Rollback.roll_back`); this unit knows *how*. The healthy state is the module's ``state_dict`` (weights,
EMA generator, buffers such as ADA's probability) and the optimizers' ``state_dict``\\ s, kept in memory and/or in
``<run dir>/checkpoints/last_healthy.ckpt``. Its counters (``last_healthy_step``, ``rollbacks``,
``remedies_applied``) are checkpointed by the monitor under its own, unchanged, state keys.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any, Optional

from lightning.pytorch import LightningModule, Trainer

from gan_lightning.callbacks._run_dir import resolve_run_dir
from gan_lightning.collapse.remedies import Remedy
from gan_lightning.runtime.trust import load_file


class Rollback:
    """The last healthy state of a run and the way back to it, with ``remedies`` switched on at most
    ``max_rollbacks`` times. ``keep_in_memory``: a copy of the module and optimizer states at every healthy check;
    ``save_checkpoint``: also ``last_healthy.ckpt`` (written atomically; read back when no copy is in memory)."""

    def __init__(self, remedies: list[Remedy], max_rollbacks: int, keep_in_memory: bool, save_checkpoint: bool):
        self.remedies, self.max_rollbacks = remedies, max_rollbacks
        self.keep_in_memory, self.save_checkpoint = keep_in_memory, save_checkpoint
        # --- checkpointed by the monitor
        self.last_healthy_step = -1
        self.rollbacks = 0
        self.remedies_applied = False
        # --- in memory only
        self.healthy_state: Optional[dict[str, Any]] = None
        self.run_dir: Optional[Path] = None

    def setup(self, trainer: Trainer) -> None:
        """At fit set-up, on every rank: where ``last_healthy.ckpt`` goes."""
        if self.save_checkpoint:
            self.run_dir = resolve_run_dir(trainer)  # a broadcast: every rank calls it here

    def reapply_remedies(self, pl_module: LightningModule) -> None:
        """A resumed run was rebuilt from its config, without the remedies a rollback switched on: switch them on
        again (called after Lightning has restored the optimizers, so a learning-rate change is not overwritten)."""
        if self.remedies_applied:
            for remedy in self.remedies:
                remedy.apply(pl_module)

    def keep(self, trainer: Trainer, pl_module: LightningModule, step: int) -> None:
        """Record a healthy check at ``step``: in memory and/or in ``last_healthy.ckpt``, as configured."""
        self.last_healthy_step = step
        if self.keep_in_memory:
            self.healthy_state = {
                "step": step,
                "module": {k: v.detach().clone() for k, v in pl_module.state_dict().items()},
                "optimizers": [copy.deepcopy(opt.state_dict()) for opt in trainer.optimizers],
            }
        if self.save_checkpoint and self.run_dir is not None:
            path = self.run_dir / "checkpoints" / "last_healthy.ckpt"
            if trainer.is_global_zero:
                path.parent.mkdir(parents=True, exist_ok=True)
            tmp = f"{path}.tmp"
            trainer.save_checkpoint(tmp)  # every rank calls it (the status was broadcast), rank 0 writes
            if trainer.is_global_zero:
                os.replace(tmp, path)
            trainer.strategy.barrier("ModeCollapseMonitor.last_healthy")

    def roll_back(self, trainer: Trainer, pl_module: LightningModule, step: int, warmup_steps: int) -> tuple[bool, str]:
        """Restore the last healthy state and apply the remedies; return whether it did and the message saying so
        (or why not: ``max_rollbacks`` reached, no healthy state kept yet). Every rank calls it."""
        if self.rollbacks >= self.max_rollbacks:
            return False, (f"ModeCollapseMonitor: collapsed again at step {step} after {self.rollbacks} rollbacks "
                           f"(max_rollbacks={self.max_rollbacks}); continuing without rolling back.")
        state = self.healthy_state
        if state is None and self.save_checkpoint:
            # rank 0 reads last_healthy.ckpt and sends it, so every rank restores the same state (or none)
            state = self.load_checkpoint(pl_module) if trainer.is_global_zero else None
            state = trainer.strategy.broadcast(state, src=0)
        if state is None:
            return False, (f"ModeCollapseMonitor: collapsed at step {step} but no healthy state was kept yet "
                           f"(no healthy check since step {warmup_steps}, or since a resume); continuing.")
        self.restore(trainer, pl_module, state)
        done = [remedy.apply(pl_module) for remedy in self.remedies]
        self.rollbacks += 1
        self.remedies_applied = True
        return True, (f"ModeCollapseMonitor: rolled back at generator step {step} to the healthy state of step "
                      f"{state['step']} (the step counter keeps counting) and switched on: {'; '.join(done)}.")

    def load_checkpoint(self, pl_module: LightningModule) -> Optional[dict[str, Any]]:
        """The state of ``last_healthy.ckpt`` when no copy is in memory: after a resume, or with
        ``keep_healthy_state: false`` to save memory. Only a file of this run's last healthy step counts."""
        if self.run_dir is None:
            return None
        path = self.run_dir / "checkpoints" / "last_healthy.ckpt"
        if not path.is_file():
            return None
        # weights_only=True only (gan_lightning.runtime.trust): the file is read back from disk, where anyone may have replaced it
        checkpoint = load_file(path, map_location=pl_module.device, what="healthy checkpoint")
        if int(checkpoint.get("global_step", -1)) != self.last_healthy_step:
            return None
        return {"step": self.last_healthy_step, "module": checkpoint["state_dict"],
                "optimizers": checkpoint["optimizer_states"]}

    def restore(self, trainer: Trainer, pl_module: LightningModule, state: Optional[dict[str, Any]] = None) -> None:
        """Copy the kept weights and optimizer moments (default: the in-memory copy) back in place; learning rates
        and other hyper-parameters stay as they are now (set by the schedule and by remedies)."""
        state = self.healthy_state if state is None else state
        assert state is not None
        pl_module.load_state_dict(state["module"])
        for optimizer, saved in zip(trainer.optimizers, state["optimizers"]):
            state = copy.deepcopy(saved)  # load_state_dict may keep references to the tensors it is given
            for saved_group, group in zip(state["param_groups"], optimizer.param_groups):
                saved_group.update({key: value for key, value in group.items() if key != "params"})
            optimizer.load_state_dict(state)
