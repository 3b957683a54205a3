"""FID, IS, KID and precision/recall from features, computed by torch-fidelity's own reference functions.

- FID: Fréchet distance between Gaussians fitted to the features (Heusel et al. 2017, "GANs trained by a two
  time-scale update rule converge to a local Nash equilibrium").
- IS: exp E[KL(p(y|x) || p(y))] over ``is_splits`` splits (Salimans et al. 2016, "Improved techniques for training GANs").
- KID: unbiased MMD² with a cubic polynomial kernel, averaged over random subsets (Bińkowski et al. 2018,
  "Demystifying MMD GANs").
- Precision/recall: k-nearest-neighbour manifolds (Kynkäänniemi et al. 2019, "Improved precision and recall
  metric for assessing generative models").

Calling torch-fidelity's functions on our features (rather than re-deriving the formulas) is what makes the
scores equal to ``torch_fidelity.calculate_metrics`` on the same images; our code only decides which samples are
fed in (sharded across ranks, real features cached).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Optional

import numpy as np
import torch

from gan_lightning.errors import ConfigurationError
from gan_lightning.metrics.features import Features

IMAGE_METRICS = ("fid", "is", "kid", "pr")


@dataclass
class ImageMetricSettings:
    """Settings of the estimators (torch-fidelity's defaults); written into the protocol record."""

    is_splits: int = 10
    kid_subsets: int = 100
    kid_subset_size: int = 1000
    pr_neighborhood: int = 3
    rng_seed: int = 2020  # torch-fidelity's seed for IS shuffling and KID subsets

    def effective(self, num_fake: int, num_real: int) -> "ImageMetricSettings":
        """KID subsets cannot be larger than either set: shrink them (and say so in the record)."""
        return ImageMetricSettings(
            self.is_splits, self.kid_subsets, min(self.kid_subset_size, num_fake, num_real), self.pr_neighborhood, self.rng_seed
        )

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def check_metric_names(metrics: list[str]) -> list[str]:
    unknown = [m for m in metrics if m not in IMAGE_METRICS]
    if unknown:
        raise ConfigurationError(f"Unknown image metric(s) {unknown}; choose from {list(IMAGE_METRICS)}.")
    return list(metrics)


def fid_statistics(pool: torch.Tensor) -> dict[str, np.ndarray]:
    """Mean and covariance of pool features (what the real-statistics cache stores for FID)."""
    from torch_fidelity.metric_fid import fid_features_to_statistics

    return fid_features_to_statistics(pool.float().cpu())


def frechet_distance(stats_fake: dict[str, np.ndarray], stats_real: dict[str, np.ndarray]) -> float:
    from torch_fidelity.metric_fid import KEY_METRIC_FID, fid_statistics_to_metric

    return fid_statistics_to_metric(stats_fake, stats_real, verbose=False)[KEY_METRIC_FID]


def image_scores(
    fake: Features,
    real: Optional[Features],
    metrics: list[str],
    settings: ImageMetricSettings,
    real_fid_stats: Optional[dict[str, np.ndarray]] = None,
) -> dict[str, float]:
    """Scores of ``fake`` against ``real`` (features of the same extractor); keys: fid, is, is_std, kid, kid_std,
    precision, recall. IS needs logits and is skipped (absent) without them."""
    from torch_fidelity.metric_isc import isc_features_to_metric
    from torch_fidelity.metric_kid import kid_features_to_metric
    from torch_fidelity.metric_prc import prc_features_to_metric

    scores: dict[str, float] = {}
    if "fid" in metrics:
        stats_real = real_fid_stats if real_fid_stats is not None else fid_statistics(_need(real).pool)
        scores["fid"] = frechet_distance(fid_statistics(fake.pool), stats_real)
    if "is" in metrics and fake.logits is not None:
        out = isc_features_to_metric(fake.logits.float().cpu(), splits=settings.is_splits, shuffle=True, rng_seed=settings.rng_seed)
        scores["is"], scores["is_std"] = out["inception_score_mean"], out["inception_score_std"]
    if "kid" in metrics:
        out = kid_features_to_metric(
            fake.pool.float().cpu(),
            _need(real).pool.float().cpu(),
            kid_subsets=settings.kid_subsets,
            kid_subset_size=settings.kid_subset_size,
            rng_seed=settings.rng_seed,
            verbose=False,
        )
        scores["kid"], scores["kid_std"] = out["kernel_inception_distance_mean"], out["kernel_inception_distance_std"]
    if "pr" in metrics:
        out = prc_features_to_metric(
            fake.pool.float().cpu(), _need(real).pool.float().cpu(), prc_neighborhood=settings.pr_neighborhood, verbose=False
        )
        scores["precision"], scores["recall"] = out["precision"], out["recall"]
    return scores


def _need(real: Optional[Features]) -> Features:
    if real is None:
        raise ConfigurationError("KID and precision/recall need the real features, not only FID statistics.")
    return real
