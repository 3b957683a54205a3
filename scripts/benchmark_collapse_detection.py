"""How well ModeCollapseMonitor detects mode collapse: delay, false alarms, rollback, cost (README "Detecting mode collapse").

Runs are built by the project's CLI parser from shipped experiment files (as in ``benchmark_modes.py``) and trained one
after the other in this process, one thread, with the monitor at its default settings. Next to the monitor (and before
it, so both see the same weights), a tracker computes the exact reference metric on the same schedule:

- 2D mixtures: ``gan_lightning.metrics.mode_coverage`` on 2,500 samples of the raw generator (PacGAN protocol, a mode is
  captured by >= 1 sample within 3 std of it);
- digits: classes covered (share >= 10 % of the data share) by a small CNN classifier trained here on 2,000 samples.

Definitions (every quantity is on the checks' schedule, every 250 generator steps; 100 for digits):

- *loss of modes* (onset): the first of two consecutive checks, at or after the monitor's warm-up (1,000 steps; 500 for
  digits), where the exact count is below half the modes, or at least max(2, modes / 4) below the largest count seen
  before that check (2 for ring8, 7 for grid25, 3 for digits; a single-check dip is not a loss: the raw generator of a
  healthy run wobbles). The report also gives the delay under the stricter "2 below the best" rule;
- *alarm*: the first check whose status is "collapsed" (suspect does not count);
- *delay* = alarm step - onset step (negative: the monitor fired before the exact count dropped);
- *false alarm*: a healthy-configuration run with an alarm.

Configurations (networks, batch and data of ``experiments/{mixture}_all_modes.yaml``):

- ``healthy``: ``experiments/{mixture}_all_modes.yaml`` without its mode-seeking term (20,000 steps, EMA from 10,000;
  the monitor watches the raw G);
- ``collapse-late``: ``experiments/ring8_collapse.yaml``: no EMA and no decay, and G's learning rate x10 at step 2,000
  (MultiStepLR): a generator suddenly much faster than its discriminator, which jumps from mode to mode and drops most;
- ``collapse-early``: the same networks with D's learning rate at 1e-4 (G 10x faster from the start): never spreads.

    python scripts/benchmark_collapse_detection.py mixtures          # detection on ring8 and grid25 (about 25 min)
    python scripts/benchmark_collapse_detection.py digits            # classifier histogram on digits (about 8 min)
    python scripts/benchmark_collapse_detection.py rollback --mixtures ring8 --remedies scale-g-lr mode-seeking
    python scripts/benchmark_collapse_detection.py cost --cost_repeats 3   # CPU time with / without the monitor
    python scripts/benchmark_collapse_detection.py report
    python scripts/benchmark_collapse_detection.py plot --plot_seed 8 --output docs/images/collapse_signals.png

Seeds: the monitor's thresholds were tuned on seeds 0-1; seeds 2-6 were a first check (they led to the KL threshold
being relative to log(modes)); the reported results are seeds 7-11 (the default). Results accumulate in ``--results``
(JSON lines; a run already there is not trained again).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Optional

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from lightning.pytorch import Callback  # noqa: E402

from gan_lightning.callbacks import ModeCollapseMonitor  # noqa: E402
from gan_lightning.collapse.signals import mode_histogram, modes_covered  # noqa: E402

QUIET = [
    "--trainer.logger=false", "--trainer.enable_checkpointing=false", "--trainer.enable_progress_bar=false",
    "--trainer.enable_model_summary=false", "--trainer.callbacks=[]", "--trainer.accelerator=cpu", "--trainer.devices=1",
]
NO_EMA_NO_DECAY = ["--model.ema_decay=null", "--model.generator_scheduler=null", "--model.discriminator_scheduler=null"]
#: ring8_all_modes gained a mode-seeking term after the detection figures in docs/mode_collapse.md were measured;
#: the healthy and collapse-early runs leave it out so that they reproduce those figures
NO_REGULARIZERS = ["--model.regularizers=[]"]
#: name -> (experiment file, extra options, generator steps or None for the file's own)
MIXTURE_CONFIGS: dict[str, tuple[str, list[str], Optional[int]]] = {
    "healthy": ("experiments/{mixture}_all_modes.yaml", NO_REGULARIZERS, None),
    "collapse-late": ("experiments/ring8_collapse.yaml", ["--data.init_args.mixture={mixture}"], None),
    "collapse-early": ("experiments/{mixture}_all_modes.yaml",
                       [*NO_EMA_NO_DECAY, *NO_REGULARIZERS, "--model.discriminator_optimizer.init_args.lr=0.0001"], 3000),
}
#: Digits at 16x16, DCGAN width 32, the default experiment's losses and optimizer.
DIGITS_BASE = [
    "--config", "gan_lightning/default_experiment.yaml", "--data.init_args.image_size=16",
    "--model.generator.init_args.image_size=16", "--model.discriminator.init_args.image_size=16",
]
DIGITS_CONFIGS: dict[str, tuple[list[str], int]] = {
    "healthy": ([], 2000),
    # the saturating (minimax) generator loss with a generator without BatchNorm: D wins at once, G collapses
    "collapse": (["--model.loss=minimax", "--model.generator.init_args.batch_norm=false"], 1500),
}
DIGITS_MONITOR = {"every_n_steps": 100, "warmup_steps": 500}


def rollback_remedies(name: str) -> list:
    """The remedies a rollback switches on, by name (--remedies)."""
    from gan_lightning.tricks.discriminator_inputs import InstanceNoise
    from gan_lightning.regularizers import ModeSeekingRegularizer
    from gan_lightning.collapse.remedies import AddInputTransform, AddRegularizer, ScaleLearningRate

    return {
        "scale-g-lr": [ScaleLearningRate("generator", 0.1)],
        "mode-seeking": [AddRegularizer(ModeSeekingRegularizer())],
        "instance-noise": [AddInputTransform(InstanceNoise(std=0.1, anneal_steps=None))],
        "scale-d-lr": [ScaleLearningRate("discriminator", 3.0)],
    }[name]


REMEDY_NAMES = ("scale-g-lr", "mode-seeking", "instance-noise", "scale-d-lr")


# ---------------------------------------------------------------------- instruments
class TimedMonitor(ModeCollapseMonitor):
    """The monitor, with the wall time spent in its checks (everything it does happens there)."""

    seconds = 0.0
    cpu_seconds = 0.0

    def check(self, trainer, pl_module):
        start, cpu = time.perf_counter(), time.process_time()
        try:
            return super().check(trainer, pl_module)
        finally:
            self.seconds += time.perf_counter() - start
            self.cpu_seconds += time.process_time() - cpu


class ExactModes(Callback):
    """The reference metric on the monitor's schedule: PacGAN mode coverage of 2,500 raw-generator samples."""

    def __init__(self, mixture: str, every: int, seed: int):
        from gan_lightning.data.mixtures import mixture_modes

        self.modes, self.std = mixture_modes(mixture)
        self.every, self.seed = every, seed
        self.history: list[list[float]] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        step = trainer.global_step
        if step % self.every == 0 and (not self.history or self.history[-1][0] != step):
            from gan_lightning.metrics.mode_coverage import mode_coverage

            scores = mode_coverage(pl_module.generate(2500, seed=self.seed, use_ema=False), self.modes, self.std)
            self.history.append([step, scores["modes_captured"], scores["high_quality_percent"]])


