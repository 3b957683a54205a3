"""Mode-coverage metrics as defined in PacGAN / VEEGAN: on the 2D Gaussian mixtures (ring8, grid25) and, from a
classifier's labels, on images (Stacked MNIST / Stacked Digits).

Mixtures: a sample is *high quality* if it lies within 3 standard deviations of its nearest mode; a mode is
*captured* if at least one high-quality sample is nearest to it; the *reverse KL* is KL(histogram of the
high-quality samples over the modes || uniform over the modes) (Srivastava et al. 2017, "VEEGAN"; Lin et al. 2018,
"PacGAN"). Images: every sample counts for the mode its classifier label names (:func:`classifier_mode_coverage`).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

#: The scores of :func:`mode_coverage`, in report order.
MODE_METRICS = ("modes_captured", "high_quality_percent", "reverse_kl")


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


def classifier_mode_coverage(labels: Tensor, num_modes: int) -> dict[str, float]:
    """Mode counts from a classifier's labels, as on Stacked MNIST (Metz et al. 2017; VEEGAN; PacGAN, Table 2).

    ``modes_captured``: modes with at least one sample; ``reverse_kl``: KL(generated mode histogram || uniform over
    the ``num_modes`` modes), nats (0 when every mode gets the same share, log(num_modes) when one mode gets all).
    """
    from gan_lightning.collapse.signals import histogram_kl, mode_histogram

    labels = labels.detach().long().cpu()
    if labels.dim() != 1 or len(labels) == 0:
        raise ValueError(f"labels must be a non-empty vector of mode indices, got shape {tuple(labels.shape)}")
    histogram = mode_histogram(labels, num_modes).double()
    return {
        "modes_captured": float((histogram > 0).sum()),
        "reverse_kl": float(histogram_kl(histogram, torch.full((num_modes,), 1.0 / num_modes, dtype=torch.float64))),
    }
