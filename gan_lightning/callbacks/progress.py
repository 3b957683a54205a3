"""GANProgressBar: training progress counted in generator steps, with the latest losses.

Lightning's bar counts the batches of each epoch ("Epoch 53: 16/16"), but a GAN run is planned in generator steps
(``max_steps``; GAN papers and StudioGAN, Mimicry or StyleGAN count that way). This bar shows one count over the
whole run, ``generator step 1200/1500``, with d_loss and g_loss of the latest step. The losses are read (one host
sync) only on the steps where the display changes, every ``refresh_rate`` generator steps: nothing is read on the
other steps, so the bar costs the training loop no synchronisation.

Where the output is not a terminal (CI logs, Slurm ``.out`` files, ``| tee``) a bar redrawn with carriage returns
leaves a stream of fragments, so the bar prints plain lines instead, at most one every ``line_interval`` seconds
(and one at the end).
"""

from __future__ import annotations

import importlib.util
import math
import sys
import time
from typing import Any, Literal, Optional, Union

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.callbacks import ProgressBar, TQDMProgressBar
from lightning.pytorch.callbacks.progress.tqdm_progress import Tqdm

from gan_lightning.errors import ConfigurationError

Style = Literal["auto", "bar", "lines"]


def total_generator_steps(trainer: Trainer) -> Optional[int]:
    """The generator step at which training stops: ``max_steps``, or ``max_epochs`` x steps per epoch when that is
    smaller (one training batch is one generator step in :class:`~gan_lightning.GANModule`); None if unbounded."""
    limits = []
    if trainer.max_steps is not None and trainer.max_steps > 0:
        limits.append(int(trainer.max_steps))
    batches = trainer.num_training_batches
    if trainer.max_epochs is not None and trainer.max_epochs > 0 and math.isfinite(batches):
        limits.append(int(trainer.max_epochs) * int(batches))
    return min(limits) if limits else None


def output_is_terminal(stream: Any) -> bool:
    """A terminal, or a Jupyter kernel that can draw tqdm's widget (Lightning's Tqdm is tqdm.auto there)."""
    isatty = getattr(stream, "isatty", None)
    if callable(isatty) and isatty():
        return True
    return "ipykernel" in sys.modules and importlib.util.find_spec("ipywidgets") is not None


def _format_value(value: Any) -> str:
    return format(value, ".4g") if isinstance(value, float) else str(value)