class ClassifierModes(Callback):
    """Digits reference: classes covered by 2,000 raw-generator samples, per the trained classifier."""

    def __init__(self, classifier: torch.nn.Module, reference: torch.Tensor, every: int, seed: int):
        self.classifier, self.reference, self.every, self.seed = classifier, reference, every, seed
        self.history: list[list[float]] = []

    @torch.no_grad()
    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        step = trainer.global_step
        if step % self.every == 0 and (not self.history or self.history[-1][0] != step):
            samples = pl_module.generate(2000, seed=self.seed, use_ema=False)
            histogram = mode_histogram(self.classifier(samples).argmax(1), 10)
            self.history.append([step, float(modes_covered(histogram, self.reference)), float("nan")])


# ---------------------------------------------------------------------- runs
def build(args: list[str]):
    from gan_lightning.commands.cli import GANLightningCLI

    return GANLightningCLI(args=[*args, *QUIET], run=False, save_config_callback=None)


def fit(cli, callbacks: list[Callback]) -> float:
    """Wall seconds of the fit; its CPU seconds (this process only, so other jobs on the machine do not count) are
    left in ``LAST_FIT_CPU``."""
    global LAST_FIT_CPU
    cli.trainer.callbacks.extend(callbacks)
    start, cpu = time.perf_counter(), time.process_time()
    cli.trainer.fit(cli.model, cli.datamodule)
    LAST_FIT_CPU = time.process_time() - cpu
    return time.perf_counter() - start


