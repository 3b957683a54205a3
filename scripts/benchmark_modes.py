"""Mode coverage on ring8 and grid25 (protocol: PacGAN / VEEGAN, see README "Benchmarks") for several losses and tricks.

Every config is run through ``python -m gan_lightning sweep`` (one sweep per config and mixture, the seeds as its
runs): each run is the shipped ``{mixture}_all_modes`` experiment (plus the options listed in CONFIGS) trained by
``fit`` with a checkpoint every 5,000 steps and no other callback than the evaluation at the end, which scores 2,500
samples (the EMA generator when the config keeps one): modes captured, % high-quality samples, reverse KL.
The table gives mean ± standard error over seeds, the generator steps and the CPU time of one run's fit.

    python scripts/benchmark_modes.py                        # all configs, 5 seeds, both mixtures, 2 runs at a time
    python scripts/benchmark_modes.py --configs best --seeds 0 1 2 --mixtures ring8 --steps 5000
    python scripts/benchmark_modes.py --table a.json b.json   # one table from the results of several invocations

The runs live in ``--root`` (default runs/benchmark_modes/<config>-<mixture>/base/seed_<k>/, each sweep with its
report.md); running the same command again skips the finished runs and resumes the others from their last checkpoint.
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

#: name -> (experiment file with {mixture} in it, extra CLI options). Every config shares the networks, batch size,
#: optimizer and number of steps of the shipped ``{mixture}_all_modes`` experiment; only the loss and the tricks change.
#: the rows other than "best" leave out the shipped file's tricks (EMA, decay, mode seeking)
PLAIN = ["--model.ema_decay=null", "--model.generator_scheduler=null", "--model.discriminator_scheduler=null",
         "--model.regularizers=[]"]
CONFIGS: dict[str, tuple[str, list[str]]] = {
    "nonsaturating": ("experiments/{mixture}_all_modes.yaml", PLAIN),
    # WGAN-GP with the settings of its paper's toy experiments (Gulrajani et al. 2017, gan_toy.py: lambda 0.1 on 2D
    # data, Adam 1e-4 betas (0.5, 0.9), 5 critic steps). With this budget's lambda 10 and lr 1e-3 it drifts off the
    # modes (ring8 seed 0: 1 mode, 0 % high quality after 20,000 steps).
    "wgan-gp": ("experiments/{mixture}_all_modes.yaml", [
        *PLAIN, "--model.loss=gan_lightning.losses.WassersteinGPLoss", "--model.loss.gp_weight=0.1", "--model.n_critic=5",
        "--model.generator_optimizer.init_args.lr=0.0001", "--model.discriminator_optimizer.init_args.lr=0.0001"]),
    "hinge+sn": ("experiments/{mixture}_all_modes.yaml", [*PLAIN, "--model.loss=hinge", "--model.discriminator.init_args.spectral_norm=true"]),
    "best": ("experiments/{mixture}_all_modes.yaml", []),
    # the same budget with 3 discriminators (GMAN) or 4 generators (MGAN): experiments/{mixture}_{gman,mgan}.yaml
    "gman": ("experiments/{mixture}_gman.yaml", []),
    "mgan": ("experiments/{mixture}_mgan.yaml", []),
    # MGAN with 8 generators trained twice as long (40,000 steps, decay over 40,000, EMA from 20,000):
    # experiments/{mixture}_mgan8_40k.yaml; the README's K = 4 row at 40k steps is this config with
    # --override=--model.{generator,discriminator,loss}.init_args.num_generators=4
    "mgan8-40k": ("experiments/{mixture}_mgan8_40k.yaml", []),
}

#: Published rows (VEEGAN Table 1, PacGAN Table 1, GDPP Table 1): modes, HQ % for ring8 then grid25.
PUBLISHED = [
    ("GAN (VEEGAN, Table 1)", "1", "99.3", "3.3", "0.5"),
    ("Unrolled GAN (VEEGAN, Table 1)", "7.6", "35.6", "23.6", "16"),
    ("VEEGAN (VEEGAN, Table 1)", "8", "52.9", "24.6", "40"),
    ("GAN (PacGAN, Table 1)", "6.3±0.5", "98.2±0.2", "17.3±0.8", "94.8±0.7"),
    ("PacGAN2 (PacGAN, Table 1)", "7.9±0.1", "95.6±2.0", "23.8±0.7", "91.3±0.8"),
    ("PacGAN4 (PacGAN, Table 1)", "7.8±0.1", "95.9±1.4", "24.8±0.2", "93.6±0.6"),
    ("WGAN-GP (GDPP, Table 1)", "6.8", "59.6", "24.2", "28.7"),
    ("GDPP-GAN (GDPP, Table 1)", "8.0", "71.7", "24.8", "68.5"),
]


#: every run: only a checkpoint (for resume) and the evaluation at the end of fit, 2,500 samples as in PacGAN
RUN_OPTIONS = [
    "--trainer.callbacks=[]",
    "--trainer.callbacks+=gan_lightning.callbacks.GANCheckpoint",
    "--trainer.callbacks.every_n_train_steps=5000", "--trainer.callbacks.save_last=true",
    "--trainer.callbacks+=gan_lightning.callbacks.GANEvaluation",
    "--trainer.callbacks.every_n_steps=0", "--trainer.callbacks.num_samples=2500", "--trainer.callbacks.seed=10000",
    "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false",
    "--trainer.accelerator=cpu", "--trainer.devices=1",
]


def run_config(config: str, mixture: str, seeds: list[int], steps: int | None, jobs: int, root: str,
               extra: tuple[str, ...] = ()) -> list[dict]:
    """Train one config on one mixture with every seed (one sweep); return each run's scores and costs."""
    from gan_lightning.commands.sweep import sweep
    from gan_lightning.metrics.mode_coverage import MODE_METRICS

    path, overrides = CONFIGS[config]
    options = [*overrides, *extra, *RUN_OPTIONS] + ([f"--trainer.max_steps={steps}"] if steps is not None else [])
    sweep_dir = sweep(config=str(ROOT / path.format(mixture=mixture)), seeds=",".join(map(str, seeds)),
                      name=f"{config}-{mixture}", root=root, jobs=jobs, fit_options=options)
    report = json.loads((sweep_dir / "report.json").read_text())
    return [
        {"config": config, "mixture": mixture, "seed": run["seed"], "steps": run["step"], "cpu_s": run["cpu_s"],
         "wall_s": run["wall_s"], **{m: float(run["metrics"][m]) for m in MODE_METRICS}}
        for run in report["runs"] if run["seed"] in seeds and run["status"] == "finished"
    ]


