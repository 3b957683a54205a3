"""Stacked Digits (the Stacked-MNIST protocol on scikit-learn's digits): modes covered and KL over seeds.

Every config is run through ``python -m gan_lightning sweep`` (one sweep per config, the seeds as its runs): each
run is ``experiments/dcgan_stacked_digits.yaml`` (or the config's own copy of it, in EXPERIMENTS) plus the options
of the config, trained by ``fit`` with a checkpoint every 1,000 steps and no other callback than the evaluation at
the end. It is scored as in PacGAN Table 2: 26,000 samples (the EMA generator when the config keeps one; latent
seed 10,000), each channel read by the digits classifier (seed 0, trained here in seconds and cached),
``modes_captured`` = digit triples with at least one sample (of 1,000), ``reverse_kl`` = KL(generated triple
histogram || uniform); each run's evaluation record (``evaluation/step_*.json``) holds the protocol. The table gives
mean ± standard error over seeds and the CPU time of one run's fit.

    python scripts/benchmark_stacked_digits.py --configs dcgan --seeds 0 1 2              # the experiment's steps
    python scripts/benchmark_stacked_digits.py --configs dcgan pacdcgan2 --seeds 0 1 2 --steps 5000
    python scripts/benchmark_stacked_digits.py --configs mgan --seeds 0 1 2          # MGAN, its own experiment file
    python scripts/benchmark_stacked_digits.py --table a.json b.json    # one table from several --output files

The runs live in ``--root`` (default runs/benchmark_stacked_digits/<config>/base/seed_<k>/, each sweep with its
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
EXPERIMENT = "experiments/dcgan_stacked_digits.yaml"
PACKED = "gan_lightning.networks.PackedDiscriminator"

#: name -> extra CLI options on top of the experiment: the same networks, data, optimizer and steps otherwise.
CONFIGS: dict[str, list[str]] = {
    "dcgan": [],
    # DiffAugment color,translation,cutout on everything D sees (Zhao et al. 2020)
    "dcgan-diffaugment": ["--model.augment=diffaugment"],
    # the nearest-neighbour (Kozachenko-Leonenko) entropy term on G's samples, at its default weight 1
    "dcgan-entropy": ["--model.regularizers+=gan_lightning.regularizers.NearestNeighbourEntropyRegularizer"],
    # PacGAN packing m = 2 (Lin et al. 2018): the discriminator sees pairs, so it is built for 2 x 3 channels
    "pacdcgan2": [
        f"--model.discriminator={PACKED}", "--model.discriminator.init_args.packing=2",
        "--model.discriminator.init_args.discriminator=gan_lightning.networks.DCGANDiscriminator",
        "--model.discriminator.init_args.discriminator.init_args.image_size=32",
        "--model.discriminator.init_args.discriminator.init_args.channels=6",
        "--model.discriminator.init_args.discriminator.init_args.width=32",
    ],
    # MGAN (Hoang et al. 2018): 10 DCGAN generators sharing all but their input layer, D with a 10-way classifier
    # head, beta = 0.01 (the paper's image settings); networks and loss from its own experiment file (EXPERIMENTS)
    "mgan": [],
}

#: name -> its own experiment file, for configs that change more than options can: the same data, widths, optimizer,
#: steps and evaluation as EXPERIMENT, other networks. These ignore --experiment.
EXPERIMENTS: dict[str, str] = {
    "mgan": "experiments/dcgan_stacked_digits_mgan.yaml",
}

#: PacGAN Table 2 (Stacked MNIST, 26,000 samples): (method, modes, KL)
PUBLISHED = [
    ("DCGAN (PacGAN, Table 2)", "99", "3.40"),
    ("Unrolled GAN (PacGAN, Table 2)", "48.7", "4.32"),
    ("VEEGAN (PacGAN, Table 2)", "150", "2.95"),
    ("PacDCGAN2 (PacGAN, Table 2)", "1000", "0.06"),
]


#: every run: a checkpoint (for resume) and one evaluation at the end of fit, 26,000 samples as in PacGAN Table 2
RUN_OPTIONS = [
    "--trainer.callbacks=[]",
    "--trainer.callbacks+=gan_lightning.callbacks.GANCheckpoint",
    "--trainer.callbacks.every_n_train_steps=1000", "--trainer.callbacks.save_last=true",
    "--trainer.callbacks+=gan_lightning.callbacks.GANEvaluation",
    "--trainer.callbacks.every_n_steps=0", "--trainer.callbacks.num_samples=26000", "--trainer.callbacks.seed=10000",
    "--trainer.callbacks.metrics=[]", "--trainer.callbacks.mode_classifier=stacked_digits",
    "--trainer.callbacks.batch_size=500", "--trainer.callbacks.show_progress_after=null",
    "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false",
    "--trainer.accelerator=cpu", "--trainer.devices=1",
]


def run_config(config: str, seeds: list[int], steps: int | None, jobs: int, root: str, experiment: str,
               extra: tuple[str, ...]) -> list[dict]:
    """Train one config with every seed (one sweep); each finished run's scores and costs."""
    from gan_lightning.commands.sweep import sweep
    from gan_lightning.metrics.digits_classifier import load_digits_classifier

    options = [*CONFIGS[config], *extra, *RUN_OPTIONS] + ([f"--trainer.max_steps={steps}"] if steps is not None else [])
    sweep_dir = sweep(config=str(ROOT / EXPERIMENTS.get(config, experiment)), seeds=",".join(map(str, seeds)),
                      name=config, root=root, jobs=jobs, fit_options=options)
    report = json.loads((sweep_dir / "report.json").read_text())
    accuracy = load_digits_classifier(0).info["heldout_accuracy"]
    return [
        {"config": config, "seed": run["seed"], "steps": run["step"], "cpu_s": run["cpu_s"], "wall_s": run["wall_s"],
         "classifier_accuracy": accuracy, "modes_captured": float(run["metrics"]["modes_captured"]),
         "reverse_kl": float(run["metrics"]["reverse_kl"])}
        for run in report["runs"] if run["seed"] in seeds and run["status"] == "finished"
    ]


