"""Backward passes and optimizer steps for a two-network GAN under Lightning's manual optimization.

Three things Lightning does not do for a GAN, in one place:

- **Step counting.** Lightning counts every optimizer step (issue #17958); discriminator steps are taken
  uncounted and a generator step is counted only when it really happened, so ``global_step`` counts generator
  updates.
- **One loss scaler per network** under 16-bit mixed precision. With Lightning's single GradScaler, updated twice
  per iteration, an overflow or a growth caused by one network changes the scale the other trains with, and steps
  get skipped. The precision plugin's own scaler serves G (Lightning checkpoints it); D's is saved by the module
  through :meth:`OptimizerSteps.state_dict`.
- **Fast dispatch.** With 32-bit precision on one device and no profiler, ``manual_backward`` and
  ``LightningOptimizer.step`` only call hooks; calling just the hooks some callback implements saves a few hundred
  microseconds per generator step, most of the framework's overhead on small networks.
"""

from __future__ import annotations

from typing import Any, Optional

import torch
from lightning.pytorch import Callback, LightningModule
from lightning.pytorch.plugins.precision import Precision
from lightning.pytorch.profilers import PassThroughProfiler
from lightning.pytorch.strategies import SingleDeviceStrategy
from torch import Tensor

from gan_lightning.runtime import internals


class OptimizerSteps:
    """Backward and step for the ``generator`` / ``discriminator`` phases of one LightningModule."""

    def __init__(self, module: LightningModule):
        self.module = module
        self.fast_callbacks: Optional[list[Callback]] = None  # None: Lightning's own dispatch path
        self.scalers: Optional[dict[str, torch.amp.GradScaler]] = None
        self.pending_discriminator_scaler: Optional[dict[str, Any]] = None
        self.skipped_generator_steps = 0

    # ------------------------------------------------------------------ set-up
    def on_train_start(self) -> None:
        self.fast_callbacks = self._fast_dispatch_callbacks()

    def _fast_dispatch_callbacks(self) -> Optional[list[Callback]]:
        """The callbacks implementing ``on_before_optimizer_step`` when the fast path applies, else None.

        Anything beyond 32-bit single-device training without a profiler (mixed precision, DDP, profiling,
        backward hooks on a callback or an override on the module) takes Lightning's own path.
        """
        module, trainer = self.module, self.module.trainer
        if type(trainer.precision_plugin) is not Precision or type(trainer.strategy) is not SingleDeviceStrategy:
            return None
        if not isinstance(trainer.profiler, PassThroughProfiler):
            return None
        for hook in ("on_before_backward", "on_after_backward"):
            if any(getattr(type(cb), hook) is not getattr(Callback, hook) for cb in trainer.callbacks):
                return None
        for hook in ("backward", "on_before_backward", "on_after_backward", "optimizer_step"):
            if getattr(type(module), hook) is not getattr(LightningModule, hook):
                return None
        base = Callback.on_before_optimizer_step
        return [cb for cb in trainer.callbacks if type(cb).on_before_optimizer_step is not base]

    # ------------------------------------------------------------------ loss scalers
    def use_scaler(self, phase: str) -> None:
        """Make the precision plugin use ``phase``'s own GradScaler (a no-op without one)."""
        plugin = self.module.trainer.precision_plugin
        if getattr(plugin, "scaler", None) is None:
            return
        if self.scalers is None:
            shared = plugin.scaler
            d_scaler = internals.clone_grad_scaler(shared)
            if self.pending_discriminator_scaler is not None:
                d_scaler.load_state_dict(self.pending_discriminator_scaler)
            self.scalers = {"generator": shared, "discriminator": d_scaler}
        plugin.scaler = self.scalers[phase]

    def grad_scale(self) -> Optional[Tensor]:
        """The current 16-bit loss scale as a tensor (no host sync), for scaled ``autograd.grad`` in penalties."""
        scaler = getattr(self.module.trainer.precision_plugin, "scaler", None)
        if scaler is None or not scaler.is_enabled():
            return None
        return internals.grad_scale(scaler, self.module.device)

    def state_dict(self) -> Optional[dict[str, Any]]:
        """The discriminator's scaler (the generator's is Lightning's, checkpointed by Lightning)."""
        return self.scalers["discriminator"].state_dict() if self.scalers is not None else None

    def load_state_dict(self, state: Optional[dict[str, Any]]) -> None:
        self.pending_discriminator_scaler = state

    # ------------------------------------------------------------------ backward and step
    def backward(self, loss: Tensor) -> None:
        if self.fast_callbacks is not None:
            loss.backward()
        else:
            self.module.manual_backward(loss)

    def step_uncounted(self, optimizer: Any) -> None:
        """Step an optimizer without advancing ``global_step``, running ``on_before_optimizer_step`` hooks."""
        if self.fast_callbacks is None:
            internals.step_without_counting(optimizer)
            return
        module, raw = self.module, optimizer.optimizer

        def hooks() -> None:
            for callback in self.fast_callbacks:
                callback.on_before_optimizer_step(module.trainer, module, raw)
            module.on_before_optimizer_step(raw)

        internals.call_as_hook(module, "on_before_optimizer_step", hooks)
        raw.step()

    def step_generator(self, optimizer: Any) -> bool:
        """Step G and count it as a generator step unless the 16-bit scaler skipped it (inf/NaN gradients)."""
        scaler = getattr(self.module.trainer.precision_plugin, "scaler", None)
        current = internals.grad_scale_if_set(scaler) if scaler is not None and scaler.is_enabled() else None
        scale_before = current.clone() if current is not None else None
        self.step_uncounted(optimizer)
        # GradScaler.step has already synchronised to decide; reading the scale back costs nothing more.
        if scale_before is not None and bool(internals.grad_scale_if_set(scaler) < scale_before):
            self.skipped_generator_steps += 1
            return False
        internals.count_training_step(self.module.trainer)
        return True