class GANProgressBar(TQDMProgressBar):
    """Progress in generator steps over the whole run, with the latest d_loss / g_loss.

    Args:
        refresh_rate: generator steps between updates; the losses are read only on these steps (0 hides the bar).
        process_position: line offset of the bars, as in Lightning's ``TQDMProgressBar``.
        style: ``bar`` (a tqdm bar), ``lines`` (plain lines, for logs), or ``auto``: the bar on a terminal (or in
            Jupyter), lines otherwise.
        line_interval: in the ``lines`` style, the least number of seconds between two printed lines; the first
            update and the end of training are always printed.

    Shown: ``generator step N/total``, the elapsed and remaining time, generator steps per second, ``d_loss``,
    ``g_loss`` (of the latest step, from ``GANModule.last_step_outputs``; for another LightningModule, the last
    logged values), anything the module logs with ``prog_bar=True``, and the epoch. The total is ``max_steps``,
    or ``max_epochs`` x steps per epoch when that comes first.
    """

    TOTAL_FORMAT = "{desc} {n_fmt}/{total_fmt} {percentage:3.0f}%|{bar}| [{elapsed}<{remaining}, {rate_noinv_fmt}{postfix}]"
    UNBOUNDED_FORMAT = "{desc} {n_fmt} [{elapsed}, {rate_noinv_fmt}{postfix}]"

    def __init__(self, refresh_rate: int = 25, process_position: int = 0, style: Style = "auto", line_interval: float = 30.0):
        if refresh_rate < 0:
            raise ConfigurationError(f"GANProgressBar: refresh_rate must be >= 0 (0 hides the bar), got {refresh_rate}")
        if style not in ("auto", "bar", "lines"):
            raise ConfigurationError(f"GANProgressBar: style must be 'auto', 'bar' or 'lines', got {style!r}")
        if line_interval < 0:
            raise ConfigurationError(f"GANProgressBar: line_interval must be >= 0 seconds, got {line_interval}")
        super().__init__(refresh_rate=refresh_rate, process_position=process_position, leave=False)
        self.style = style
        self.line_interval = line_interval
        self._lines = style == "lines"
        self._total: Optional[int] = None
        self._start_time = 0.0
        self._start_step = 0
        self._last_refresh_step = -1
        self._last_line: Optional[tuple[float, int]] = None  # (time, step) of the last printed line
        self._eval_start: Optional[float] = None
        self._epoch: Optional[int] = None

    @property
    def train_description(self) -> str:
        return "generator step"

    @property
    def uses_lines(self) -> bool:
        """Whether this bar prints plain lines (resolved when a run starts)."""
        return self._lines

    # ------------------------------------------------------------------ set-up
    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        self._lines = self.style == "lines" or (self.style == "auto" and not output_is_terminal(sys.stdout))

    def init_train_tqdm(self) -> Tqdm:
        total = self._total
        return Tqdm(
            desc=self.train_description,
            total=total,
            initial=self.trainer.global_step,
            position=2 * self.process_position,
            disable=self.is_disabled or self._lines,
            leave=True,
            dynamic_ncols=True,
            file=sys.stdout,
            smoothing=0,
            unit=" steps",
            bar_format=self.TOTAL_FORMAT if total else self.UNBOUNDED_FORMAT,
        )

    # Evaluation-loop bars are redrawn per batch: in the ``lines`` style they stay silent (one line at the end).
    def init_sanity_tqdm(self) -> Tqdm:
        return Tqdm(disable=True) if self._lines else super().init_sanity_tqdm()

    def init_validation_tqdm(self) -> Tqdm:
        return Tqdm(disable=True) if self._lines else super().init_validation_tqdm()

    def init_test_tqdm(self) -> Tqdm:
        return Tqdm(disable=True) if self._lines else super().init_test_tqdm()

    def init_predict_tqdm(self) -> Tqdm:
        return Tqdm(disable=True) if self._lines else super().init_predict_tqdm()

    # ------------------------------------------------------------------ metrics
    def get_metrics(self, trainer: Trainer, pl_module: LightningModule) -> dict[str, Union[int, str, float, dict[str, float]]]:
        """The latest losses, the module's ``prog_bar`` metrics and the epoch. Reading them syncs with the device:
        called on refresh steps only."""
        metrics: dict[str, Any] = {}
        outputs = getattr(pl_module, "last_step_outputs", None)
        if outputs is not None:
            d_loss, g_loss = torch.stack([outputs.d_loss.float(), outputs.g_loss.float()]).tolist()  # one sync for both
            metrics.update(d_loss=d_loss, g_loss=g_loss)
        else:
            for key in ("d_loss", "g_loss"):
                value = trainer.callback_metrics.get(key)
                if value is not None:
                    metrics[key] = float(value)
        metrics.update(trainer.progress_bar_metrics)
        # the epoch of the latest step (when max_steps stops a run, Lightning has counted one more epoch by on_train_end)
        metrics["epoch"] = self._epoch if self._epoch is not None else trainer.current_epoch
        return metrics

    # ------------------------------------------------------------------ training
    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._total = total_generator_steps(trainer)
        self._start_time = time.monotonic()
        self._start_step = trainer.global_step
        self._last_refresh_step = -1
        self._last_line = None
        self._epoch = None
        self.train_progress_bar = self.init_train_tqdm()

    def on_train_epoch_start(self, trainer: Trainer, *_: Any) -> None:
        # One bar for the whole run: no reset per epoch. The total can change when data loaders are reloaded.
        total = total_generator_steps(trainer)
        if total != self._total:
            self._total = total
            self.train_progress_bar.total = total

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int) -> None:
        if self.is_disabled:
            return
        step = trainer.global_step
        self._epoch = trainer.current_epoch
        if step == self._last_refresh_step or (step % self.refresh_rate != 0 and step != self._total):
            return  # the steps in between: no reads, no syncs
        self._last_refresh_step = step
        self._show(trainer, pl_module, step, final=False)

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Nothing: Lightning's bar reads the metrics here, which would add a host sync at every epoch's end."""

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self.is_enabled and (self._lines or trainer.global_step != self._last_refresh_step):
            self._show(trainer, pl_module, trainer.global_step, final=True)
        self.train_progress_bar.close()
        self._epoch = None

    def _show(self, trainer: Trainer, pl_module: LightningModule, step: int, final: bool) -> None:
        if not self._lines:
            bar = self.train_progress_bar
            bar.n = step
            bar.set_postfix(self.get_metrics(trainer, pl_module), refresh=False)
            bar.refresh()
            return
        now = time.monotonic()
        if self._last_line is not None:
            last_time, last_step = self._last_line
            if last_step == step or (not final and now - last_time < self.line_interval):
                return
        self._last_line = (now, step)
        print(self._line(step, now, self.get_metrics(trainer, pl_module)), flush=True)

    def _line(self, step: int, now: float, metrics: dict[str, Any]) -> str:
        """``generator step 1200/1500 (80%) | 02:10 elapsed, 9.21 steps/s, 00:32 left | d_loss=0.6131 g_loss=1.93 epoch=3``"""
        total = self._total
        head = f"{self.train_description} {step}/{total} ({100 * step / total:.0f}%)" if total else f"{self.train_description} {step}"
        elapsed = now - self._start_time
        rate = (step - self._start_step) / elapsed if elapsed > 0 else 0.0
        timing = f"{Tqdm.format_interval(elapsed)} elapsed"
        if rate > 0:
            timing += f", {rate:.3g} steps/s"
            if total:
                timing += f", {Tqdm.format_interval(max(total - step, 0) / rate)} left"
        values = " ".join(f"{key}={_format_value(value)}" for key, value in metrics.items())
        return " | ".join(part for part in (head, timing, values) if part)

    # ------------------------------------------------------------------ evaluation loops
    def on_validation_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        super().on_validation_start(trainer, pl_module)
        self._eval_start = time.monotonic()

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.val_progress_bar.close()
        self.reset_dataloader_idx_tracker()
        if not trainer.sanity_checking:
            self._eval_line(self.validation_description)
        # (Lightning's bar re-reads the training metrics here; ours keeps those of its last refresh step.)

    def on_test_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        super().on_test_start(trainer, pl_module)
        self._eval_start = time.monotonic()

    def on_test_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        super().on_test_end(trainer, pl_module)
        self._eval_line(self.test_description)

    def on_predict_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        super().on_predict_start(trainer, pl_module)
        self._eval_start = time.monotonic()

    def on_predict_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        super().on_predict_end(trainer, pl_module)
        self._eval_line(self.predict_description)

    def _eval_line(self, description: str) -> None:
        if self._lines and self.is_enabled and self._eval_start is not None:
            print(f"{description} done in {time.monotonic() - self._eval_start:.1f} s", flush=True)
        self._eval_start = None

    def print(self, *args: Any, sep: str = " ", **kwargs: Any) -> None:
        """``LightningModule.print`` goes through here: plain print in the ``lines`` style (no bar to write above)."""
        if self._lines:
            print(*args, sep=sep, **kwargs)
        else:
            super().print(*args, sep=sep, **kwargs)


def with_progress_bar(callbacks: list[Callback], enable_progress_bar: Optional[bool]) -> list[Callback]:
    """The callbacks a command-line run gets: a :class:`GANProgressBar` when none is configured, and no bar at all with
    ``enable_progress_bar=False`` (where Lightning would refuse a configured bar: every shipped experiment has one)."""
    if enable_progress_bar is False:
        return [cb for cb in callbacks if not isinstance(cb, ProgressBar)]
    if any(isinstance(cb, ProgressBar) for cb in callbacks):
        return list(callbacks)
    return [*callbacks, GANProgressBar()]
