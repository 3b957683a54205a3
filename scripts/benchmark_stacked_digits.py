"""Stacked Digits (the Stacked-MNIST protocol on scikit-learn's digits): modes covered and KL over seeds.

Every run is an experiment file (default ``experiments/dcgan_stacked_digits.yaml``) plus the options of the chosen
config, built by the project's own CLI parser and trained by the Lightning Trainer without loggers, checkpoints or
callbacks. It is then scored as in PacGAN Table 2: 26,000 samples (the EMA generator when the config keeps one),
each channel read by the digits classifier (seed 0, trained here in seconds and cached), ``modes_captured`` = digit
triples with at least one sample (of 1,000), ``reverse_kl`` = KL(generated triple histogram || uniform). The table
gives mean ± standard error over seeds and the wall time of one run; the JSON record of each run (with its protocol)
goes next to ``--output``.

    python scripts/benchmark_stacked_digits.py --configs dcgan --seeds 0 1 2              # the experiment's steps
    python scripts/benchmark_stacked_digits.py --configs dcgan pacdcgan2 --seeds 0 1 2 --steps 5000
    python scripts/benchmark_stacked_digits.py --table a.json b.json    # one table from several --output files

Runs are independent processes (one thread each), ``--jobs`` at a time.
"""

from __future__ import annotations

import json
import math
import os
import platform
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Optional

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENT = "experiments/dcgan_stacked_digits.yaml"
PACKED = "gan_lightning.networks.PackedDiscriminator"

#: name -> extra CLI options on top of the experiment: the same networks, data, optimizer and steps otherwise.
CONFIGS: dict[str, list[str]] = {
    "dcgan": [],
    # DiffAugment color,translation,cutout on everything D sees (Zhao et al. 2020)
    "dcgan-diffaugment": ["--model.augment=diffaugment"],
    # PacGAN packing m = 2 (Lin et al. 2018): the discriminator sees pairs, so it is built for 2 x 3 channels
    "pacdcgan2": [
        f"--model.discriminator={PACKED}", "--model.discriminator.init_args.packing=2",
        "--model.discriminator.init_args.discriminator=gan_lightning.networks.DCGANDiscriminator",
        "--model.discriminator.init_args.discriminator.init_args.image_size=32",
        "--model.discriminator.init_args.discriminator.init_args.channels=6",
        "--model.discriminator.init_args.discriminator.init_args.width=32",
    ],
}

#: PacGAN Table 2 (Stacked MNIST, 26,000 samples): (method, modes, KL)
PUBLISHED = [
    ("DCGAN (PacGAN, Table 2)", "99", "3.40"),
    ("Unrolled GAN (PacGAN, Table 2)", "48.7", "4.32"),
    ("VEEGAN (PacGAN, Table 2)", "150", "2.95"),
    ("PacDCGAN2 (PacGAN, Table 2)", "1000", "0.06"),
]


def run_one(config: str, seed: int, steps: Optional[int], experiment: str, extra: tuple[str, ...], num_samples: int,
            record_dir: str) -> dict:
    """Train one config with one seed; return its scores and costs."""
    import warnings

    import torch

    torch.set_num_threads(1)
    warnings.filterwarnings("ignore")
    from gan_lightning.commands.cli import GANLightningCLI
    from gan_lightning.metrics import GeneratorEvaluator, make_record, reference_from_datamodule, write_record
    from gan_lightning.metrics.digits_classifier import StackedDigitsClassifier

    args = [
        "--config", str(ROOT / experiment), *CONFIGS[config], *extra, f"--seed_everything={seed}",
        "--trainer.logger=false", "--trainer.enable_checkpointing=false", "--trainer.enable_progress_bar=false",
        "--trainer.enable_model_summary=false", "--trainer.callbacks=[]", "--trainer.accelerator=cpu", "--trainer.devices=1",
    ]
    if steps is not None:
        args.append(f"--trainer.max_steps={steps}")
    classifier = StackedDigitsClassifier(0)  # trained (or loaded) before the clock starts
    cli = GANLightningCLI(args=args, run=False, save_config_callback=None)
    wall0 = time.perf_counter()
    cli.trainer.fit(cli.model, cli.datamodule)
    fit_s = time.perf_counter() - wall0
    model = cli.model
    ema = getattr(model, "generator_ema", None)
    generator = ema if isinstance(ema, torch.nn.Module) else model.generator
    evaluator = GeneratorEvaluator(reference_from_datamodule(cli.datamodule), num_samples=num_samples, metrics=[],
                                   mode_classifier=classifier, seed=10_000 + seed, batch_size=500, cache=False)
    scores, protocol = evaluator.evaluate(generator, model.sample_latent, torch.device("cpu"))
    protocol = {"config": config, "experiment": experiment, "options": [*CONFIGS[config], *extra], "train_seed": seed,
                "steps": cli.trainer.global_step, "generator": "ema" if generator is ema else "raw", **protocol}
    write_record(make_record(scores, protocol), Path(record_dir) / f"{config}_seed{seed}.json")
    return {"config": config, "seed": seed, "steps": cli.trainer.global_step, "fit_s": fit_s,
            "wall_s": time.perf_counter() - wall0, "classifier_accuracy": classifier.digits.info["heldout_accuracy"], **scores}


