"""ModeCollapseMonitor: cheap mode-collapse signals every N generator steps, a status, and an action.

Mode collapse is silent in the losses: the discriminator and generator losses of a generator that has dropped
half the modes often look like those of a healthy one. So every ``every_n_steps`` generator steps the monitor
generates a fixed-seed batch and compares it with a fixed real batch (:mod:`gan_lightning.collapse.signals`:
diversity ratio, Naeem et al. 2020 coverage, the histogram over known modes or a classifier's classes), reads the
training dynamics (D accuracy and losses of the last step, the generator's gradient norm from one dedicated
backward pass), and turns them into a status: healthy, suspect or collapsed. A status change raises an alarm that
names the signals and the remedies this framework offers (a :class:`ModeCollapseWarning` and a WARNING record of the
``gan_lightning`` logger, printed even when Python warnings are silenced); on "collapsed" the run can also stop, or
roll back to the last healthy state and continue with a remedy (:mod:`gan_lightning.collapse.remedies`) switched on.

Nothing runs between checks: no per-step host sync, no per-step copy. A check costs one generation of
``num_samples`` samples, one forward/backward of G and D on ``grad_batch_size`` samples and a few small distance
matrices; with ``action="rollback"`` also one in-memory copy of the module and optimizer states per healthy check.
"""

from __future__ import annotations

import logging
import math
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Literal, Optional, Union

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.utilities import rank_zero_only
from torch import Tensor, nn

from gan_lightning.collapse import signals as cs
from gan_lightning.callbacks.diagnostics import log_scalars
from gan_lightning.errors import ConfigurationError
from gan_lightning.metrics.features import FeatureExtractor, to_uint8
from gan_lightning.collapse.remedies import Remedy
from gan_lightning.collapse.rollback import Rollback

STATUSES = ("healthy", "suspect", "collapsed")

log = logging.getLogger(__name__)


class ModeCollapseWarning(UserWarning):
    """A mode-collapse alarm of :class:`ModeCollapseMonitor` (also logged on the ``gan_lightning`` logger)."""


@rank_zero_only
def report(message: str, alarm: bool = True) -> None:
    """On rank 0: an alarm is a :class:`ModeCollapseWarning` and a WARNING log record, so a user who silences
    warnings (``PYTHONWARNINGS=ignore``) still sees it on the console; other news (a recovery) is an INFO record."""
    if alarm:
        warnings.warn(message, ModeCollapseWarning, stacklevel=3)
        log.warning(message)
    else:
        log.info(message)


#: Remedies suggested in the warning, by the kind of signal that fired.
_SAMPLE_REMEDIES = (
    "--model.regularizers+=gan_lightning.regularizers.ModeSeekingRegularizer (Mao et al. 2019)",
    "a PacGAN discriminator: gan_lightning.networks.PackedDiscriminator with packing: 2 (Lin et al. 2018)",
    "--model.unrolled_steps=5 (Metz et al. 2017)",
    "minibatch_layer: stddev on the discriminator (Karras et al. 2018)",
)
_DYNAMICS_REMEDIES = (
    "--model.input_transforms+=gan_lightning.tricks.discriminator_inputs.InstanceNoise (Arjovsky & Bottou 2017)",
    "--model.input_transforms+=gan_lightning.tricks.discriminator_inputs.LabelFlipping",
    "spectral_norm: true on the discriminator (Miyato et al. 2018)",
    "--model.loss=wgan-gp --model.n_critic=5 (Gulrajani et al. 2017)",
    "a lower discriminator learning rate or n_critic",
)


def load_network(value: Union[nn.Module, str, None], what: str) -> Optional[nn.Module]:
    """An ``nn.Module`` as given, or rebuilt from a file written by ``gan_lightning.metrics.save_module_file`` (its
    class must come from a trusted module: gan_lightning, torch, torchvision or ``$GAN_LIGHTNING_TRUSTED_MODULES``)."""
    if value is None or isinstance(value, nn.Module):
        return value
    from gan_lightning.metrics.features import load_module_file

    try:
        return load_module_file(str(value))
    except ConfigurationError as err:
        raise ConfigurationError(f"ModeCollapseMonitor {what}: {err}") from err


def _value(values: dict[str, float], name: str) -> float:
    return values.get(name, math.nan)  # an unavailable value is NaN: every comparison with it is False


def _kl_limit(values: dict[str, float], t: float) -> float:
    return t * math.log(max(values.get("modes_in_data", 1), 2))  # a share of the KL of a single mode


