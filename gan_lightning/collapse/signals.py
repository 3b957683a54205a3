"""Cheap signals of mode collapse, as pure functions on tensors (used by ``ModeCollapseMonitor``).

Each function takes a few hundred generated and real samples (or their features) and returns a tensor, so it can
be tested on small hand-made inputs and run on any device. The signals and where they come from:

- :func:`diversity_ratio`: mean pairwise distance of generated samples over that of real samples. A collapsed
  generator maps many latents to near-identical samples, so the ratio falls towards 0 (the symptom Salimans et al.
  2016, Sec. 3.2, counter with minibatch discrimination; the fixed-noise version of "samples look the same").
- :func:`coverage`: the share of real samples whose k-NN ball (radius: distance to their k-th nearest real
  neighbour) holds at least one generated sample (Naeem et al. 2020, "Reliable Fidelity and Diversity Metrics for
  Generative Models", Eq. 4; the k-NN ball estimate of the real manifold is Kynkäänniemi et al. 2019). Dropped
  modes leave their real samples uncovered, whatever the quality of the kept ones.
- :func:`mode_histogram` with :func:`nearest_mode` (known mixture modes) or a classifier's labels:
  :func:`modes_covered` and :func:`histogram_kl`, KL(generated histogram || data histogram).
- :func:`discriminator_wins`: D classifies (almost) every real and fake sample correctly; with the generator's
  gradient norm (:func:`gradient_norm`) vanishing, the generator receives no useful signal
  (Arjovsky & Bottou 2017, "Towards Principled Methods for Training GANs", Sec. 2.2).
"""

from __future__ import annotations

import math
from typing import Optional

import torch
from torch import Tensor


def _flat(x: Tensor) -> Tensor:
    return x.detach().flatten(1).float()


def mean_pairwise_distance(x: Tensor) -> Tensor:
    """Mean Euclidean distance over the N(N-1) ordered pairs of distinct samples (rows of ``x``, flattened)."""
    x = _flat(x)
    n = x.shape[0]
    if n < 2:
        raise ValueError("mean_pairwise_distance needs at least 2 samples")
    return torch.cdist(x, x).sum() / (n * (n - 1))


def diversity_ratio(fake: Tensor, real: Tensor, real_distance: Optional[Tensor] = None) -> Tensor:
    """Mean pairwise distance of ``fake`` over that of ``real``: ~1 for matching distributions, ~0 when collapsed.

    ``real_distance`` (``mean_pairwise_distance(real)``) can be passed to avoid recomputing it for a fixed real set.
    """
    reference = mean_pairwise_distance(real) if real_distance is None else real_distance
    return mean_pairwise_distance(fake) / reference.clamp(min=1e-12)


def knn_radii(real: Tensor, k: int = 5) -> Tensor:
    """Distance from each real sample to its k-th nearest other real sample (Kynkäänniemi et al. 2019, Sec. 3)."""
    real = _flat(real)
    if not 1 <= k < real.shape[0]:
        raise ValueError(f"k must be in [1, {real.shape[0] - 1}] for {real.shape[0]} real samples, got {k}")
    distances = torch.cdist(real, real)
    # The smallest distance of each row is the sample itself (0), so the k-th neighbour is entry k.
    return distances.kthvalue(k + 1, dim=1).values


def coverage(fake: Tensor, real: Tensor, k: int = 5, radii: Optional[Tensor] = None) -> Tensor:
    """Share of real samples with a generated sample inside their k-NN ball (Naeem et al. 2020, Eq. 4).

    1 when every region of the real data receives generated samples, ~0 when the generated samples sit in one
    place. ``radii`` (``knn_radii(real, k)``) can be passed to avoid recomputing them for a fixed real set.
    """
    real, fake = _flat(real), _flat(fake)
    radii = knn_radii(real, k) if radii is None else radii
    nearest_fake = torch.cdist(real, fake).min(dim=1).values
    return (nearest_fake <= radii).float().mean()


def nearest_mode(points: Tensor, modes: Tensor, radius: Optional[float] = None) -> Tensor:
    """Index of each point's nearest mode; -1 for points farther than ``radius`` from every mode."""
    distances = torch.cdist(_flat(points), modes.to(points.device).float())
    nearest_distance, index = distances.min(dim=1)
    if radius is not None:
        index = torch.where(nearest_distance <= radius, index, torch.full_like(index, -1))
    return index


def default_mode_radius(modes: Tensor) -> float:
    """Half the smallest distance between two modes: a point counts for a mode only inside that mode's own ball."""
    if len(modes) < 2:
        return math.inf
    distances = torch.cdist(modes.float(), modes.float())
    distances.fill_diagonal_(math.inf)
    return float(distances.min()) / 2


def mode_histogram(assignments: Tensor, num_modes: int) -> Tensor:
    """Share of the assigned samples per mode (labels < 0, i.e. unassigned, are ignored); all zeros if none is assigned."""
    assigned = assignments[assignments >= 0]
    counts = torch.bincount(assigned, minlength=num_modes)[:num_modes].float()
    return counts / counts.sum().clamp(min=1)


def modes_covered(histogram: Tensor, reference: Tensor, min_fraction: float = 0.1) -> Tensor:
    """Number of modes of the data (``reference`` share > 0) whose generated share is at least ``min_fraction`` of
    their data share: a handful of stray samples does not make a mode covered."""
    present = reference > 0
    return ((histogram >= min_fraction * reference) & present & (histogram > 0)).sum()


def histogram_kl(histogram: Tensor, reference: Tensor, eps: float = 1e-6) -> Tensor:
    """KL(histogram || reference) in nats, with 0 log 0 = 0; ``reference`` is smoothed by ``eps`` so a mode missing
    from the data cannot make it infinite. An empty histogram (nothing assigned) scores as one unlikely mode."""
    p, q = histogram.float(), reference.float().to(histogram.device)
    q = (q + eps) / (q + eps).sum()
    if float(p.sum()) == 0:  # no sample near any mode: as bad as all samples in the least likely mode
        return -q.min().log()
    nonzero = p > 0
    return (p[nonzero] * (p[nonzero] / q[nonzero]).log()).sum()


def discriminator_wins(accuracy_real: Tensor, accuracy_fake: Tensor, threshold: float = 0.99) -> Tensor:
    """True when D is right on at least ``threshold`` of both the real and the fake batch (bool tensor)."""
    return (accuracy_real >= threshold) & (accuracy_fake >= threshold)


def gradient_norm(loss: Tensor, parameters: list[Tensor]) -> Tensor:
    """Total L2 norm of d loss / d parameters, computed with ``autograd.grad`` so that ``.grad`` is untouched."""
    grads = torch.autograd.grad(loss, parameters, allow_unused=True)
    norms = [g.detach().float().norm() for g in grads if g is not None]
    if not norms:
        return torch.zeros(())
    return torch.linalg.vector_norm(torch.stack(norms))