def _mean_se(values: list[float], digits: int) -> str:
    mean = statistics.fmean(values)
    se = statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else 0.0
    return f"{mean:.{digits}f} ± {se:.{digits}f}"


def table(results: list[dict]) -> str:
    lines = ["| config | modes (of 1,000) | KL | seeds | steps | wall s / run |", "|---|---|---|---|---|---|"]
    for config in sorted({r["config"] for r in results}, key=lambda c: list(CONFIGS).index(c) if c in CONFIGS else 99):
        rs = [r for r in results if r["config"] == config]
        lines.append(f"| {config} | {_mean_se([r['modes_captured'] for r in rs], 1)} | {_mean_se([r['reverse_kl'] for r in rs], 2)} | "
                     f"{len(rs)} | {rs[0]['steps']} | {statistics.median(r['wall_s'] for r in rs):.0f} |")
    accuracy = sorted({round(r["classifier_accuracy"], 4) for r in results})
    lines += ["", f"Digits classifier (seed 0) held-out accuracy: {', '.join(map(str, accuracy))}.", "",
              "Published (Stacked MNIST, 26,000 samples):", "", "| method | modes | KL |", "|---|---|---|"]
    lines += [f"| {m} | {a} | {b} |" for m, a, b in PUBLISHED]
    return "\n".join(lines)


def main(
    configs: list[str] = ["dcgan"],  # noqa: B006 - jsonargparse reads the default
    seeds: list[int] = [0, 1, 2],  # noqa: B006
    steps: Optional[int] = None,
    experiment: str = EXPERIMENT,
    override: list[str] = [],  # noqa: B006
    num_samples: int = 26_000,
    jobs: int = 2,
    output: str = "benchmark_stacked_digits.json",
    table_only: Optional[list[str]] = None,
) -> None:
    """Train every config for every seed (``steps``: default the experiment's max_steps) and print the table.

    Args:
        configs: among ``dcgan``, ``dcgan-diffaugment`` and ``pacdcgan2`` (options added to ``experiment``).
        override: extra CLI options for every run, e.g. ``--model.ema_decay=0.999``.
        num_samples: generated samples scored (26,000 in PacGAN Table 2).
        output: raw results (JSON, rewritten after every run); the per-run records go to ``<output stem>_records/``.
        table_only: train nothing; print the table of these ``output`` files together.
    """
    if table_only:
        print(table([r for path in table_only for r in json.loads(Path(path).read_text())]))
        return
    unknown = [c for c in configs if c not in CONFIGS]
    if unknown:
        raise SystemExit(f"unknown config(s) {unknown}; choose from {list(CONFIGS)}")
    from gan_lightning.metrics.digits_classifier import StackedDigitsClassifier

    StackedDigitsClassifier(0)  # train and cache it once, before the parallel runs
    record_dir = str(Path(output).with_suffix("")) + "_records"
    work = [(c, s, steps, experiment, tuple(override), num_samples, record_dir) for c in configs for s in seeds]
    print(f"{len(work)} runs on {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, {jobs} at a time", flush=True)
    start, results = time.perf_counter(), []
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        for result in pool.map(run_one, *zip(*work)):
            results.append(result)
            print(f"{result['config']:>10} seed {result['seed']}: modes {result['modes_captured']:.0f} KL {result['reverse_kl']:.3f} "
                  f"({result['steps']} steps, {result['wall_s']:.0f} s)", flush=True)
            Path(output).write_text(json.dumps(results, indent=1))
    print(f"\nwall time {time.perf_counter() - start:.0f} s\n")
    print(table(results))


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    from jsonargparse import CLI

    CLI(main, as_positional=False)
