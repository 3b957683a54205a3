"""``python -m gan_lightning sweep-report runs/NAME``: one table for a whole sweep, with error bars over seeds.

For each run of the plan, the *final* value of every metric it logged: the scores of its last evaluation record
(``<run>/evaluation/step_*.json``, written by the GANEvaluation callback: FID/IS/KID/PR, or modes / high-quality % /
reverse KL on the 2D mixtures) and the last value of its TensorBoard scalars whose tags match ``--scalars``
(default ``eval/*``, ``modes/*``, ``collapse/*``: the mode-collapse monitor). A value written twice at one step (a
resumed run logs the steps after its last checkpoint again) counts once, the later one.

Each combination gets the mean ± standard error (sample standard deviation / sqrt(n)) over its *finished* runs,
and every seed's value. Failed runs are listed with their one-line error and not averaged in; unfinished runs
(interrupted, or still running) are counted. Non-finite values (reverse KL is inf when no sample is high quality)
are left out of the mean and counted. Outputs in the sweep directory: ``report.md``, ``report.csv`` (one row per
combination and metric), ``report.json`` (everything, per run too), ``report.png`` (each metric over generator
steps, mean and ± standard-error band across seeds), and ``hparams/<combination>/seed_<k>/`` for TensorBoard's HParams
tab: each finished run's grid values, seed and final metrics (``tensorboard --logdir runs/NAME``).
"""

from __future__ import annotations

import csv
import fnmatch
import json
import math
import shutil
import statistics
from pathlib import Path
from typing import Any, Optional, Sequence

import yaml

from gan_lightning.callbacks.run_record import RUN_RECORD
from gan_lightning.errors import ConfigurationError
from gan_lightning.metrics.record import write_record

DEFAULT_SCALARS = ("eval/*", "modes/*", "collapse/*")
HPARAMS_DIR = "hparams"


# ------------------------------------------------------------------------------------------------ reading a run
def read_records(run_dir: Path) -> dict[int, dict[str, float]]:
    """Evaluation scores by step, from ``<run>/evaluation/step_*.json``."""
    out: dict[int, dict[str, float]] = {}
    for path in sorted((run_dir / "evaluation").glob("step_*.json")):
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            continue  # an unreadable record is skipped, not fatal for the whole report
        step = int((record.get("protocol") or {}).get("step", path.stem.removeprefix("step_")))
        out[step] = {k: float(v) for k, v in (record.get("scores") or {}).items()}  # float("inf") reads "inf"
    return out


def read_scalars(run_dir: Path, patterns: Sequence[str]) -> dict[str, dict[int, float]]:
    """TensorBoard scalars of the run whose tag matches one of ``patterns``: tag -> {step: value}, later files winning."""
    if not patterns or not list(run_dir.glob("events.out.tfevents.*")):
        return {}
    from tensorboard.backend.event_processing.event_accumulator import SCALARS, EventAccumulator

    acc = EventAccumulator(str(run_dir), size_guidance={SCALARS: 0})  # 0: every point, no reservoir sampling
    acc.Reload()
    out: dict[str, dict[int, float]] = {}
    for tag in acc.Tags().get("scalars", []):
        if not any(fnmatch.fnmatchcase(tag, p) for p in patterns):
            continue
        series: dict[int, float] = {}
        for event in sorted(acc.Scalars(tag), key=lambda e: e.wall_time):
            series[int(event.step)] = float(event.value)
        out[tag] = series
    return out


