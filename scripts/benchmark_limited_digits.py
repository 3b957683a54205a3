"""Limited digits: the default DCGAN on 100, 500 and all 1,797 digits, without and with discriminator augmentation.

The limited-data experiment of Karras et al. 2020 (StyleGAN2-ADA, Fig. 1/4) and Zhao et al. 2020 (DiffAugment,
Table 3) on scikit-learn's digits, offline. One ``python -m gan_lightning sweep`` of ``experiments/default.yaml``
(the default DCGAN, 1,500 generator steps of batch 64, so every run sees the same number of real images) over
``--data.init_args.subset`` (a fixed random subset of the digits, ``subset_seed`` 0, the same for every training seed)
× ``--model.augment`` (none, DiffAugment color,translation,cutout, ADA bgc with adaptive p at the paper's target 0.6
and speed 500k images), with the seeds as its runs.

Protocol (also written into each run's evaluation record): at the end of fit, 5,000 samples of the raw generator
(the default experiment keeps no EMA) with latent seed 10,000 are scored against **all 1,797 digits** (not the
training subset): ``fid`` = the Fréchet distance between Gaussians fitted to the 128-d penultimate features of the
digits classifier (``feature_extractor: digits``, seed 0; gan_lightning/metrics/digits_classifier.py), and
``modes_captured`` = digit classes (of 10) the classifier assigns at least one sample to, ``reverse_kl`` = KL(class
histogram || uniform). The table gives mean ± standard error over seeds and the CPU time of one run's fit.

    python scripts/benchmark_limited_digits.py                                     # 3 sizes x 3 augmentations x seeds 0-2
    python scripts/benchmark_limited_digits.py --subsets 100 --augments none diffaugment --seeds 0 --steps 300
    python scripts/benchmark_limited_digits.py --subsets 100 --steps 6000 --eval-every 1500   # FD every 1,500 steps too
    python scripts/benchmark_limited_digits.py --subsets 100 --steps 12000 --eval-every 3000 --keep-checkpoints
    python scripts/benchmark_limited_digits.py --table a.json b.json

Runs live in ``--root`` (default runs/benchmark_limited_digits/<name>/<combination>/seed_<k>/, with report.md);
the same command again skips finished runs and resumes the others from their last checkpoint.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: --experiment: the file and what makes it train on the digits subsets; ``small_images_32`` is the start-here
#: experiment (Radford et al.'s DCGAN at width 64, latent 100) on one-channel digits, cut to the same 1,500 steps
EXPERIMENTS = {
    "default": ("experiments/default.yaml", []),
    "small_images_32": ("experiments/small_images_32.yaml", [
        "--data=gan_lightning.data.DigitsDataModule", "--data.init_args.image_size=32", "--data.init_args.channels=1",
        "--data.init_args.num_workers=0", "--model.generator.init_args.channels=1", "--model.discriminator.init_args.channels=1",
        "--trainer.max_steps=1500",
    ]),
}

#: --model.augment value of each augmentation row: the papers' defaults, then variants for 8x8 digits at 32 px and
#: short budgets (DiffAugment's cutout removes half of a digit; ADA at the paper's speed reaches only p ~ 0.1 in the
#: 96k real images of 1,500 steps)
AUGMENTS = {
    "none": "null",
    "diffaugment": "diffaugment",
    "ada": "ada",
    "diffaugment-translation": "{class_path: gan_lightning.tricks.augment.DiffAugment, init_args: {policy: translation}}",
    "diffaugment-color-translation": '{class_path: gan_lightning.tricks.augment.DiffAugment, init_args: {policy: "color,translation"}}',
    "ada-100k": "{class_path: gan_lightning.tricks.ada.ADA, init_args: {speed_images: 100000}}",
    "ada-p0.2": "{class_path: gan_lightning.tricks.ada.ADA, init_args: {p: 0.2, target: null}}",
}
ALL_DIGITS = '{"class_path": "gan_lightning.data.DigitsDataModule", "init_args": {"image_size": 32, "channels": 1}}'

#: every run: a checkpoint (for resume) and one evaluation at the end of fit
RUN_OPTIONS = [
    "--trainer.callbacks=[]",
    "--trainer.callbacks+=gan_lightning.callbacks.GANCheckpoint",
    "--trainer.callbacks.every_n_train_steps=500", "--trainer.callbacks.save_last=true",
    "--trainer.callbacks+=gan_lightning.callbacks.GANEvaluation",
    "--trainer.callbacks.every_n_steps=0", "--trainer.callbacks.num_samples=5000", "--trainer.callbacks.seed=10000",
    "--trainer.callbacks.metrics=[fid]", "--trainer.callbacks.feature_extractor=digits",
    "--trainer.callbacks.mode_classifier=digits", f"--trainer.callbacks.reference={ALL_DIGITS}",
    "--trainer.callbacks.batch_size=500", "--trainer.callbacks.show_progress_after=null",
    "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false",
    "--trainer.accelerator=cpu", "--trainer.devices=1",
]
METRICS = ("fid", "modes_captured", "reverse_kl")


def run_sweep(subsets: list[str], augments: list[str], seeds: list[int], steps: int | None, jobs: int, root: str,
              extra: tuple[str, ...], eval_every: int = 0, experiment: str = "default",
              keep_checkpoints: bool = False) -> list[dict]:
    """One sweep (subset x augmentation, the seeds as runs); each finished run's scores and costs."""
    from gan_lightning.commands.sweep import sweep
    from gan_lightning.commands.sweep_report import DEFAULT_SCALARS, read_records, sweep_report

    run_options = [f"--trainer.callbacks.every_n_steps={eval_every}" if o == "--trainer.callbacks.every_n_steps=0" else o
                   for o in RUN_OPTIONS]
    if keep_checkpoints:  # every 500-step checkpoint stays, for analyses of D along the run
        run_options.insert(run_options.index("--trainer.callbacks.save_last=true") + 1, "--trainer.callbacks.save_top_k=-1")
    config, adapt = EXPERIMENTS[experiment]
    options = [*adapt, *extra, *run_options] + ([f"--trainer.max_steps={steps}"] if steps is not None else [])
    grid = [f"data.init_args.subset={','.join(subsets)}", f"model.augment={','.join(AUGMENTS[a] for a in augments)}"]
    name = f"limited_digits-{'' if experiment == 'default' else experiment + '-'}{steps or 'default'}"
    sweep_dir = sweep(config=str(ROOT / config), seeds=",".join(map(str, seeds)), grid=grid, name=name, root=root,
                      jobs=jobs, fit_options=options)
    sweep_report(str(sweep_dir), scalars=[*DEFAULT_SCALARS, "augment_p"])  # the report, with ADA's final p
    report = json.loads((sweep_dir / "report.json").read_text())
    plan = json.loads((sweep_dir / "sweep_plan.json").read_text())
    values = {c["name"]: c["overrides"] for c in plan["combinations"]}
    by_value = {v: k for k, v in AUGMENTS.items()}
    results = []
    for run in report["runs"]:
        if run["status"] != "finished" or run["seed"] not in seeds:
            continue
        combo = values[run["combination"]]
        subset = combo["data.init_args.subset"]
        results.append({
            "images": 1797 if subset == "null" else int(subset), "augment": by_value[combo["model.augment"]],
            "seed": run["seed"], "steps": run["step"], "cpu_s": run["cpu_s"], "wall_s": run["wall_s"],
            **{m: float(run["metrics"][m]) for m in METRICS},
            "augment_p": float(run["metrics"].get("augment_p", 0.0)),
            "fid_by_step": {step: scores["fid"] for step, scores in read_records(sweep_dir / run["dir"]).items()},
        })
    return results


