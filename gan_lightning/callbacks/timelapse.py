"""An animated GIF of the whole training from the saved sample grids, one frame per grid, step counter on top.

The callback assembles it at the end of fit; :func:`make_timelapse` (and ``scripts/make_timelapse.py``)
does the same on demand from any folder of ``step_NNNNNN.png`` files, e.g. for a run still in progress.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Optional, Union

from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.utilities import rank_zero_warn
from PIL import Image, ImageDraw, ImageFont

from gan_lightning.callbacks._run_dir import resolve_run_dir

_STEP_FILE = re.compile(r"step_(\d+)\.png$")


def sample_files(samples_dir: Union[str, Path]) -> list[tuple[int, Path]]:
    """``(step, path)`` of every ``step_NNNNNN.png`` directly in ``samples_dir``, in step order."""
    found = []
    for path in Path(samples_dir).glob("step_*.png"):
        match = _STEP_FILE.search(path.name)
        if match:
            found.append((int(match.group(1)), path))
    return sorted(found)


def _font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)  # scalable font, Pillow >= 10.1 with FreeType
    except TypeError:
        return ImageFont.load_default()


def _frame_with_counter(path: Path, step: int, size: Optional[tuple[int, int]]) -> Image.Image:
    """The grid with a white banner above it that says ``step N``."""
    with Image.open(path) as png:
        grid = png.convert("RGB")
    if size is not None and grid.size != size:
        grid = grid.resize(size, Image.Resampling.BILINEAR)
    banner = max(14, grid.height // 14)
    frame = Image.new("RGB", (grid.width, grid.height + banner), "white")
    frame.paste(grid, (0, banner))
    draw = ImageDraw.Draw(frame)
    draw.text((4, banner // 2), f"step {step}", fill="black", font=_font(int(banner * 0.75)), anchor="lm")
    return frame


def make_timelapse(
    samples_dir: Union[str, Path],
    output: Optional[Union[str, Path]] = None,
    frame_ms: int = 200,
    last_frame_ms: int = 1500,
) -> Path:
    """Assemble the ``step_NNNNNN.png`` grids of ``samples_dir`` into an animated GIF.

    Args:
        samples_dir: folder of sample grids, e.g. ``runs/default/version_0/samples``.
        output: the GIF to write (default: ``timelapse.gif`` next to ``samples_dir``).
        frame_ms: how long each frame shows, in milliseconds.
        last_frame_ms: how long the final frame stays before the loop restarts.

    Returns:
        the path of the GIF; it has exactly one frame per grid.
    """
    files = sample_files(samples_dir)
    if not files:
        raise FileNotFoundError(f"No step_NNNNNN.png sample grids in {str(samples_dir)!r}.")
    out = Path(output) if output is not None else Path(samples_dir).parent / "timelapse.gif"
    out.parent.mkdir(parents=True, exist_ok=True)
    with Image.open(files[0][1]) as first:
        first_size = first.size
    frames = [_frame_with_counter(path, step, first_size) for step, path in files]
    durations = [frame_ms] * (len(frames) - 1) + [last_frame_ms]
    # The step counter differs on every frame, so Pillow cannot merge frames: one frame per grid.
    frames[0].save(out, save_all=True, append_images=frames[1:], duration=durations, loop=0, optimize=False)
    return out


class TimelapseCallback(Callback):
    """At the end of fit, turn ``<run dir>/<samples_dirname>/step_*.png`` into ``<run dir>/<filename>``.

    Pair it with :class:`~gan_lightning.callbacks.SampleGridCallback` (same ``dirname``). Rank 0 only.
    """

    def __init__(self, samples_dirname: str = "samples", filename: str = "timelapse.gif", frame_ms: int = 200, last_frame_ms: int = 1500):
        self.samples_dirname = samples_dirname
        self.filename = filename
        self.frame_ms = frame_ms
        self.last_frame_ms = last_frame_ms
        self.run_dir: Optional[Path] = None
        self.output: Optional[Path] = None

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if stage == "fit":
            self.run_dir = resolve_run_dir(trainer)  # a broadcast: every rank calls it here

    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not trainer.is_global_zero or self.run_dir is None:
            return
        samples_dir = self.run_dir / self.samples_dirname
        if not sample_files(samples_dir):
            rank_zero_warn(f"TimelapseCallback: no sample grids in {samples_dir}; add SampleGridCallback to get a GIF.")
            return
        self.output = make_timelapse(samples_dir, self.run_dir / self.filename, self.frame_ms, self.last_frame_ms)