def _mean_se(values: list[float]) -> str:
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return "inf"
    mean = statistics.fmean(finite)
    se = statistics.stdev(finite) / math.sqrt(len(finite)) if len(finite) > 1 else 0.0
    extra = f" ({len(values) - len(finite)} inf)" if len(finite) < len(values) else ""
    return f"{mean:.2f} ± {se:.2f}{extra}"


def table(results: list[dict]) -> str:
    lines = [
        "| config | mixture | seeds | modes captured | high quality % | reverse KL | runs with all modes & >96 % HQ | "
        "runs with reverse KL ≤ 0.1 | steps | CPU s / run |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    keys = sorted({(r["config"], r["mixture"]) for r in results}, key=lambda k: (k[1], list(CONFIGS).index(k[0])))
    for config, mixture in keys:
        rs = [r for r in results if r["config"] == config and r["mixture"] == mixture]
        total = 8 if mixture == "ring8" else 25
        perfect = sum(r["modes_captured"] == total and r["high_quality_percent"] > 96 for r in rs)
        balanced = sum(r["reverse_kl"] <= 0.1 for r in rs)
        seeds = ",".join(str(r["seed"]) for r in sorted(rs, key=lambda r: r["seed"]))
        lines.append(
            f"| {config} | {mixture} | {seeds} | {_mean_se([r['modes_captured'] for r in rs])} | "
            f"{_mean_se([r['high_quality_percent'] for r in rs])} | {_mean_se([r['reverse_kl'] for r in rs])} | "
            f"{perfect}/{len(rs)} | {balanced}/{len(rs)} | {rs[0]['steps']} | {statistics.median(r['cpu_s'] for r in rs):.0f} |"
        )
    lines += ["", "Published (VEEGAN, PacGAN and GDPP papers, Table 1 each):", "", "| method | ring8 modes | ring8 HQ % | grid25 modes | grid25 HQ % |", "|---|---|---|---|---|"]
    lines += [f"| {m} | {a} | {b} | {c} | {d} |" for m, a, b, c, d in PUBLISHED]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--mixtures", nargs="+", default=["ring8", "grid25"], choices=["ring8", "grid25"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    parser.add_argument("--steps", type=int, default=None, help="generator steps (default: each config's max_steps)")
    parser.add_argument("--jobs", type=int, default=2, help="runs in parallel (the sweep divides the CPU threads between them)")
    parser.add_argument("--root", default="runs/benchmark_modes", help="where the sweeps keep their runs")
    parser.add_argument("--output", default="benchmark_modes.json", help="raw results (JSON)")
    parser.add_argument("--override", action="append", default=[], help="extra CLI option for every run (repeatable)")
    parser.add_argument("--table", nargs="+", default=None, metavar="JSON",
                        help="train nothing: print the table of these --output files together")
    args = parser.parse_args()
    if args.table:
        print(table([r for path in args.table for r in json.loads(Path(path).read_text())]))
        return

    print(f"{len(args.configs) * len(args.mixtures) * len(args.seeds)} runs on {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPUs, {args.jobs} at a time", flush=True)
    results = []
    for mixture in args.mixtures:
        for config in args.configs:
            for result in run_config(config, mixture, args.seeds, args.steps, args.jobs, args.root, tuple(args.override)):
                results.append(result)
                print(
                    f"{result['config']:>14} {result['mixture']:>6} seed {result['seed']}: modes {result['modes_captured']:.0f} "
                    f"HQ {result['high_quality_percent']:.1f}% KL {result['reverse_kl']:.3f} ({result['steps']} steps, {result['cpu_s']:.0f} CPU s)",
                    flush=True,
                )
            Path(args.output).write_text(json.dumps(results, indent=1))  # after every sweep: a killed job keeps its results
    print()
    print(table(results))


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