def _mean_se(values: list[float], digits: int = 2) -> str:
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return "inf"
    mean = statistics.fmean(finite)
    se = statistics.stdev(finite) / math.sqrt(len(finite)) if len(finite) > 1 else 0.0
    return f"{mean:.{digits}f} ± {se:.{digits}f}"


def table(results: list[dict]) -> str:
    lines = ["| training images | augmentation | Fréchet distance (digits features) ↓ | classes covered (of 10) | class KL | "
             "final ADA p | seeds | steps | CPU s / run |", "|---|---|---|---|---|---|---|---|---|"]
    keys = sorted({(r["images"], r["augment"]) for r in results}, key=lambda k: (k[0], list(AUGMENTS).index(k[1])))
    for images, augment in keys:
        rs = [r for r in results if r["images"] == images and r["augment"] == augment]
        p = _mean_se([r["augment_p"] for r in rs]) if augment.startswith("ada") else "-"
        lines.append(f"| {images} | {augment} | {_mean_se([r['fid'] for r in rs])} | {_mean_se([r['modes_captured'] for r in rs], 1)} | "
                     f"{_mean_se([r['reverse_kl'] for r in rs], 3)} | {p} | {len(rs)} | {rs[0]['steps']} | "
                     f"{statistics.median(r['cpu_s'] for r in rs):.0f} |")
    return "\n".join(lines)