def read_run(sweep_dir: Path, run: dict[str, Any], patterns: Sequence[str]) -> dict[str, Any]:
    """Status, error, final step and wall time, final metrics and their curves, of one planned run."""
    run_dir = sweep_dir / run["dir"]
    result: dict[str, Any] = {"combination": run["combination"], "seed": run["seed"], "dir": run["dir"],
                              "status": "not started", "error": None, "step": None, "wall_s": None, "cpu_s": None,
                              "metrics": {}, "curves": {}}
    if not run_dir.is_dir():
        return result
    if (run_dir / RUN_RECORD).is_file():
        record = json.loads((run_dir / RUN_RECORD).read_text())
        result.update(status="finished", step=record.get("global_step"), wall_s=record.get("train_wall_s"),
                      cpu_s=record.get("train_cpu_s"))
    elif (run_dir / "error.txt").is_file():
        result.update(status="failed", error=(run_dir / "error.txt").read_text().strip())
    else:
        result["status"] = "incomplete"
    curves: dict[str, dict[int, float]] = {}
    records = read_records(run_dir)
    for step, scores in records.items():
        for key, value in scores.items():
            curves.setdefault(key, {})[step] = value
    for tag, series in read_scalars(run_dir, patterns).items():
        curves.setdefault(tag, series)  # a score from the records wins over its float32 copy in TensorBoard
    result["curves"] = curves
    result["metrics"] = {key: series[max(series)] for key, series in curves.items() if series}
    return result


# ----------------------------------------------------------------------------------------------------- summaries
def mean_se(values: Sequence[float]) -> dict[str, Any]:
    """Mean and standard error of the finite values; ``nonfinite`` counts the others."""
    finite = [v for v in values if math.isfinite(v)]
    mean = statistics.fmean(finite) if finite else None
    se = statistics.stdev(finite) / math.sqrt(len(finite)) if len(finite) > 1 else None
    return {"n": len(finite), "mean": mean, "se": se, "nonfinite": len(values) - len(finite)}


def _fmt(value: Optional[float]) -> str:
    if value is None:
        return "–"
    return str(value) if not math.isfinite(value) else f"{value:.4g}"


def _fmt_summary(summary: dict[str, Any]) -> str:
    if summary["mean"] is None:
        return "inf" if summary["nonfinite"] else "–"
    text = _fmt(summary["mean"]) + (f" ± {summary['se']:.2g}" if summary["se"] is not None else "")
    return text + (f" ({summary['nonfinite']} non-finite)" if summary["nonfinite"] else "")


def summarize(plan: dict[str, Any], runs: list[dict[str, Any]]) -> dict[str, Any]:
    metrics: list[str] = []
    for run in runs:
        metrics += [m for m in run["metrics"] if m not in metrics]
    combos = []
    for combo in plan["combinations"]:
        mine = [r for r in runs if r["combination"] == combo["name"]]
        if not mine:
            continue
        finished = [r for r in mine if r["status"] == "finished"]
        walls = [r["wall_s"] for r in finished if r["wall_s"] is not None]
        combos.append({
            "name": combo["name"],
            "overrides": combo["overrides"],
            "runs": len(mine),
            "finished": len(finished),
            "failed": sum(r["status"] == "failed" for r in mine),
            "incomplete": sum(r["status"] in ("incomplete", "not started") for r in mine),
            "steps": sorted({r["step"] for r in finished if r["step"] is not None}),
            "wall_s_mean": statistics.fmean(walls) if walls else None,
            "wall_s_total": sum(walls) if walls else None,
            "metrics": {
                m: {**mean_se([r["metrics"][m] for r in finished if m in r["metrics"]]),
                    "per_seed": {str(r["seed"]): r["metrics"][m] for r in finished if m in r["metrics"]}}
                for m in metrics
            },
        })
    return {"metrics": metrics, "combinations": combos}