LAST_FIT_CPU = 0.0


def min_drop(total: int) -> int:
    """Modes lost below the best count so far that count as a loss: 2 for ring8, 7 for grid25, 3 for 10 classes.

    A quarter of the modes (at least 2): the exact count of a raw generator on grid25 wobbles by 3-5 modes from one
    check to the next early in training (2,500 samples, a 3-std quality test), so "2 below the best" fires there on
    healthy stretches; ``--min_drop 2`` reproduces that stricter rule.
    """
    return MIN_DROP if MIN_DROP is not None else max(2, math.ceil(total / 4))


MIN_DROP: Optional[int] = None


def onset_step(history: list[list[float]], total: int, warmup: int, drop: Optional[int] = None) -> Optional[int]:
    """First check >= warmup that starts two consecutive checks with modes lost: an exact count below half the modes,
    or at least ``drop`` (default :func:`min_drop`) below the largest count seen before that check (a single-check
    dip is sampling noise or a transient)."""
    drop = min_drop(total) if drop is None else drop
    best, lost = -math.inf, []
    for step, count, _ in history:
        lost.append(step >= warmup and (count < total / 2 or count <= best - drop))
        best = max(best, count)
    for i in range(len(history) - 1):
        if lost[i] and lost[i + 1]:
            return int(history[i][0])
    return None


def summarise(record: dict[str, Any], monitor: TimedMonitor, tracker_history: list, total: int) -> dict[str, Any]:
    alarms = [step for step, code in monitor.history if code == 2]
    onset = onset_step(tracker_history, total, monitor.warmup_steps)
    alarm = alarms[0] if alarms else None
    record.update(
        exact=tracker_history, signals=monitor.signal_history, status=monitor.history, onset=onset, alarm=alarm,
        delay=None if onset is None or alarm is None else alarm - onset,
        collapsed_checks=len(alarms), suspect_checks=sum(code == 1 for _, code in monitor.history),
        final_modes=tracker_history[-1][1] if tracker_history else None, total_modes=total,
        monitor_s=monitor.seconds, rollbacks=monitor.rollbacks,
    )
    return record


def mixture_run(config: str, mixture: str, seed: int, action: str = "warn", remedy: Optional[str] = None) -> dict[str, Any]:
    path, extra, steps = MIXTURE_CONFIGS[config]
    args = ["--config", str(ROOT / path.format(mixture=mixture)), *[e.format(mixture=mixture) for e in extra], f"--seed_everything={seed}"]
    if steps is not None:
        args.append(f"--trainer.max_steps={steps}")
    cli = build(args)
    kwargs: dict[str, Any] = {}
    if action == "rollback":
        kwargs = {"action": "rollback", "remedies": rollback_remedies(remedy)}
    monitor = TimedMonitor(**kwargs)
    tracker = ExactModes(mixture, monitor.every_n_steps, seed=10_000 + seed)
    seconds = fit(cli, [tracker, monitor])
    record = {"kind": "mixture", "config": config, "data": mixture, "seed": seed, "action": action, "remedy": remedy,
              "steps": cli.trainer.global_step, "fit_s": seconds}
    return summarise(record, monitor, tracker.history, len(tracker.modes))


_CLASSIFIER: dict[int, tuple[torch.nn.Module, float]] = {}


