"""Every use of a private Lightning or PyTorch API in gan_lightning, each behind one function.

Lightning 2.6 has no public way to step an optimizer without counting the step, to give two networks their own
loss scaler, or to hook into ``ModelCheckpoint``'s save; these functions reach into private attributes to do
it. Each names what it touches in its docstring, goes through :func:`require` (which fails with a message naming
the attribute if a release removed it) and has a canary test in ``tests/test_runtime_canaries.py``. The
supported range is the one pinned in ``pyproject.toml``.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

import torch
from torch import Tensor

from gan_lightning.errors import GANLightningError


class PrivateAPIChanged(GANLightningError, RuntimeError):
    """A private Lightning/PyTorch attribute gan_lightning relies on is missing in the installed version."""


def require(obj: Any, attribute: str, purpose: str) -> Any:
    """``getattr(obj, attribute)``, or a clear error naming the attribute and the versions that have it."""
    try:
        return getattr(obj, attribute)
    except AttributeError:
        import lightning

        raise PrivateAPIChanged(
            f"gan_lightning relies on the private attribute {type(obj).__name__}.{attribute} ({purpose}), which "
            f"lightning {lightning.__version__} / torch {torch.__version__} does not have. Install the versions "
            "pyproject.toml declares (lightning>=2.6,<2.7) or report this at the project's issue tracker."
        ) from None


# ---------------------------------------------------------------- LightningModule
def attached_trainer(module: Any) -> Optional[Any]:
    """The module's trainer, or None when it is not attached (``LightningModule._trainer``).

    The public ``module.trainer`` raises when no trainer is attached.
    """
    return require(module, "_trainer", "telling whether a Trainer is attached")


def call_as_hook(module: Any, hook_name: str, call: Callable[[], None]) -> None:
    """Run ``call`` with ``module._current_fx_name`` set to ``hook_name``, so ``self.log`` inside it is allowed
    exactly as when Lightning itself runs that hook."""
    previous = require(module, "_current_fx_name", "calling optimizer-step hooks directly")
    module._current_fx_name = hook_name
    try:
        call()
    finally:
        module._current_fx_name = previous


# ---------------------------------------------------------------- optimizer steps and the step counter
def step_without_counting(optimizer: Any) -> None:
    """Step a ``LightningOptimizer`` without advancing ``trainer.global_step``.

    In manual optimization every ``optimizer.step()`` counts as a training step (Lightning issue #17958) through
    the ``LightningOptimizer._on_before_step`` / ``_on_after_step`` callbacks; they are replaced by no-ops for the
    duration of the step.
    """
    before = require(optimizer, "_on_before_step", "stepping an optimizer without counting it")
    after = require(optimizer, "_on_after_step", "stepping an optimizer without counting it")
    optimizer._on_before_step = optimizer._on_after_step = _noop
    try:
        optimizer.step()
    finally:
        optimizer._on_before_step, optimizer._on_after_step = before, after


def count_training_step(trainer: Any) -> None:
    """Advance ``trainer.global_step`` by one (``fit_loop.epoch_loop.manual_optimization.optim_step_progress``)."""
    manual = require(trainer.fit_loop.epoch_loop, "manual_optimization", "counting generator steps")
    progress = manual.optim_step_progress
    progress.increment_ready()
    progress.increment_completed()


# ---------------------------------------------------------------- GradScaler
def grad_scale(scaler: torch.amp.GradScaler, device: torch.device) -> Tensor:
    """The scaler's current scale as a device tensor, created if needed (``GradScaler._scale``).

    The public ``get_scale()`` returns a Python float, which would synchronise with the device every step.
    """
    if require(scaler, "_scale", "reading the loss scale without a host sync") is None:
        require(scaler, "_lazy_init_scale_growth_tracker", "creating the loss scale")(device)
    return scaler._scale


def grad_scale_if_set(scaler: torch.amp.GradScaler) -> Optional[Tensor]:
    """``GradScaler._scale`` as it is (None before the first scaled backward)."""
    return require(scaler, "_scale", "reading the loss scale without a host sync")


def clone_grad_scaler(scaler: torch.amp.GradScaler) -> torch.amp.GradScaler:
    """A new GradScaler with the same device and settings (``_device``, ``_init_scale``, ``_growth_factor``,
    ``_backoff_factor``, ``_growth_interval``; GradScaler has no public getter for the device or initial scale)."""
    return torch.amp.GradScaler(
        require(scaler, "_device", "giving each network its own loss scaler"),
        init_scale=require(scaler, "_init_scale", "giving each network its own loss scaler"),
        growth_factor=require(scaler, "_growth_factor", "giving each network its own loss scaler"),
        backoff_factor=require(scaler, "_backoff_factor", "giving each network its own loss scaler"),
        growth_interval=require(scaler, "_growth_interval", "giving each network its own loss scaler"),
        enabled=scaler.is_enabled(),
    )


# ---------------------------------------------------------------- DDP
def register_ddp_comm_hook(strategy: Any, network: torch.nn.Module) -> None:
    """Register the strategy's communication hook on one of our own DDP wrappers
    (``lightning.pytorch.overrides.distributed._register_ddp_comm_hook``, ``DDPStrategy._ddp_comm_*``)."""
    from lightning.pytorch.overrides import distributed

    register = require(distributed, "_register_ddp_comm_hook", "wrapping G and D in separate DDP instances")
    register(
        model=network,
        ddp_comm_state=require(strategy, "_ddp_comm_state", "wrapping G and D in separate DDP instances"),
        ddp_comm_hook=strategy._ddp_comm_hook,
        ddp_comm_wrapper=require(strategy, "_ddp_comm_wrapper", "wrapping G and D in separate DDP instances"),
    )


def ddp_kwargs(strategy: Any) -> dict[str, Any]:
    """The keyword arguments the user gave ``DDPStrategy`` for its DDP wrapper (``DDPStrategy._ddp_kwargs``)."""
    return require(strategy, "_ddp_kwargs", "wrapping G and D in separate DDP instances")


def ddp_comm_hook(strategy: Any) -> Optional[Callable]:
    """``DDPStrategy._ddp_comm_hook``: the communication hook the user gave, if any."""
    return require(strategy, "_ddp_comm_hook", "wrapping G and D in separate DDP instances")


# ---------------------------------------------------------------- ModelCheckpoint
def checkpoint_should_skip(callback: Any, trainer: Any) -> bool:
    """``ModelCheckpoint._should_skip_saving_checkpoint``: sanity check, fast_dev_run, already saved this step."""
    return require(callback, "_should_skip_saving_checkpoint", "saving checkpoints by generator step")(trainer)


def checkpoint_intervals(callback: Any) -> tuple[int, Any]:
    """``(ModelCheckpoint._every_n_train_steps, ModelCheckpoint._train_time_interval)``."""
    return (
        require(callback, "_every_n_train_steps", "saving checkpoints by generator step"),
        require(callback, "_train_time_interval", "saving checkpoints by wall time"),
    )


def checkpoint_last_time_checked(callback: Any) -> Optional[float]:
    return require(callback, "_last_time_checked", "saving checkpoints by wall time")


def set_checkpoint_last_time_checked(callback: Any, value: float) -> None:
    require(callback, "_last_time_checked", "saving checkpoints by wall time")
    callback._last_time_checked = value


def checkpoint_candidates(callback: Any, trainer: Any) -> dict[str, Any]:
    """``ModelCheckpoint._monitor_candidates``: the metrics a checkpoint file name and ``monitor`` may use."""
    return require(callback, "_monitor_candidates", "saving checkpoints by generator step")(trainer)


def save_topk_checkpoint(callback: Any, trainer: Any, candidates: dict[str, Any]) -> None:
    """``ModelCheckpoint._save_topk_checkpoint``."""
    require(callback, "_save_topk_checkpoint", "saving checkpoints by generator step")(trainer, candidates)


def save_last_checkpoint(callback: Any, trainer: Any, candidates: Optional[dict[str, Any]] = None) -> None:
    """``ModelCheckpoint._save_last_checkpoint`` (a collective: every rank must call it)."""
    if candidates is None:
        candidates = checkpoint_candidates(callback, trainer)
    require(callback, "_save_last_checkpoint", "writing last.ckpt")(trainer, candidates)


def checkpoint_last_step_saved(callback: Any) -> int:
    """``ModelCheckpoint._last_global_step_saved``."""
    return require(callback, "_last_global_step_saved", "writing last.ckpt at the end of training")


def record_checkpoint_saved(callback: Any, trainer: Any, filepath: str) -> None:
    """What ``ModelCheckpoint._save_checkpoint`` records after a save (``_last_global_step_saved``,
    ``_last_checkpoint_saved``), for an override that writes the file itself."""
    require(callback, "_last_global_step_saved", "writing checkpoints atomically")
    require(callback, "_last_checkpoint_saved", "writing checkpoints atomically")
    callback._last_global_step_saved = trainer.global_step
    callback._last_checkpoint_saved = filepath


# ---------------------------------------------------------------- fused tensor-list kernels and module wrappers
def foreach_norm(tensors: list[Tensor]) -> list[Tensor]:
    """``torch._foreach_norm``: one fused kernel for the norms of many gradients (no host sync)."""
    return require(torch, "_foreach_norm", "gradient norms in one kernel")(tensors)


def foreach_copy_(targets: list[Tensor], sources: list[Tensor]) -> None:
    """``torch._foreach_copy_``: copy many tensors in one fused call (the EMA generator's weights and buffers)."""
    require(torch, "_foreach_copy_", "updating the EMA generator")(targets, sources)


def foreach_lerp_(targets: list[Tensor], sources: list[Tensor], weight: float) -> None:
    """``torch._foreach_lerp_``: the EMA update ``t += weight * (s - t)`` for many tensors in one fused call."""
    require(torch, "_foreach_lerp_", "updating the EMA generator")(targets, sources, weight)


def compiled_original(module: Any) -> Optional[Any]:
    """The module a ``torch.compile`` wrapper runs (``OptimizedModule._orig_mod``), or None for other modules."""
    return getattr(module, "_orig_mod", None)


def _noop() -> None:
    return None