def curve_table(results: list[dict]) -> str:
    """Fréchet distance at every evaluated step (``--eval-every``), mean ± standard error over seeds."""
    steps = sorted({int(step) for r in results for step in r.get("fid_by_step", {})})
    if len(steps) < 2:
        return ""
    lines = ["| training images | augmentation | " + " | ".join(f"FD at {s:,}" for s in steps) + " | seeds |",
             "|---|---|" + "---|" * len(steps) + "---|"]
    keys = sorted({(r["images"], r["augment"]) for r in results}, key=lambda k: (k[0], list(AUGMENTS).index(k[1])))
    for images, augment in keys:
        rs = [r for r in results if r["images"] == images and r["augment"] == augment]
        curves = [{int(k): v for k, v in r.get("fid_by_step", {}).items()} for r in rs]  # JSON keys are strings
        cells = [_mean_se([c[s] for c in curves if s in c]) if any(s in c for c in curves) else "–" for s in steps]
        lines.append(f"| {images} | {augment} | " + " | ".join(cells) + f" | {len(rs)} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--subsets", nargs="+", default=["100", "500", "all"], help="training set sizes (all = 1,797)")
    parser.add_argument("--augments", nargs="+", default=list(AUGMENTS), choices=list(AUGMENTS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=None, help="generator steps (default: the experiment's 1,500)")
    parser.add_argument("--experiment", default="default", choices=list(EXPERIMENTS),
                        help="default: experiments/default.yaml (width 32); small_images_32: the start-here DCGAN (width 64)")
    parser.add_argument("--eval-every", type=int, default=0, help="also score every N generator steps (0: only at the end)")
    parser.add_argument("--keep-checkpoints", action="store_true",
                        help="keep every 500-step checkpoint (default: only the last), e.g. for discriminator_overfitting.py")
    parser.add_argument("--jobs", type=int, default=2, help="runs in parallel (the sweep divides the CPU threads between them)")
    parser.add_argument("--root", default="runs/benchmark_limited_digits", help="where the sweep keeps its runs")
    parser.add_argument("--output", default="benchmark_limited_digits.json", help="raw results (JSON)")
    parser.add_argument("--override", action="append", default=[], help="extra CLI option for every run (repeatable)")
    parser.add_argument("--table", nargs="+", default=None, metavar="JSON", help="train nothing: print the table of these --output files")
    args = parser.parse_args()
    if args.table:
        results = [r for path in args.table for r in json.loads(Path(path).read_text())]
        print(table(results))
        print(curve_table(results))
        return
    subsets = ["null" if s == "all" else str(int(s)) for s in args.subsets]
    print(f"{len(subsets) * len(args.augments) * len(args.seeds)} runs on {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPUs, {args.jobs} at a time", flush=True)
    results = run_sweep(subsets, args.augments, args.seeds, args.steps, args.jobs, args.root, tuple(args.override),
                        args.eval_every, args.experiment, args.keep_checkpoints)
    Path(args.output).write_text(json.dumps(results, indent=1))
    print()
    print(table(results))
    print(curve_table(results))


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
