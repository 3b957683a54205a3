"""Mode-coverage metrics of the 2D Gaussian mixtures (ring8, grid25), as defined in PacGAN / VEEGAN.

A sample is *high quality* if it lies within 3 standard deviations of its nearest mode; a mode is *captured*
if at least one high-quality sample is nearest to it; the *reverse KL* is KL(histogram of the high-quality
samples over the modes || uniform over the modes) (Srivastava et al. 2017, "VEEGAN"; Lin et al. 2018, "PacGAN").
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def mode_coverage(points: Tensor, modes: Tensor, std: float) -> dict[str, float]:
    """``modes_captured`` (count), ``high_quality_percent`` (0-100) and ``reverse_kl`` (nats; inf if no sample is
    high quality, since the histogram is then undefined)."""
    points, modes = points.detach().double().cpu(), modes.double().cpu()
    if points.dim() != 2 or points.shape[1] != modes.shape[1]:
        raise ValueError(f"points must have shape (N, {modes.shape[1]}), got {tuple(points.shape)}")
    distances = torch.cdist(points, modes)
    nearest_distance, nearest_mode = distances.min(dim=1)
    high_quality = nearest_distance <= 3 * std
    counts = torch.bincount(nearest_mode[high_quality], minlength=len(modes)).double()
    num_hq = int(counts.sum())
    if num_hq == 0:
        reverse_kl = math.inf
    else:
        p = counts / num_hq
        nonzero = p > 0  # 0 log 0 = 0
        reverse_kl = float((p[nonzero] * (p[nonzero] * len(modes)).log()).sum())
    return {
        "modes_captured": float((counts > 0).sum()),
        "high_quality_percent": 100.0 * num_hq / max(1, len(points)),
        "reverse_kl": reverse_kl,
    }