# ------------------------------------------------------------------------------------------------------- writing
def _markdown(plan: dict[str, Any], summary: dict[str, Any], runs: list[dict[str, Any]]) -> str:
    metrics = summary["metrics"]
    counts = {s: sum(r["status"] == s for r in runs) for s in ("finished", "failed", "incomplete", "not started")}
    grid = "; ".join(f"`{g['key']}` ∈ {{{', '.join(g['values'])}}}" for g in plan["grid"]) or "none"
    lines = [
        f"# Sweep `{plan['name']}`",
        "",
        f"Config `{plan['config']}`, seeds {', '.join(map(str, plan['seeds']))}, grid: {grid}"
        + (f", fit options `{' '.join(plan['fit_options'])}`" if plan.get("fit_options") else "") + ".",
        f"{len(runs)} runs: " + ", ".join(f"{n} {s}" for s, n in counts.items() if n or s == "finished") + ".",
        "Each value is a run's final value (its last evaluation); a combination shows mean ± standard error over its "
        "finished runs. Wall time: fit's own time (setup to end, summed over attempts; process start-up not counted).",
        "",
        "| combination | finished | " + " | ".join(metrics) + " | steps | wall s / run |",
        "|---|---|" + "---|" * len(metrics) + "---|---|",
    ]
    for combo in summary["combinations"]:
        cells = [_fmt_summary(combo["metrics"][m]) for m in metrics]
        steps = ", ".join(map(str, combo["steps"])) or "–"
        lines.append(f"| {combo['name']} | {combo['finished']}/{combo['runs']} | " + " | ".join(cells)
                     + f" | {steps} | {_fmt(combo['wall_s_mean'])} |")
    lines += ["", "## Per seed", "", "| combination | seed | status | " + " | ".join(metrics) + " | step | wall s |",
              "|---|---|---|" + "---|" * len(metrics) + "---|---|"]
    for run in runs:
        cells = [_fmt(run["metrics"].get(m)) for m in metrics]
        lines.append(f"| {run['combination']} | {run['seed']} | {run['status']} | " + " | ".join(cells)
                     + f" | {run['step'] if run['step'] is not None else '–'} | {_fmt(run['wall_s'])} |")
    failed = [r for r in runs if r["status"] == "failed"]
    if failed:
        lines += ["", "## Failed runs (not averaged)", ""]
        lines += [f"- `{r['dir']}`: {r['error']}" for r in failed]
    return "\n".join(lines) + "\n"


def _write_csv(path: Path, plan: dict[str, Any], summary: dict[str, Any]) -> None:
    keys = [g["key"] for g in plan["grid"]]
    seeds = [str(s) for s in plan["seeds"]]
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["combination", *keys, "metric", "finished", "runs", "n", "mean", "se", "nonfinite",
                         *[f"seed_{s}" for s in seeds]])
        for combo in summary["combinations"]:
            for metric, s in combo["metrics"].items():
                writer.writerow([combo["name"], *[combo["overrides"].get(k, "") for k in keys], metric,
                                 combo["finished"], combo["runs"], s["n"], "" if s["mean"] is None else repr(s["mean"]),
                                 "" if s["se"] is None else repr(s["se"]), s["nonfinite"],
                                 *[repr(s["per_seed"][k]) if k in s["per_seed"] else "" for k in seeds]])


def _plot(path: Path, summary: dict[str, Any], runs: list[dict[str, Any]]) -> Optional[Path]:
    """Each metric over generator steps: per combination the mean across finished runs, a ± SE band."""
    import numpy as np

    from gan_lightning.callbacks._figures import save_figure

    def finite_points(run: dict[str, Any], metric: str) -> int:
        return sum(math.isfinite(v) for v in run["curves"].get(metric, {}).values())

    metrics = [m for m in summary["metrics"] if any(finite_points(r, m) > 1 for r in runs if r["status"] == "finished")]
    if not metrics:
        return None
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    ncols = min(3, len(metrics))
    nrows = math.ceil(len(metrics) / ncols)
    fig = Figure(figsize=(4.2 * ncols, 3.2 * nrows), dpi=100)
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax, metric in zip(axes, metrics):
        for combo in summary["combinations"]:
            curves = [r["curves"].get(metric, {}) for r in runs
                      if r["combination"] == combo["name"] and r["status"] == "finished"]
            steps = sorted({s for c in curves for s in c})
            if not steps:
                continue
            values = [[c[s] for c in curves if s in c and math.isfinite(c[s])] for s in steps]
            kept = [(s, v) for s, v in zip(steps, values) if v]
            xs = np.array([s for s, _ in kept], dtype=float)
            mean = np.array([statistics.fmean(v) for _, v in kept])
            se = np.array([statistics.stdev(v) / math.sqrt(len(v)) if len(v) > 1 else 0.0 for _, v in kept])
            (line,) = ax.plot(xs, mean, label=combo["name"], linewidth=1.2)
            ax.fill_between(xs, mean - se, mean + se, color=line.get_color(), alpha=0.2, linewidth=0)
        ax.set_title(metric, fontsize=9)
        ax.set_xlabel("generator step")
        ax.grid(alpha=0.3)
    for ax in axes[len(metrics):]:
        ax.set_visible(False)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    return save_figure(fig, path)


