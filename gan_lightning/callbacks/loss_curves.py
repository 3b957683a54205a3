"""A PNG of the D and G losses over generator steps, raw and on a log1p scale, written at the end of fit.

The early generator loss is often ten times the later values and hides the rest of the curve; the second
panel shows ``sign(x) * log(1 + |x|)``, a log1p scale that also accepts the negative losses of the
Wasserstein and minimax games. Values are kept as detached tensors on their device and converted once at
the end (no host sync per step). :func:`plot_loss_curves_from_tensorboard` draws the same plot from a
finished run's TensorBoard event files.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, Sequence, Union

import numpy as np
import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.utilities import rank_zero_warn
from torch import Tensor

from gan_lightning.callbacks._figures import new_figure, save_figure
from gan_lightning.callbacks._run_dir import resolve_run_dir
from gan_lightning.errors import ConfigurationError


def signed_log1p(values: np.ndarray) -> np.ndarray:
    """``sign(x) * log(1 + |x|)``: log1p for positive losses, symmetric for negative ones."""
    return np.sign(values) * np.log1p(np.abs(values))


def draw_loss_curves(
    steps: Sequence[float], d_loss: Sequence[float], g_loss: Sequence[float], output: Union[str, Path], title: Optional[str] = None
) -> Path:
    """Two panels, raw and log1p-scaled, of the discriminator and generator losses against generator steps."""
    steps_a, d_a, g_a = (np.asarray(v, dtype=np.float64) for v in (steps, d_loss, g_loss))
    fig, (raw_ax, log_ax) = new_figure(9, 3.2, ncols=2)
    for ax, transform, label in ((raw_ax, lambda v: v, "loss"), (log_ax, signed_log1p, "sign(loss)·log(1 + |loss|)")):
        ax.plot(steps_a, transform(d_a), label="D loss", color="tab:blue", linewidth=1)
        ax.plot(steps_a, transform(g_a), label="G loss", color="tab:orange", linewidth=1)
        ax.set_xlabel("generator step")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    raw_ax.set_title("raw")
    log_ax.set_title("log1p scale")
    raw_ax.legend(loc="upper right", fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return save_figure(fig, Path(output))


def plot_loss_curves_from_tensorboard(
    logdir: Union[str, Path], out: Union[str, Path], d_tag: str = "d_loss", g_tag: str = "g_loss"
) -> Path:
    """Draw the loss plot from the TensorBoard event files in ``logdir`` (a run's version directory).

    When a step was written twice (a resumed run logging into the same directory), the later value wins.
    """
    from tensorboard.backend.event_processing.event_accumulator import SCALARS, EventAccumulator

    acc = EventAccumulator(str(logdir), size_guidance={SCALARS: 0})  # 0: keep every point, no reservoir sampling
    acc.Reload()
    available = acc.Tags().get("scalars", [])
    missing = [t for t in (d_tag, g_tag) if t not in available]
    if missing:
        raise FileNotFoundError(f"No scalars {missing} in the event files of {str(logdir)!r} (found: {sorted(available)}).")
    series = [{e.step: e.value for e in acc.Scalars(tag)} for tag in (d_tag, g_tag)]
    steps = sorted(set(series[0]) & set(series[1]))
    return draw_loss_curves(steps, [series[0][s] for s in steps], [series[1][s] for s in steps], out, title=str(logdir))


class LossCurvesCallback(Callback):
    """Keep D and G losses from ``pl_module.last_step_outputs`` every N generator steps; plot them at fit end.

    Args:
        every_n_steps: interval in generator steps (default: the trainer's ``log_every_n_steps``).
        filename: the PNG, relative to the run directory (logger's version dir, or ``default_root_dir``).

    The history is part of the checkpoint (tensors only), so a resumed run plots the whole training.
    """

    def __init__(self, every_n_steps: Optional[int] = None, filename: str = "loss_curves.png"):
        if every_n_steps is not None and every_n_steps < 1:
            raise ConfigurationError(f"LossCurvesCallback: every_n_steps must be >= 1, got {every_n_steps}")
        self.every_n_steps = every_n_steps
        self.filename = filename
        self.run_dir: Optional[Path] = None
        self.output: Optional[Path] = None
        self._steps: list[int] = []
        self._losses: list[Tensor] = []  # each a detached (2,) tensor [d_loss, g_loss] on the module's device
        self._restored = torch.zeros(0, 2)  # history loaded from a checkpoint (CPU)

    def _interval(self, trainer: Trainer) -> int:
        return self.every_n_steps or max(1, trainer.log_every_n_steps)

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if stage == "fit":
            self.run_dir = resolve_run_dir(trainer)  # a broadcast: every rank calls it here

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int) -> None:
        step = trainer.global_step
        last = getattr(pl_module, "last_step_outputs", None)
        if last is None or step % self._interval(trainer) != 0 or (self._steps and self._steps[-1] == step):
            return
        self._steps.append(step)
        self._losses.append(torch.stack([last.d_loss.float(), last.g_loss.float()]))  # stays on device: no sync

    def history(self) -> tuple[list[int], Tensor]:
        """``(steps, losses)`` with ``losses`` a CPU ``(K, 2)`` tensor of [d_loss, g_loss] (one host sync)."""
        recent = torch.stack(self._losses).cpu() if self._losses else torch.zeros(0, 2)
        return list(self._steps), torch.cat([self._restored, recent])

    def state_dict(self) -> dict[str, Any]:
        steps, losses = self.history()
        return {"steps": torch.tensor(steps, dtype=torch.long), "losses": losses}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        steps, losses = state_dict.get("steps"), state_dict.get("losses")
        if steps is None or losses is None:
            return
        self._steps = [int(s) for s in steps.tolist()]
        self._restored, self._losses = losses.float().cpu(), []

    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not trainer.is_global_zero or self.run_dir is None:
            return
        steps, losses = self.history()
        if len(steps) < 2:
            rank_zero_warn(f"LossCurvesCallback: only {len(steps)} loss value(s) collected; no plot written.")
            return
        self.output = draw_loss_curves(steps, losses[:, 0].tolist(), losses[:, 1].tolist(), self.run_dir / self.filename)
