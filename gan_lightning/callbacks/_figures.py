"""Matplotlib figures without pyplot: no global figure registry, no backend switching, safe in any thread."""

from __future__ import annotations

from pathlib import Path
import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure


def new_figure(width: float, height: float, ncols: int = 1) -> tuple[Figure, list]:
    """A figure drawn by the Agg canvas, with ``ncols`` axes side by side."""
    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, ncols, squeeze=False)[0]
    return fig, list(axes)


def figure_to_tensor(fig: Figure) -> torch.Tensor:
    """The rendered figure as a ``(3, H, W)`` float tensor in [0, 1], the format loggers take."""
    fig.canvas.draw()
    rgba = np.asarray(fig.canvas.buffer_rgba())
    return torch.from_numpy(rgba[..., :3].copy()).permute(2, 0, 1).float() / 255.0


def save_figure(fig: Figure, path: Path) -> Path:
    """Write the figure as a PNG, creating its directory."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path