def _mean_se(values: list[float], digits: int) -> str:
    mean = statistics.fmean(values)
    se = statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else 0.0
    return f"{mean:.{digits}f} ± {se:.{digits}f}"


def table(results: list[dict]) -> str:
    lines = ["| config | seeds | modes (of 1,000) | KL | steps | CPU s / run |", "|---|---|---|---|---|---|"]
    for config in sorted({r["config"] for r in results}, key=lambda c: list(CONFIGS).index(c) if c in CONFIGS else 99):
        rs = sorted((r for r in results if r["config"] == config), key=lambda r: r["seed"])
        lines.append(f"| {config} | {','.join(str(r['seed']) for r in rs)} | {_mean_se([r['modes_captured'] for r in rs], 1)} | "
                     f"{_mean_se([r['reverse_kl'] for r in rs], 2)} | {rs[0]['steps']} | {statistics.median(r['cpu_s'] for r in rs):.0f} |")
    accuracy = sorted({round(r["classifier_accuracy"], 4) for r in results})
    lines += ["", f"Digits classifier (seed 0) held-out accuracy: {', '.join(map(str, accuracy))}.", "",
              "Published (Stacked MNIST, 26,000 samples):", "", "| method | modes | KL |", "|---|---|---|"]
    lines += [f"| {m} | {a} | {b} |" for m, a, b in PUBLISHED]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", nargs="+", default=["dcgan"], choices=list(CONFIGS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=None, help="generator steps (default: the experiment's max_steps)")
    parser.add_argument("--experiment", default=EXPERIMENT,
                        help="the experiment the configs add their options to (not the configs in EXPERIMENTS: mgan)")
    parser.add_argument("--jobs", type=int, default=2, help="runs in parallel (the sweep divides the CPU threads between them)")
    parser.add_argument("--root", default="runs/benchmark_stacked_digits", help="where the sweeps keep their runs")
    parser.add_argument("--output", default="benchmark_stacked_digits.json", help="raw results (JSON)")
    parser.add_argument("--override", action="append", default=[], help="extra CLI option for every run (repeatable)")
    parser.add_argument("--table", nargs="+", default=None, metavar="JSON", help="train nothing: print the table of these --output files")
    args = parser.parse_args()
    if args.table:
        print(table([r for path in args.table for r in json.loads(Path(path).read_text())]))
        return
    from gan_lightning.metrics.digits_classifier import load_digits_classifier

    load_digits_classifier(0)  # train and cache it once, before the parallel runs
    print(f"{len(args.configs) * len(args.seeds)} runs on {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPUs, {args.jobs} at a time", flush=True)
    results = []
    for config in args.configs:
        results += run_config(config, args.seeds, args.steps, args.jobs, args.root, args.experiment, tuple(args.override))
        Path(args.output).write_text(json.dumps(results, indent=1))  # after every sweep: a killed job keeps its results
    print()
    print(table(results))


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
