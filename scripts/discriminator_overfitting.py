"""Did D memorise its digits? ``holdout_position`` along finished limited-digits runs, from their kept checkpoints.

Karras et al. 2020 (Fig. 1b) show limited-data overfitting as D's scores on held-out reals sliding from those of the
training reals toward those of the fakes. This script scores every kept checkpoint of runs made by
``benchmark_limited_digits.py --keep-checkpoints`` the way ``DiscriminatorOverfittingCallback`` does during training
(gan_lightning/callbacks/overfitting.py): the run's training digits (the ``--subset`` of ``DigitsDataModule``,
subset_seed 0), ``--num-images`` of the digits that subset leaves out, and as many fakes, D and G in train mode with
the training batch size. ``holdout_position`` is 0 when D scores held-out digits like its training digits, 1 when
like fakes. Next to it: the run's own Fréchet distance at the same step, if it was evaluated there.

    python scripts/discriminator_overfitting.py runs/benchmark_limited_digits/limited_digits-12000 --subset 100 --every 3000
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STEP = re.compile(r"step=(\d+)\.ckpt$")


def run_dirs(paths: list[str]) -> list[Path]:
    """Every run directory (one holding ``checkpoints/``) at or below the given paths."""
    found = []
    for path in map(Path, paths):
        found += [p.parent for p in sorted(path.rglob("checkpoints")) if p.is_dir()]
    if not found:
        raise SystemExit(f"No run directories with checkpoints/ under {paths}.")
    return found


def measure_run(run: Path, subset: int, num_images: int, every: int, batch_size: int) -> dict[int, dict[str, float]]:
    """Step -> overfitting scalars (and ``fid`` where the run was evaluated) for each kept checkpoint at a multiple of ``every``."""
    import torch

    from gan_lightning import GANModule
    from gan_lightning.callbacks.overfitting import measure_overfitting, take_samples
    from gan_lightning.commands.sweep_report import read_records
    from gan_lightning.data import DigitsDataModule

    image_size = None
    records = read_records(run)
    out: dict[int, dict[str, float]] = {}
    for ckpt in sorted(run.glob("checkpoints/*.ckpt")):
        match = STEP.search(ckpt.name)
        if match is None or int(match.group(1)) % every:
            continue
        step = int(match.group(1))
        module = GANModule.load_from_checkpoint(ckpt, map_location="cpu")
        size = int(getattr(module.generator, "image_size", 32))
        if size != image_size:
            image_size = size
            train = take_samples(DigitsDataModule(image_size=size, subset=subset).train_dataset, None)
            holdout = take_samples(DigitsDataModule(image_size=size, subset=subset, held_out=True).train_dataset, num_images)
        with torch.no_grad():
            metrics = measure_overfitting(module, train, holdout, batch_size=batch_size)
        out[step] = {k.removeprefix("overfitting/"): float(v) for k, v in metrics.items()}
        if step in records and "fid" in records[step]:
            out[step]["fid"] = records[step]["fid"]
    return out


def _mean_se(values: list[float], digits: int = 2) -> str:
    if not values:
        return "–"
    mean = statistics.fmean(values)
    se = statistics.stdev(values) / len(values) ** 0.5 if len(values) > 1 else 0.0
    return f"{mean:.{digits}f} ± {se:.{digits}f}"


def table(results: dict[str, dict[int, dict[str, float]]]) -> str:
    """One row per combination (the run directory's parent), mean ± standard error over its seeds at each step."""
    groups: dict[str, list[dict[int, dict[str, float]]]] = {}
    for run, by_step in results.items():
        groups.setdefault(Path(run).parent.name, []).append(by_step)
    steps = sorted({int(s) for by_step in results.values() for s in by_step})
    lines = ["| runs | value | " + " | ".join(f"step {s:,}" for s in steps) + " | seeds |",
             "|---|---|" + "---|" * len(steps) + "---|"]
    for name, runs in sorted(groups.items()):
        for key, label in (("holdout_position", "held-out position"), ("acc_train_real", "D acc. training reals"),
                           ("acc_holdout_real", "D acc. held-out reals"), ("fid", "FD")):
            cells = [_mean_se([r[s][key] for r in runs if s in r and key in r[s]]) for s in steps]
            if any(c != "–" for c in cells):
                lines.append(f"| {name} | {label} | " + " | ".join(cells) + f" | {len(runs)} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("paths", nargs="+", help="sweep or run directories with kept checkpoints")
    parser.add_argument("--subset", type=int, required=True, help="the runs' --data.init_args.subset (subset_seed 0)")
    parser.add_argument("--num-images", type=int, default=500, help="held-out digits scored (and as many fakes)")
    parser.add_argument("--every", type=int, default=500, help="only checkpoints at multiples of this step")
    parser.add_argument("--batch-size", type=int, default=64, help="images per D pass: the runs' training batch")
    parser.add_argument("--output", default=None, help="also write the raw values (JSON)")
    args = parser.parse_args()
    results = {str(run): measure_run(run, args.subset, args.num_images, args.every, args.batch_size)
               for run in run_dirs(args.paths)}
    if args.output:
        Path(args.output).write_text(json.dumps(results, indent=1))
    print(table(results))


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
