"""Image cache: loader throughput and the share of a DCGAN-32 step spent waiting for data, cached vs per-sample PIL.

Writes ``--images`` synthetic JPEGs of ``--source_size`` pixels (smooth random colour fields with noise, so JPEG
decoding does real work) into a temporary folder, then, in this process, alternating the two paths ``--repeats``
times:

1. loader throughput (images/s): one epoch of ``ImageFolderDataModule.train_dataloader()`` at ``--image_size``
   (batch 64, ``num_workers=0``), per-sample PIL (``cache=off``) against the decode-once cache (``cache=memory``);
   the one-off cost of building the cache (decoding every file once) is reported beside it;
2. the data-wait share of training: a DCGAN-32 (the default experiment's networks, 3 channels) trained by
   ``GANModule`` under the Lightning ``Trainer`` for ``--steps`` generator steps; the time spent inside
   ``next(loader)`` over the time of the training loop (from the first ``next`` to the end of training).

Single thread (``torch.set_num_threads(1)``), as a one-core data loader. Medians over the repeats.

    python scripts/benchmark_image_cache.py                                  # 2,000 64x64 JPEGs -> 32x32
    python scripts/benchmark_image_cache.py --images 500 --steps 40 --repeats 2
"""

from __future__ import annotations

import json
import logging
import os
import platform
import statistics
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any, Iterator, Optional

import numpy as np
import torch


def write_jpegs(folder: Path, count: int, size: int, seed: int = 0) -> None:
    """Smooth random colour fields (8x8 upsampled bicubically) plus pixel noise, saved as JPEG quality 90."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        coarse = Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).resize((size, size), Image.BICUBIC)
        noisy = np.asarray(coarse, dtype=np.int16) + rng.integers(-12, 13, (size, size, 3))
        Image.fromarray(noisy.clip(0, 255).astype(np.uint8)).save(folder / f"{i:05d}.jpg", quality=90)


def datamodule(root: Path, cache: str, image_size: int, batch_size: int = 64):
    from gan_lightning.data import ImageFolderDataModule

    return ImageFolderDataModule(str(root), image_size=image_size, channels=3, batch_size=batch_size, cache=cache)


def loader_throughput(root: Path, cache: str, image_size: int) -> tuple[float, float]:
    """(images/s over one epoch of the training loader, seconds spent building the dataset)."""
    dm = datamodule(root, cache, image_size)
    start = time.perf_counter()
    dm.setup()
    build = time.perf_counter() - start
    loader = dm.train_dataloader()
    start = time.perf_counter()
    count = sum(len(batch[0]) for batch in loader)
    return count / (time.perf_counter() - start), build


def _timed(iterator: Iterator[Any], clock: dict[str, float]) -> Iterator[Any]:
    while True:
        start = time.perf_counter()
        clock.setdefault("first", start)
        try:
            batch = next(iterator)
        except StopIteration:
            return
        clock["waited"] += time.perf_counter() - start
        yield batch


def data_wait_share(root: Path, cache: str, image_size: int, steps: int) -> dict[str, float]:
    """Fit a DCGAN-32 for ``steps`` generator steps; time inside next(loader) and from the first batch to the end."""
    from lightning.pytorch import Callback, Trainer, seed_everything

    from gan_lightning import GANModule
    from gan_lightning.data.loader import ResumableDataLoader
    from gan_lightning.networks import DCGANDiscriminator, DCGANGenerator

    clock = {"waited": 0.0}

    class TimedLoader(ResumableDataLoader):
        def __iter__(self) -> Iterator[Any]:
            return _timed(super().__iter__(), clock)

    class EndTime(Callback):
        def on_train_end(self, trainer: Trainer, pl_module: Any) -> None:
            clock["end"] = time.perf_counter()

    dm = datamodule(root, cache, image_size)
    dm.setup()  # the cache is built before the clock starts (its one-off cost is measured above)
    plain_loader = dm.train_dataloader

    def train_dataloader() -> ResumableDataLoader:
        loader = plain_loader()
        loader.__class__ = TimedLoader  # same object and state, timed iteration
        return loader

    dm.train_dataloader = train_dataloader  # type: ignore[method-assign]
    seed_everything(0, verbose=False)
    model = GANModule(DCGANGenerator(64, image_size, 3, 32), DCGANDiscriminator(image_size, 3, 32))
    trainer = Trainer(max_steps=steps, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                      enable_model_summary=False, accelerator="cpu", devices=1, callbacks=[EndTime()])
    trainer.fit(model, dm)
    total = clock["end"] - clock["first"]  # the training loop only: no set-up, no teardown
    return {"loop_s": total, "wait_s": clock["waited"], "share": clock["waited"] / total, "step_ms": 1000 * total / steps}


def main(
    images: int = 2000,
    source_size: int = 64,
    image_size: int = 32,
    steps: int = 100,
    repeats: int = 3,
    folder: Optional[str] = None,
    output: Optional[str] = None,
) -> dict[str, Any]:
    warnings.filterwarnings("ignore")
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    torch.set_num_threads(1)
    wall = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(folder) if folder else Path(tmp) / "images"
        if not any(root.glob("*.jpg")):
            write_jpegs(root, images, source_size)
        rates: dict[str, list[float]] = {"off": [], "memory": []}
        builds: dict[str, list[float]] = {"off": [], "memory": []}
        waits: dict[str, list[dict[str, float]]] = {"off": [], "memory": []}
        for repeat in range(repeats):
            for cache in (("off", "memory") if repeat % 2 == 0 else ("memory", "off")):
                rate, build = loader_throughput(root, cache, image_size)
                rates[cache].append(rate)
                builds[cache].append(build)
                waits[cache].append(data_wait_share(root, cache, image_size, steps))
    med = statistics.median
    ratio = med([c / o for c, o in zip(rates["memory"], rates["off"])])
    result = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch threads 1",
        "images": images, "source_size": source_size, "image_size": image_size, "steps": steps, "repeats": repeats,
        "per_sample_images_per_s": med(rates["off"]), "cached_images_per_s": med(rates["memory"]),
        "throughput_ratio": ratio, "cache_build_s": med(builds["memory"]),
        "per_sample_wait_share": med(w["share"] for w in waits["off"]),
        "cached_wait_share": med(w["share"] for w in waits["memory"]),
        "per_sample_step_ms": med(w["step_ms"] for w in waits["off"]),
        "cached_step_ms": med(w["step_ms"] for w in waits["memory"]),
        "wall_s": time.perf_counter() - wall,
    }
    print(f"{images} JPEGs {source_size}x{source_size} -> {image_size}x{image_size}, {result['machine']}, "
          f"median of {repeats}")
    print(f"loader throughput: per-sample PIL {result['per_sample_images_per_s']:.0f} images/s, cached "
          f"{result['cached_images_per_s']:.0f} images/s, ratio {ratio:.1f}x (cache built once in {result['cache_build_s']:.2f} s)")
    print(f"DCGAN-32 step ({steps} steps): waiting for data {100 * result['per_sample_wait_share']:.1f} % of "
          f"{result['per_sample_step_ms']:.1f} ms per step with per-sample PIL, {100 * result['cached_wait_share']:.1f} % "
          f"of {result['cached_step_ms']:.1f} ms with the cache")
    print(f"wall time {result['wall_s']:.0f} s")
    if output:
        Path(output).write_text(json.dumps(result, indent=1) + "\n")
    return result


if __name__ == "__main__":
    from jsonargparse import CLI

    CLI(main, as_positional=False)