def digits_classifier(image_size: int = 16) -> tuple[torch.nn.Module, float]:
    """A small CNN on scikit-learn's digits (80 % train, 20 % held out); a few seconds on one core."""
    if image_size in _CLASSIFIER:
        return _CLASSIFIER[image_size]
    from gan_lightning.data.digits import load_digits_tensor

    images, labels = load_digits_tensor(image_size)
    g = torch.Generator().manual_seed(0)
    order = torch.randperm(len(images), generator=g)
    train, test = order[: int(0.8 * len(order))], order[int(0.8 * len(order)):]
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(1, 16, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(16, 32, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Flatten(), torch.nn.Linear(32 * (image_size // 4) ** 2, 10),
    )
    opt = torch.optim.Adam(net.parameters(), lr=2e-3)
    for epoch in range(15):
        perm = train[torch.randperm(len(train), generator=g)]
        for i in range(0, len(perm), 64):
            idx = perm[i : i + 64]
            # small shifts/noise, so generated digits (slightly off) are still read correctly
            x = images[idx] + 0.1 * torch.randn(len(idx), 1, image_size, image_size, generator=g)
            loss = torch.nn.functional.cross_entropy(net(x), labels[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    net.eval()
    with torch.no_grad():
        accuracy = float((net(images[test]).argmax(1) == labels[test]).float().mean())
    for p in net.parameters():
        p.requires_grad_(False)
    _CLASSIFIER[image_size] = (net, accuracy)
    return net, accuracy


def digits_run(config: str, seed: int) -> dict[str, Any]:
    extra, steps = DIGITS_CONFIGS[config]
    classifier, accuracy = digits_classifier(16)
    cli = build([*[str(ROOT / a) if a.endswith(".yaml") else a for a in DIGITS_BASE], *extra,
                 f"--seed_everything={seed}", f"--trainer.max_steps={steps}"])
    monitor = TimedMonitor(classifier=classifier, **DIGITS_MONITOR)
    from gan_lightning.data.digits import load_digits_tensor

    images, _ = load_digits_tensor(16)
    with torch.no_grad():
        reference = mode_histogram(classifier(images).argmax(1), 10)
    tracker = ClassifierModes(classifier, reference, monitor.every_n_steps, seed=10_000 + seed)
    seconds = fit(cli, [tracker, monitor])
    record = {"kind": "digits", "config": config, "data": "digits16", "seed": seed, "action": "warn", "remedy": None,
              "steps": cli.trainer.global_step, "fit_s": seconds, "classifier_accuracy": accuracy}
    return summarise(record, monitor, tracker.history, 10)


def cost_runs(steps: int, repeats: int) -> list[dict[str, Any]]:
    """Healthy ring8 for ``steps`` steps with and without the monitor (alternating, same process), and the same for digits."""
    out = []
    for data in ("ring8", "digits16"):
        for repeat in range(repeats):
            for with_monitor in ((False, True) if repeat % 2 == 0 else (True, False)):
                if data == "ring8":
                    cli = build(["--config", str(ROOT / "experiments/ring8_all_modes.yaml"), "--seed_everything=0",
                                 f"--trainer.max_steps={steps}"])
                    monitor = TimedMonitor() if with_monitor else None
                else:
                    cli = build([*[str(ROOT / a) if a.endswith(".yaml") else a for a in DIGITS_BASE], "--seed_everything=0",
                                 f"--trainer.max_steps={steps // 4}"])
                    monitor = TimedMonitor(classifier=digits_classifier(16)[0]) if with_monitor else None
                seconds = fit(cli, [monitor] if monitor else [])
                out.append({"kind": "cost", "data": data, "repeat": repeat, "monitor": with_monitor, "fit_s": seconds,
                            "fit_cpu_s": LAST_FIT_CPU, "monitor_s": monitor.seconds if monitor else 0.0,
                            "monitor_cpu_s": monitor.cpu_seconds if monitor else 0.0, "steps": cli.trainer.global_step,
                            "checks": len(monitor.history) if monitor else 0})
                print(f"cost {data} repeat {repeat} monitor={with_monitor}: {seconds:.1f} s wall, {LAST_FIT_CPU:.1f} s CPU", flush=True)
    return out


# ---------------------------------------------------------------------- results
def load(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def key(r: dict[str, Any]) -> tuple:
    return (r["kind"], r.get("config"), r.get("data"), r.get("seed"), r.get("action"), r.get("remedy"))


def run_all(path: Path, jobs: list[tuple], runner) -> None:
    done = {key(r) for r in load(path)}
    for job in jobs:
        if job_key(runner, job) in done:
            print(f"skip (already in {path.name}): {job}", flush=True)
            continue
        record = runner(*job)
        with path.open("a") as f:
            f.write(json.dumps(record) + "\n")
        print(line(record), flush=True)


def job_key(runner, job: tuple) -> tuple:
    if runner is mixture_run:
        config, mixture, seed, *rest = job
        action = rest[0] if rest else "warn"
        remedy = rest[1] if len(rest) > 1 else None
        return ("mixture", config, mixture, seed, action, remedy)
    config, seed = job
    return ("digits", config, "digits16", seed, "warn", None)


def line(r: dict[str, Any]) -> str:
    exact = " ".join(f"{int(s)}:{int(c)}" for s, c, _ in r["exact"])
    status = "".join(".sC"[code] for _, code in r["status"])
    return (f"{r['config']:>14} {r['data']:>8} seed {r['seed']} {r['action']}{'/' + r['remedy'] if r['remedy'] else ''}: "
            f"onset {r['onset']} alarm {r['alarm']} delay {r['delay']} final modes {r['final_modes']} "
            f"({r['fit_s']:.0f} s, monitor {r['monitor_s']:.2f} s)\n   exact {exact}\n   status {status}")


def _fmt(values: list[Optional[float]]) -> str:
    present = [v for v in values if v is not None]
    return ", ".join("–" if v is None else f"{v:g}" for v in values) if present or values else "–"


def report(records: list[dict[str, Any]]) -> str:
    lines = [f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
             "one thread (`OMP_NUM_THREADS=1`), runs one at a time.", ""]
    detect = [r for r in records if r["kind"] in ("mixture", "digits") and r["action"] == "warn"]
    lines += ["### Detection (monitor defaults; action warn)", "",
              "| data | config | seeds | runs flagged | onset (steps) | alarm (steps) | delay (steps) | median delay | "
              "delay, onset by the 2-mode rule | final exact modes | suspect checks |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]
    groups: dict[tuple, list] = {}
    for r in detect:
        groups.setdefault((r["data"], r["config"]), []).append(r)
    for (data, config), rs in sorted(groups.items()):
        rs.sort(key=lambda r: r["seed"])
        flagged = sum(r["alarm"] is not None for r in rs)
        total = rs[0]["total_modes"]
        warmup = DIGITS_MONITOR["warmup_steps"] if rs[0]["kind"] == "digits" else ModeCollapseMonitor().warmup_steps
        onsets = [onset_step(r["exact"], total, warmup) for r in rs]
        strict = [onset_step(r["exact"], total, warmup, drop=2) for r in rs]
        delays = [None if o is None or r["alarm"] is None else r["alarm"] - o for o, r in zip(onsets, rs)]
        strict_delays = [None if o is None or r["alarm"] is None else r["alarm"] - o for o, r in zip(strict, rs)]
        present = [d for d in delays if d is not None]
        median = f"{statistics.median(present):g}" if present else "–"
        lines.append(
            f"| {data} | {config} | {', '.join(str(r['seed']) for r in rs)} | {flagged}/{len(rs)} | {_fmt(onsets)} | "
            f"{_fmt([r['alarm'] for r in rs])} | {_fmt(delays)} | {median} | {_fmt(strict_delays)} | "
            f"{', '.join(format(r['final_modes'], '.0f') for r in rs)} of {total} | "
            f"{', '.join(str(r['suspect_checks']) for r in rs)} of "
            f"{len(rs[0]['status'])} |"
        )
    healthy = [r for r in detect if r["config"] == "healthy"]
    if healthy:
        false = sum(r["alarm"] is not None for r in healthy)
        lines += ["", f"False alarms (a 'collapsed' status in a healthy-configuration run): {false} of {len(healthy)} runs, "
                  f"{sum(r['collapsed_checks'] for r in healthy)} of {sum(len(r['status']) for r in healthy)} checks."]
    accuracy = [r.get("classifier_accuracy") for r in records if r["kind"] == "digits"]
    if accuracy:
        lines.append(f"Digits classifier (trained by the script): held-out accuracy {accuracy[0]:.3f}.")

    rollback = [r for r in records if r["kind"] == "mixture" and r["action"] == "rollback"]
    if rollback:
        warn = {(r["data"], r["seed"]): r for r in records if r["kind"] == "mixture" and r["config"] == "collapse-late" and r["action"] == "warn"}
        lines += ["", "### Rollback with a remedy vs warn only (collapse-late, same seeds)", "",
                  "| data | remedy | seed | modes at the end, warn | modes at the end, rollback | rollbacks | HQ % warn / rollback |",
                  "|---|---|---|---|---|---|---|"]
        for r in sorted(rollback, key=lambda r: (r["data"], r["remedy"], r["seed"])):
            w = warn.get((r["data"], r["seed"]))
            lines.append(
                f"| {r['data']} | {r['remedy']} | {r['seed']} | {w['final_modes'] if w else float('nan'):.0f} | {r['final_modes']:.0f} | "
                f"{r['rollbacks']} | {w['exact'][-1][2] if w else float('nan'):.1f} / {r['exact'][-1][2]:.1f} |"
            )
        for (data, remedy) in sorted({(r["data"], r["remedy"]) for r in rollback}):
            rs = [r for r in rollback if r["data"] == data and r["remedy"] == remedy and (data, r["seed"]) in warn]
            if rs:
                lines.append(f"| {data} | **{remedy} mean** | {len(rs)} seeds | {statistics.fmean(warn[(data, r['seed'])]['final_modes'] for r in rs):.2f} | "
                             f"{statistics.fmean(r['final_modes'] for r in rs):.2f} | | |")

    cost = [r for r in records if r["kind"] == "cost"]
    timed = [r for r in records if r["kind"] in ("mixture", "digits") and r["fit_s"] > 0]
    lines += ["", "### Cost (default settings: every 250 steps, 500 vs 500 samples; digits every 100 steps)", ""]
    if timed:
        for kind in ("mixture", "digits"):
            rs = [r for r in timed if r["kind"] == kind and r["action"] == "warn"]
            if rs:
                share = [100 * r["monitor_s"] / r["fit_s"] for r in rs]
                lines.append(f"- Time inside the monitor's checks, share of the fit time ({kind}, {len(rs)} runs; includes the "
                             f"reference-metric tracker in fit time): median {statistics.median(share):.2f} %, max {max(share):.2f} %.")
        rs = [r for r in timed if r["action"] == "rollback"]
        if rs:
            share = [100 * r["monitor_s"] / r["fit_s"] for r in rs]
            lines.append(f"- With action=rollback (a state copy at every healthy check): median {statistics.median(share):.2f} %, "
                         f"max {max(share):.2f} %.")
    for data in sorted({r["data"] for r in cost}):
        rs = [r for r in cost if r["data"] == data and "fit_cpu_s" in r]
        on = [r for r in rs if r["monitor"]]
        off = [r for r in rs if not r["monitor"]]
        if on and off:
            wall = statistics.fmean(r["fit_s"] for r in on) / statistics.fmean(r["fit_s"] for r in off)
            cpu = statistics.fmean(r["fit_cpu_s"] for r in on) / statistics.fmean(r["fit_cpu_s"] for r in off)
            inside = statistics.fmean(100 * r["monitor_cpu_s"] / r["fit_cpu_s"] for r in on)
            lines.append(
                f"- A/B in one process, {data} (default monitor settings, {on[0]['checks']} checks in {on[0]['steps']} steps), "
                f"{len(on)} runs with and {len(off)} without, alternating order: CPU time with / without = {cpu:.3f}; "
                f"wall time with / without = {wall:.3f} (the machine is shared, so wall time is noisy); CPU time inside "
                f"the checks = {inside:.2f} % of the run's CPU time."
            )
    return "\n".join(lines)


def plot(records: list[dict[str, Any]], output: Path, data: str, seed: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pick = {c: next((r for r in records if r["kind"] == "mixture" and r["action"] == "warn" and r["config"] == c
                     and r["data"] == data and r["seed"] == seed), None) for c in ("healthy", "collapse-late")}
    if any(v is None for v in pick.values()):
        raise SystemExit(f"plot: run `mixtures --mixtures {data} --seeds {seed}` first (needs healthy and collapse-late)")
    defaults = ModeCollapseMonitor()
    panels = [
        ("modes", "modes covered (monitor) / captured (exact)", None),
        ("mode_kl", "KL(generated modes || data), nats", defaults.thresholds["mode_kl"] * math.log(pick["healthy"]["total_modes"])),
        ("diversity_ratio", "diversity ratio", defaults.thresholds["diversity_ratio"]),
        ("coverage", "coverage (k = 5)", defaults.thresholds["coverage"]),
        ("losses", "D loss (solid) and G loss (dashed), last step", None),
        ("status", "status (0 healthy, 1 suspect, 2 collapsed)", None),
    ]
    limit = max(r["steps"] for r in pick.values() if r["config"] != "healthy")
    limit = max(limit, 6000)
    fig, axes = plt.subplots(2, 3, figsize=(13, 6.5), sharex=True)
    colours = {"healthy": "tab:blue", "collapse-late": "tab:red"}
    for ax, (name, title, threshold) in zip(axes.flat, panels):
        for config, r in pick.items():
            sig = [s for s in r["signals"] if s["step"] <= limit]
            steps = [s["step"] for s in sig]
            if name == "modes":
                ax.plot(steps, [s["modes_covered"] for s in sig], color=colours[config], label=f"{config}: monitor")
                exact = [e for e in r["exact"] if e[0] <= limit]
                ax.plot([e[0] for e in exact], [e[1] for e in exact], color=colours[config], ls=":", label=f"{config}: exact")
                ax.axhline(defaults.thresholds["modes_covered"] * r["total_modes"], color="0.4", ls="--", lw=0.8)
            elif name == "losses":
                ax.plot(steps, [s.get("d_loss", math.nan) for s in sig], color=colours[config])
                ax.plot(steps, [s.get("g_loss", math.nan) for s in sig], color=colours[config], ls="--")
            else:
                ax.plot(steps, [s.get(name, math.nan) for s in sig], color=colours[config], label=config)
            if r["alarm"] is not None and r["alarm"] <= limit:
                ax.axvline(r["alarm"], color=colours[config], lw=0.8, alpha=0.6)
            if r["onset"] is not None and r["onset"] <= limit:
                ax.axvline(r["onset"], color=colours[config], lw=0.8, ls=":", alpha=0.6)
        if threshold is not None:
            ax.axhline(threshold, color="0.4", ls="--", lw=0.8)
        ax.axvspan(0, defaults.warmup_steps, color="0.92", zorder=0)
        ax.set_title(title, fontsize=10)
        ax.set_xlim(0, limit)
    axes[0, 0].legend(fontsize=7)
    for ax in axes[1]:
        ax.set_xlabel("generator step")
    fig.suptitle(f"ModeCollapseMonitor on {data}, seed {seed}: healthy ({data}_all_modes, blue) vs collapse-late "
                 "(ring8_collapse: G lr x10 at step 2000, red)\ngrey dashed: thresholds; grey band: warm-up; "
                 "vertical lines: alarm (solid) and loss of modes by the exact PacGAN count (dotted)", fontsize=9)
    fig.tight_layout()
    output.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(output, dpi=110)
    print(f"wrote {output}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["mixtures", "digits", "rollback", "cost", "report", "plot"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[7, 8, 9, 10, 11])
    parser.add_argument("--mixtures", nargs="+", default=["ring8", "grid25"], choices=["ring8", "grid25"])
    parser.add_argument("--configs", nargs="+", default=None)
    parser.add_argument("--remedies", nargs="+", default=["scale-g-lr"], choices=REMEDY_NAMES)
    parser.add_argument("--results", default="collapse_benchmark.jsonl", help="JSON lines, one record per run")
    parser.add_argument("--markdown", default=None, help="report: also write the tables here")
    parser.add_argument("--output", default="docs/images/collapse_signals.png", help="plot: the PNG")
    parser.add_argument("--plot_data", default="ring8")
    parser.add_argument("--plot_seed", type=int, default=2)
    parser.add_argument("--cost_steps", type=int, default=4000)
    parser.add_argument("--cost_repeats", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore")
    path = Path(args.results)

    if args.command == "mixtures":
        configs = args.configs or list(MIXTURE_CONFIGS)
        jobs = [(c, m, s) for m in args.mixtures for c in configs for s in args.seeds]
        run_all(path, jobs, mixture_run)
    elif args.command == "digits":
        run_all(path, [(c, s) for c in (args.configs or list(DIGITS_CONFIGS)) for s in args.seeds], digits_run)
    elif args.command == "rollback":
        jobs = [("collapse-late", m, s) for m in args.mixtures for s in args.seeds]
        jobs += [("collapse-late", m, s, "rollback", remedy) for remedy in args.remedies for m in args.mixtures for s in args.seeds]
        run_all(path, jobs, mixture_run)
    elif args.command == "cost":
        with path.open("a") as f:
            for record in cost_runs(args.cost_steps, args.cost_repeats):
                f.write(json.dumps(record) + "\n")
    elif args.command == "report":
        text = report(load(path))
        print(text)
        if args.markdown:
            Path(args.markdown).write_text(text + "\n")
    else:
        plot(load(path), Path(args.output), args.plot_data, args.plot_seed)


if __name__ == "__main__":
    main()