@dataclass(frozen=True)
class Signal:
    """One collapse signal: a row of the table in :class:`ModeCollapseMonitor`'s docstring.

    ``source``: ``"sample"`` (the samples themselves: direct evidence, two of them make a check collapse-level) or
    ``"dynamics"`` (the training dynamics: indirect, never "collapsed"). ``threshold``: the name of the
    ``ModeCollapseMonitor`` argument that sets the threshold, or a fixed value. ``fires(values, threshold)`` reads
    the check's values (``collapse/<name>`` scalars; NaN or missing never fires) and ``describe(values,
    threshold)`` is its text in the alarm. The value itself is computed in ``ModeCollapseMonitor.compute_signals``
    from a pure function of :mod:`gan_lightning.collapse.signals`.
    """

    name: str
    source: Literal["sample", "dynamics"]
    threshold: Union[str, float]
    fires: Callable[[dict[str, float], float], bool]
    describe: Callable[[dict[str, float], float], str]


def _below(name: str, threshold: str) -> Signal:
    """A sample signal that fires when its value falls below its threshold."""
    return Signal(name, "sample", threshold, lambda v, t: _value(v, name) < t,
                  lambda v, t: f"{name} = {_value(v, name):.3f} (< {t})")


#: Every signal of the monitor, in the order they are checked and named in alarms. Adding a signal: its pure function
#: in gan_lightning/collapse/signals.py, its value in ``compute_signals``, and one entry here.
SIGNALS: tuple[Signal, ...] = (
    Signal("modes_covered", "sample", "modes_threshold",
           lambda v, t: "modes_covered" in v and v["modes_covered"] < t * v["modes_in_data"],
           lambda v, t: (f"modes_covered = {_value(v, 'modes_covered'):.0f}/{_value(v, 'modes_in_data'):.0f} "
                         f"(< {t:.0%} of the modes)")),
    Signal("mode_kl", "sample", "kl_threshold",
           lambda v, t: _value(v, "mode_kl") > _kl_limit(v, t),
           lambda v, t: f"mode_kl = {_value(v, 'mode_kl'):.3f} nats (> {t} x log(modes) = {_kl_limit(v, t):.3f})"),
    _below("diversity_ratio", "diversity_threshold"),
    _below("coverage", "coverage_threshold"),
    Signal("d_wins", "dynamics", "d_accuracy_threshold",
           lambda v, t: _value(v, "d_accuracy_real") >= t and _value(v, "d_accuracy_fake") >= t,
           lambda v, t: (f"d_wins: D accuracy real {_value(v, 'd_accuracy_real'):.3f} and fake "
                         f"{_value(v, 'd_accuracy_fake'):.3f} (>= {t})")),
    Signal("d_loss_low", "dynamics", "d_loss_threshold",
           lambda v, t: _value(v, "d_loss") < t and _value(v, "g_loss_change") > 0,
           lambda v, t: (f"d_loss_low: D loss {_value(v, 'd_loss'):.4f} (< {t}) while G loss rose to "
                         f"{_value(v, 'g_loss'):.3f}")),
    Signal("g_grad_vanishing", "dynamics", "grad_vanish_ratio",
           lambda v, t: _value(v, "g_grad_norm") < t * _value(v, "g_grad_norm_max"),
           lambda v, t: (f"g_grad_vanishing: G gradient norm {_value(v, 'g_grad_norm'):.3g} (< {t} x the largest "
                         f"so far, {_value(v, 'g_grad_norm_max'):.3g})")),
)


def signal_names(source: str) -> tuple[str, ...]:
    """Names of the signals of ``SIGNALS`` from ``source`` ("sample" or "dynamics")."""
    return tuple(s.name for s in SIGNALS if s.source == source)


#: Signals that look at the samples themselves (direct evidence) and at the training dynamics (indirect).
SAMPLE_SIGNALS = signal_names("sample")
DYNAMICS_SIGNALS = signal_names("dynamics")


def _delegate(name: str, doc: str) -> property:
    """A monitor attribute that lives on its :class:`Rollback` (its public name and checkpoint key stay)."""
    return property(lambda self: getattr(self.rollback, name), lambda self, value: setattr(self.rollback, name, value),
                    doc=doc)