def _hparam_value(value: str) -> Any:
    try:
        parsed = yaml.safe_load(value)
    except yaml.YAMLError:
        return value
    return parsed if isinstance(parsed, (bool, int, float, str)) else value


def write_hparams(sweep_dir: Path, plan: dict[str, Any], runs: list[dict[str, Any]]) -> int:
    """TensorBoard HParams: each finished run with its grid values, seed and final metrics, as one small run under
    ``<sweep>/hparams/<combination>/seed_<k>`` (rewritten on every report; the runs' own directories are not touched)."""
    from torch.utils.tensorboard import SummaryWriter
    from torch.utils.tensorboard.summary import hparams

    overrides = {c["name"]: c["overrides"] for c in plan["combinations"]}
    root = sweep_dir / HPARAMS_DIR
    if root.is_dir():
        shutil.rmtree(root)
    written = 0
    for run in runs:
        metrics = {k: v for k, v in run["metrics"].items() if math.isfinite(v)}
        if run["status"] != "finished" or not metrics:
            continue
        params = {k: _hparam_value(v) for k, v in overrides.get(run["combination"], {}).items()}
        params["seed"] = run["seed"]
        writer = SummaryWriter(log_dir=str(root / run["dir"]))
        try:
            for summary in hparams(params, metrics):
                writer.file_writer.add_summary(summary)
            for key, value in metrics.items():
                writer.add_scalar(key, value, global_step=run["step"] or 0)
        finally:
            writer.close()
        written += 1
    return written


def sweep_report(sweep_dir: str, scalars: Optional[list[str]] = None, plot: bool = True, hparams: bool = True) -> Path:
    """Write report.md, report.csv and report.json (and report.png, TensorBoard HParams) for a sweep directory.

    Args:
        sweep_dir: the sweep's directory (runs/NAME), holding sweep_plan.json.
        scalars: TensorBoard scalar tags to report besides the evaluation records (shell-style patterns; default
            ``eval/*``, ``modes/*``, ``collapse/*``).
        plot: also draw report.png, each metric over generator steps with a ± standard-error band across seeds.
        hparams: also write each finished run's hyper-parameters and final metrics for TensorBoard's HParams tab.
    """
    directory = Path(sweep_dir).expanduser()
    plan_path = directory / "sweep_plan.json"
    if not plan_path.is_file():
        raise ConfigurationError(
            f"{directory} has no sweep_plan.json: give the directory a `python -m gan_lightning sweep` command created "
            "(runs/NAME)."
        )
    plan = json.loads(plan_path.read_text())
    patterns = list(DEFAULT_SCALARS if scalars is None else scalars)
    runs = [read_run(directory, run, patterns) for run in plan["runs"]]
    summary = summarize(plan, runs)
    (directory / "report.md").write_text(_markdown(plan, summary, runs))
    _write_csv(directory / "report.csv", plan, summary)
    write_record(
        {"sweep": plan["name"], "config": plan["config"], "grid": plan["grid"], "seeds": plan["seeds"],
         "fit_options": plan.get("fit_options", []), **summary,
         "runs": [{k: v for k, v in r.items() if k != "curves"} for r in runs]},
        directory / "report.json",
    )
    if plot:
        _plot(directory / "report.png", summary, runs)
    if hparams:
        write_hparams(directory, plan, runs)
    return directory / "report.md"


def main(argv: Sequence[str]) -> None:
    """``python -m gan_lightning sweep-report runs/NAME`` (parsed by jsonargparse from :func:`sweep_report`)."""
    from jsonargparse import ArgumentParser

    parser = ArgumentParser(prog="python -m gan_lightning sweep-report",
                            description=(sweep_report.__doc__ or "").split("\n\n")[0])
    parser.add_function_arguments(sweep_report, as_group=False, as_positional=True)
    path = sweep_report(**parser.parse_args(list(argv)).as_dict())
    print(f"sweep-report: {path} (and report.csv, report.json)")