class ModeCollapseMonitor(Callback):
    """Every ``every_n_steps`` generator steps, compute collapse signals, log them, decide a status and act.

    Signals (logged as ``collapse/<name>``; a signal *fires* when it crosses its threshold; defaults in parentheses,
    tuned on seeds 0-1 of ``scripts/benchmark_collapse_detection.py`` and checked on fresh seeds):

    ==================== ============================================================= ===============================
    signal               value                                                         fires when
    ==================== ============================================================= ===============================
    ``modes_covered``    modes (known mixture modes, or a classifier's classes) that    < ``modes_threshold`` (0.8) ×
                         get at least ``min_mode_fraction`` (10 %) of their data share  the modes present in the data
    ``mode_kl``          KL(generated mode histogram ‖ data histogram), nats            > ``kl_threshold`` (0.2) ×
                                                                                        log(modes): a share of the KL
                                                                                        of a single mode
    ``diversity_ratio``  mean pairwise distance, generated / real, in feature space     < ``diversity_threshold`` (0.5)
    ``coverage``         coverage of Naeem et al. 2020, k = ``k`` (5)                   < ``coverage_threshold`` (0.1)
    ``d_wins``           D accuracy on the last step's real and fake batch              both ≥ ``d_accuracy_threshold``
                                                                                        (0.99)
    ``d_loss_low``       D loss of the last step (not for Wasserstein critics)          < ``d_loss_threshold`` (0.05)
                                                                                        and G loss rose since the
                                                                                        last check
    ``g_grad_vanishing`` ‖∇θ_G L_G‖ on ``grad_batch_size`` (64) fixed latents           < ``grad_vanish_ratio`` (0.01)
                                                                                        × the largest norm so far
    ==================== ============================================================= ===============================

    The table is :data:`SIGNALS` (one :class:`Signal` per row): firing, the status rule's sample/dynamics split and
    the alarm text all come from it. Also logged: ``modes_in_data``, ``d_accuracy_real``/``d_accuracy_fake``,
    ``d_loss``, ``g_loss``, ``g_grad_norm`` and ``status``. The generated batch comes from the same latents at every
    check, so a falling diversity ratio is exactly "the fixed-noise samples becoming near-identical".

    Status rule (``collapse/status``: 0 healthy, 1 suspect, 2 collapsed), from step ``warmup_steps`` on (before it
    the signals are logged but the status stays healthy: an untrained generator is "collapsed" by every measure):

    - a check is at *collapse level* when at least two of the sample signals (``modes_covered``, ``mode_kl``,
      ``diversity_ratio``, ``coverage``) fire: one alone also fires in healthy runs now and then (a healthy grid25
      generator may leave a few modes thin for a while; coverage dips while samples are still imprecise);
    - **collapsed** after ``patience`` consecutive checks at collapse level;
    - **suspect** when a sample signal fires, or at least two dynamics signals do (D winning outright together with
      a near-zero D loss or a vanishing G gradient: the picture of Arjovsky & Bottou 2017), but the check is not
      collapsed;
    - **healthy** otherwise.

    The dynamics signals never make a run "collapsed", and one alone does not make it suspect: a discriminator
    that classifies the last batch perfectly while the generator still gets strong gradients is the normal state
    of many healthy runs (the DCGAN on digits in ``scripts/benchmark_collapse_detection.py``).

    Action when the status becomes collapsed: ``warn`` (only the warning), ``stop`` (``trainer.should_stop``,
    with a message), or ``rollback``: restore the last healthy state (module weights including the EMA generator,
    and the optimizers' moments; learning rates stay as the schedule has set them) and apply ``remedies``, at most
    ``max_rollbacks`` times (then it warns). Lightning's counters are not rewound: the global step keeps counting,
    so a run with ``max_steps`` trains fewer steps after the healthy point, and schedules continue from the current
    step. The rollback is :class:`~gan_lightning.collapse.rollback.Rollback` (``self.rollback``). Snapshots are
    taken at every healthy check (in memory: one copy of the module and optimizer states;
    ``save_healthy_checkpoint`` also writes ``<run dir>/checkpoints/last_healthy.ckpt`` atomically). The in-memory
    copy is not part of the checkpoint; after a resume a rollback uses ``last_healthy.ckpt`` when it was written,
    otherwise the monitor waits for its next healthy check. The checkpointed
    state (status history, last healthy step, rollbacks, whether the remedies are on) does resume: a resumed run
    switches its remedies on again.

    Multi-GPU: rank 0 alone computes the signals, calling the networks directly (outside DDP's forward, so no
    collective runs inside); the status is then broadcast (``trainer.strategy.broadcast``, which every rank joins
    at every check), so stopping, snapshots and rollbacks happen on all ranks alike.

    Args:
        every_n_steps: check interval in generator steps.
        num_samples: generated samples per check; the same number of real samples (a fixed seeded subset).
        seed: latent seed: the same latents at every check, so the signals move only with the generator.
        use_ema: monitor ``generator_ema`` instead of the raw generator. Off by default: the raw generator is the
            one the optimizer pushes from mode to mode; an average over its recent weights can hide that.
        feature_extractor: ``nn.Module`` (or the path of a ``gan_lightning.metrics.save_module_file`` file) mapping
            samples to features for the diversity ratio and coverage, or ``"inception"``: the pool3 features of
            the InceptionV3 that FID uses (images only; the weights come from ``feature_extractor_weights``,
            ``$GAN_LIGHTNING_INCEPTION_WEIGHTS`` or torch.hub's cache, downloaded at the first check when missing).
            Default: the samples themselves (pixels, 2D points), which is cheap and enough for small images.
        feature_extractor_weights: path of the InceptionV3 weights for ``feature_extractor: inception``.
        classifier: ``nn.Module`` (or a path) mapping samples to class logits; its label histogram gives the mode
            signals on labelled data. Without it, datamodules with known ``modes`` (the 2D mixtures) use the
            nearest mode within ``mode_radius`` (default: half the smallest distance between modes).
        k: neighbourhood size of coverage (Naeem et al. 2020 use 5).
        mode_radius: with known modes, samples farther than this from every mode count for none.
        modes_threshold, kl_threshold, diversity_threshold, coverage_threshold, d_accuracy_threshold,
            d_loss_threshold, grad_vanish_ratio: the thresholds of the table above.
        warmup_steps: no status before this step.
        patience: consecutive collapse-level checks before "collapsed".
        action: ``warn``, ``stop`` or ``rollback``.
        remedies: what ``rollback`` switches on (required for it), e.g. ``AddRegularizer(ModeSeekingRegularizer())``.
        max_rollbacks: rollbacks before the monitor only warns.
        keep_healthy_state: keep the in-memory snapshots; default: only with ``action="rollback"``.
        save_healthy_checkpoint: also write ``last_healthy.ckpt`` at healthy checks.
        grad_batch_size: samples of the generator-gradient check (0 switches it off).
        min_mode_fraction: a mode is covered when its generated share is at least this fraction of its data share.
    """

    def __init__(
        self,
        every_n_steps: int = 250,
        num_samples: int = 500,
        seed: int = 4321,
        use_ema: bool = False,
        feature_extractor: Union[nn.Module, str, None] = None,
        feature_extractor_weights: Optional[str] = None,
        classifier: Union[nn.Module, str, None] = None,
        k: int = 5,
        mode_radius: Optional[float] = None,
        min_mode_fraction: float = 0.1,
        modes_threshold: float = 0.8,
        kl_threshold: float = 0.2,
        diversity_threshold: float = 0.5,
        coverage_threshold: float = 0.1,
        d_accuracy_threshold: float = 0.99,
        d_loss_threshold: float = 0.05,
        grad_vanish_ratio: float = 0.01,
        warmup_steps: int = 1000,
        patience: int = 2,
        action: Literal["warn", "stop", "rollback"] = "warn",
        remedies: Optional[list[Remedy]] = None,
        max_rollbacks: int = 3,
        keep_healthy_state: Optional[bool] = None,
        save_healthy_checkpoint: bool = False,
        grad_batch_size: int = 64,
    ):
        arguments = dict(locals())  # the thresholds of SIGNALS are looked up by argument name

        def need(ok: bool, message: str) -> None:
            if not ok:
                raise ConfigurationError(f"ModeCollapseMonitor: {message}")

        need(every_n_steps >= 1, f"every_n_steps must be >= 1, got {every_n_steps}")
        need(k >= 1, f"k must be >= 1, got {k}")
        need(num_samples > k, f"num_samples must be larger than k={k}, got {num_samples}")
        need(action in ("warn", "stop", "rollback"), f"action must be 'warn', 'stop' or 'rollback', got {action!r}")
        need(
            action != "rollback" or bool(remedies),
            "action='rollback' needs at least one remedy, or the run would collapse again the same way; e.g. "
            "remedies: [{class_path: gan_lightning.collapse.remedies.AddRegularizer, init_args: {regularizer: "
            "{class_path: gan_lightning.regularizers.ModeSeekingRegularizer}}}]",
        )
        need(all(isinstance(r, Remedy) for r in remedies or []),
             "remedies must be gan_lightning.collapse.remedies.Remedy objects (class_path: gan_lightning.collapse.remedies.…)")
        need(patience >= 1, f"patience must be >= 1, got {patience}")
        need(warmup_steps >= 0, f"warmup_steps must be >= 0, got {warmup_steps}")
        need(max_rollbacks >= 0, f"max_rollbacks must be >= 0, got {max_rollbacks}")
        need(grad_batch_size >= 0, f"grad_batch_size must be >= 0 (0: off), got {grad_batch_size}")
        need(mode_radius is None or mode_radius > 0, f"mode_radius must be positive or null, got {mode_radius}")
        for name, value in (("modes_threshold", modes_threshold), ("min_mode_fraction", min_mode_fraction),
                            ("coverage_threshold", coverage_threshold), ("d_accuracy_threshold", d_accuracy_threshold),
                            ("grad_vanish_ratio", grad_vanish_ratio)):
            need(0.0 <= value <= 1.0, f"{name} must be in [0, 1], got {value}")
        need(0.0 <= kl_threshold <= 1.0,
             f"kl_threshold is a share of log(number of modes), in [0, 1]; got {kl_threshold}")
        need(diversity_threshold >= 0 and d_loss_threshold >= 0,
             "diversity_threshold and d_loss_threshold must be >= 0")
        self.every_n_steps, self.num_samples, self.seed, self.use_ema = every_n_steps, num_samples, seed, use_ema
        #: "inception" stays a name until the first check builds it (so a missing weights file fails there, with
        #: the download instructions, and constructing the callback never downloads).
        self.feature_extractor = (feature_extractor if feature_extractor == "inception"
                                  else load_network(feature_extractor, "feature_extractor"))
        self.feature_extractor_weights = feature_extractor_weights
        self.classifier = load_network(classifier, "classifier")
        self.k, self.mode_radius, self.min_mode_fraction = k, mode_radius, min_mode_fraction
        #: Threshold of every signal of ``SIGNALS``, by signal name.
        self.thresholds = {s.name: arguments[s.threshold] if isinstance(s.threshold, str) else s.threshold
                           for s in SIGNALS}
        self.warmup_steps, self.patience, self.action = warmup_steps, patience, action
        self.rollback = Rollback(
            remedies=list(remedies or []), max_rollbacks=max_rollbacks,
            keep_in_memory=action == "rollback" if keep_healthy_state is None else keep_healthy_state,
            save_checkpoint=save_healthy_checkpoint,
        )
        self.grad_batch_size = grad_batch_size

        # --- checkpointed state (plain values and tensors only)
        self.status = "healthy"
        self.history: list[tuple[int, int]] = []  # (generator step, status code) of every check
        self.last_checked = -1
        self.consecutive = 0  # consecutive collapse-level checks
        self.max_grad_norm = 0.0
        self.previous_g_loss = math.nan
        # --- in memory only
        #: Signal values of every check made in this process (floats), for plots and benchmarks.
        self.signal_history: list[dict[str, float]] = []
        self.fired: list[str] = []  # signals that fired at the last check
        self._reference: Optional[dict[str, Any]] = None

    # the rollback's options and checkpointed counters, under the monitor's names
    remedies = _delegate("remedies", "What ``rollback`` switches on.")
    max_rollbacks = _delegate("max_rollbacks", "Rollbacks before the monitor only warns.")
    keep_healthy_state = _delegate("keep_in_memory", "Keep an in-memory copy of the healthy state.")
    save_healthy_checkpoint = _delegate("save_checkpoint", "Also write ``last_healthy.ckpt`` at healthy checks.")
    last_healthy_step = _delegate("last_healthy_step", "Generator step of the last healthy check (-1: none).")
    rollbacks = _delegate("rollbacks", "Rollbacks done so far.")
    remedies_applied = _delegate("remedies_applied", "Whether a rollback has switched the remedies on.")

    # ------------------------------------------------------------------ hooks
    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if stage == "fit":
            self.rollback.setup(trainer)

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.rollback.reapply_remedies(pl_module)  # a resumed run: after Lightning has restored the optimizers

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int) -> None:
        step = trainer.global_step
        if step > 0 and step % self.every_n_steps == 0 and step != self.last_checked:
            self.check(trainer, pl_module)

    # ------------------------------------------------------------------ one check
    def check(self, trainer: Trainer, pl_module: LightningModule) -> str:
        """Compute the signals (rank 0), agree on the status (a broadcast every rank joins), act; return the status."""
        step = trainer.global_step
        self.last_checked = step
        code = 0
        if trainer.is_global_zero:
            values = self.compute_signals(trainer, pl_module)
            self.fired = self.fired_signals(values)
            code = STATUSES.index(self.decide(step, self.fired))
            self.signal_history.append({"step": float(step), **values, "status": float(code)})
            metrics = {f"collapse/{name}": torch.tensor(float(v)) for name, v in values.items() if math.isfinite(v)}
            metrics["collapse/status"] = torch.tensor(float(code))
            log_scalars(trainer, pl_module, metrics)
        # Rank 0 alone computed the signals (no collective inside); every rank joins this broadcast, so the action
        # (stop, rollback) is the same on all of them.
        code = int(trainer.strategy.broadcast(code, src=0))
        new, old = STATUSES[code], self.status
        self.history.append((step, code))
        self.status = new
        if new != old:
            self._warn_change(step, old, new)
        if new == "healthy" and step >= self.warmup_steps:
            self.rollback.keep(trainer, pl_module, step)
        if new == "collapsed" and old != "collapsed":
            self._act(trainer, pl_module, step)
        return self.status

    def decide(self, step: int, fired: list[str]) -> str:
        """The status rule of the class docstring, given the signals that fired at this check."""
        if step < self.warmup_steps:
            self.consecutive = 0
            return "healthy"
        sample_fired = [s for s in fired if s in signal_names("sample")]
        dynamics_fired = [s for s in fired if s in signal_names("dynamics")]
        collapse_level = len(sample_fired) >= 2
        self.consecutive = self.consecutive + 1 if collapse_level else 0
        if self.consecutive >= self.patience:
            return "collapsed"
        return "suspect" if sample_fired or len(dynamics_fired) >= 2 else "healthy"

    def fired_signals(self, values: dict[str, float]) -> list[str]:
        """Names of the signals whose value crosses its threshold (NaN, i.e. unavailable, never fires)."""
        return [s.name for s in SIGNALS if s.fires(values, self.thresholds[s.name])]

    # ------------------------------------------------------------------ signals
    @torch.no_grad()
    def compute_signals(self, trainer: Trainer, pl_module: LightningModule) -> dict[str, float]:
        """All signal values of this check, as floats (the only host syncs of the monitor)."""
        ref = self._prepare_reference(trainer, pl_module)
        fake = pl_module.generate(self.num_samples, seed=self.seed, use_ema=self.use_ema).float()
        fake_features = self._features(fake, pl_module.device)
        values = {
            "diversity_ratio": cs.diversity_ratio(fake_features, ref["features"], ref["mean_distance"]),
            "coverage": cs.coverage(fake_features, ref["features"], self.k, ref["radii"]),
        }
        if ref["histogram"] is not None:
            histogram = cs.mode_histogram(self._assign(fake, pl_module.device), len(ref["histogram"]))
            values["modes_covered"] = cs.modes_covered(histogram, ref["histogram"], self.min_mode_fraction)
            values["modes_in_data"] = (ref["histogram"] > 0).sum()
            values["mode_kl"] = cs.histogram_kl(histogram, ref["histogram"])
        out = {name: float(v) for name, v in values.items()}
        out.update(self._dynamics(pl_module))
        return out

    def _dynamics(self, pl_module: LightningModule) -> dict[str, float]:
        out: dict[str, float] = {}
        last = getattr(pl_module, "last_step_outputs", None)
        loss = getattr(pl_module, "loss", None)
        if last is not None and loss is not None:
            # GMAN/MGAN: the base loss and the adversarial columns only (not an auxiliary classifier's logits)
            base, real_scores, fake_scores = loss.diagnostic_scores(last.real_scores, last.fake_scores)
            accuracy = base.discriminator_accuracy(real_scores, fake_scores)
            if accuracy is not None:
                out["d_accuracy_real"], out["d_accuracy_fake"] = float(accuracy[0]), float(accuracy[1])
            if base.has_loss_floor:  # a critic's loss has no floor to approach
                g_loss = float(last.g_loss)
                out["d_loss"], out["g_loss"] = float(last.d_loss), g_loss
                out["g_loss_change"] = g_loss - self.previous_g_loss  # NaN at the first check
                self.previous_g_loss = g_loss
        if self.grad_batch_size and loss is not None:
            norm = self._generator_gradient_norm(pl_module)
            if math.isfinite(norm):  # one overflow must not make every later norm look vanishing
                self.max_grad_norm = max(self.max_grad_norm, norm)
            out["g_grad_norm"], out["g_grad_norm_max"] = norm, self.max_grad_norm
        return out

    def _generator_gradient_norm(self, pl_module: LightningModule) -> float:
        """||d L_G / d theta_G|| on a fixed latent batch, in eval mode, with ``autograd.grad`` (``.grad`` untouched,
        no optimizer step, the networks themselves rather than their DDP wrappers: no collective)."""
        rng = torch.Generator().manual_seed(self.seed + 1)
        n = self.grad_batch_size
        z, labels = pl_module.sample_latent(n, rng), pl_module.sample_labels(n, rng)
        generator, discriminator = pl_module.generator, pl_module.discriminator
        params = [p for p in generator.parameters() if p.requires_grad]
        if not params:
            return math.nan
        modes = (generator.training, discriminator.training)
        generator.eval()
        discriminator.eval()
        try:
            with torch.enable_grad():
                fake = pl_module.run_generator(generator, z, labels)
                fake_scores = pl_module.run_discriminator(discriminator, fake, labels)
                real_scores = None
                if pl_module.loss.generator_needs_real_scores:
                    real = self._reference["real"][:n] if self._reference is not None else fake.detach()
                    real_labels = self._reference["real_labels"] if self._reference is not None else None
                    real_labels = real_labels[:n] if real_labels is not None and labels is not None else labels
                    real_scores = pl_module.run_discriminator(discriminator, real, real_labels)
                loss = pl_module.loss.generator_loss(fake_scores, real_scores)
                return float(cs.gradient_norm(loss, params))
        finally:
            generator.train(modes[0])
            discriminator.train(modes[1])

    def _prepare_reference(self, trainer: Trainer, pl_module: LightningModule) -> dict[str, Any]:
        """Real samples, their features, k-NN radii and mode histogram: computed once, kept on the module's device."""
        device = pl_module.device
        if self._reference is not None and self._reference["device"] == device:
            return self._reference
        datamodule = getattr(trainer, "datamodule", None)
        if datamodule is None or not hasattr(datamodule, "reference_indices"):
            raise ConfigurationError(
                "ModeCollapseMonitor compares generated with real samples: train with a gan_lightning datamodule "
                "(it provides reference_indices), or remove the callback."
            )
        dataset = datamodule.train_dataset
        n = min(self.num_samples, len(dataset))
        if n <= self.k:
            raise ConfigurationError(
                f"ModeCollapseMonitor: the dataset has {n} samples; it needs more than k={self.k} (lower k)."
            )
        indices = datamodule.reference_indices(n)  # a seeded random subset: every class of a sorted folder
        real = torch.stack([dataset[i][0] for i in indices]).float().to(device)
        real_labels = None
        if getattr(pl_module, "num_classes", 0):
            real_labels = torch.stack([torch.as_tensor(dataset[i][1]) for i in indices]).long().to(device)
        if self.feature_extractor == "inception":
            if real.dim() != 4:
                raise ConfigurationError(
                    f"ModeCollapseMonitor: feature_extractor 'inception' takes images, but the data has shape "
                    f"{tuple(real.shape[1:])}; leave feature_extractor unset for non-image data."
                )
            from gan_lightning.metrics.features import InceptionV3Features

            self.feature_extractor = InceptionV3Features(self.feature_extractor_weights)
        if self.feature_extractor is not None:
            self.feature_extractor.to(device).eval()
        if self.classifier is not None:
            self.classifier.to(device).eval()
        features = self._features(real, device)
        modes = getattr(datamodule, "modes", None)
        self._modes = modes.float().to(device) if isinstance(modes, Tensor) else None
        if self._modes is not None and self.mode_radius is None:
            self.mode_radius = cs.default_mode_radius(self._modes)
        self._reference = {"device": device, "real": real, "real_labels": real_labels, "features": features}
        self._reference["mean_distance"] = cs.mean_pairwise_distance(features)
        self._reference["radii"] = cs.knn_radii(features, self.k)
        histogram = None
        if self.classifier is not None or self._modes is not None:
            num_modes = self._num_modes(real, device)
            histogram = cs.mode_histogram(self._assign(real, device), num_modes)
        self._reference["histogram"] = histogram
        return self._reference

    def _num_modes(self, real: Tensor, device: torch.device) -> int:
        if self.classifier is not None:
            return int(self.classifier(real[:2].to(device)).shape[1])
        assert self._modes is not None
        return len(self._modes)

    def _features(self, x: Tensor, device: torch.device, batch_size: int = 250) -> Tensor:
        if self.feature_extractor is None:
            return x.flatten(1).float()
        if isinstance(self.feature_extractor, FeatureExtractor):  # Inception: uint8 images in, float32 features out
            return self.feature_extractor.extract(to_uint8(x), batch_size=64).pool.to(device)
        chunks = [self.feature_extractor(x[i : i + batch_size].to(device)) for i in range(0, len(x), batch_size)]
        return torch.cat([c[0] if isinstance(c, (tuple, list)) else c for c in chunks]).flatten(1).float()

    def _assign(self, x: Tensor, device: torch.device, batch_size: int = 250) -> Tensor:
        """Mode of each sample: the classifier's label, or the nearest known mode (-1 outside ``mode_radius``)."""
        if self.classifier is not None:
            chunks = [x[i : i + batch_size].to(device) for i in range(0, len(x), batch_size)]
            return torch.cat([self.classifier(chunk).argmax(1) for chunk in chunks])
        assert self._modes is not None
        return cs.nearest_mode(x, self._modes, self.mode_radius)

    # ------------------------------------------------------------------ actions
    def _warn_change(self, step: int, old: str, new: str) -> None:
        values = self.signal_history[-1] if self.signal_history else {}
        described = ", ".join(self._describe(name, values) for name in self.fired) or "none"
        message = f"ModeCollapseMonitor: generator step {step}: status {old} -> {new}. Signals that fired: {described}."
        if new != "healthy":
            remedies = list(_SAMPLE_REMEDIES) if any(s in signal_names("sample") for s in self.fired) else []
            if any(s in signal_names("dynamics") for s in self.fired) or not remedies:
                remedies += _DYNAMICS_REMEDIES
            message += " Remedies available in gan_lightning: " + "; ".join(remedies) + "."
            if new == "collapsed" and self.action == "warn":
                message += (" The monitor can also stop the run (action: stop) or roll back to the last healthy state "
                            "with a remedy switched on (action: rollback, remedies: [...]).")
        report(message, alarm=STATUSES.index(new) > STATUSES.index(old))  # a recovery is news, not an alarm

    def _describe(self, name: str, values: dict[str, float]) -> str:
        signal = next(s for s in SIGNALS if s.name == name)
        return signal.describe(values, self.thresholds[name])

    def _act(self, trainer: Trainer, pl_module: LightningModule, step: int) -> None:
        if self.action == "stop":
            trainer.should_stop = True
            report(
                f"ModeCollapseMonitor: stopping training at generator step {step}: the generator has collapsed "
                f"({', '.join(self.fired) or 'see collapse/* scalars'}). Last healthy check: "
                f"{self.last_healthy_step if self.last_healthy_step >= 0 else 'none'}."
            )
            return
        if self.action != "rollback":
            return
        rolled_back, message = self.rollback.roll_back(trainer, pl_module, step, self.warmup_steps)
        if rolled_back:
            self.status, self.consecutive = "healthy", 0
        report(message)

    def restore_healthy_state(self, trainer: Trainer, pl_module: LightningModule,
                              state: Optional[dict[str, Any]] = None) -> None:
        """Copy the kept weights and optimizer moments (default: the in-memory copy) back in place; learning rates
        and other hyper-parameters stay as they are now (set by the schedule and by remedies)."""
        self.rollback.restore(trainer, pl_module, state)

    # ------------------------------------------------------------------ checkpoint
    def state_dict(self) -> dict[str, Any]:
        """Plain values and tensors only, so the checkpoint loads with ``torch.load(weights_only=True)``."""
        steps = [s for s, _ in self.history]
        codes = [c for _, c in self.history]
        return {
            "status": STATUSES.index(self.status),
            "history_steps": torch.tensor(steps, dtype=torch.long),
            "history_status": torch.tensor(codes, dtype=torch.long),
            "last_checked": self.last_checked,
            "last_healthy_step": self.last_healthy_step,
            "rollbacks": self.rollbacks,
            "remedies_applied": self.remedies_applied,
            "consecutive": self.consecutive,
            "max_grad_norm": self.max_grad_norm,
            "previous_g_loss": self.previous_g_loss,
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.status = STATUSES[int(state_dict.get("status", 0))]
        steps, codes = state_dict.get("history_steps"), state_dict.get("history_status")
        if steps is not None and codes is not None:
            self.history = list(zip(steps.tolist(), codes.tolist()))
        self.last_checked = int(state_dict.get("last_checked", -1))
        self.last_healthy_step = int(state_dict.get("last_healthy_step", -1))
        self.rollbacks = int(state_dict.get("rollbacks", 0))
        self.remedies_applied = bool(state_dict.get("remedies_applied", False))
        self.consecutive = int(state_dict.get("consecutive", 0))
        self.max_grad_norm = float(state_dict.get("max_grad_norm", 0.0))
        self.previous_g_loss = float(state_dict.get("previous_g_loss", math.nan))
