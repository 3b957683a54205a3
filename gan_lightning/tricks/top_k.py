"""Top-k training: only the generator's best samples update it.

Sinha et al. 2020, "Top-k Training of GANs: Improving GAN Performance by Throwing Away Bad Samples": in the
generator update, the gradient of the samples the critic scores worst points away from the data manifold and
hurts; the generator loss is therefore taken over the k fakes with the highest scores only. k starts at the batch
size B and decays by ``gamma`` per epoch, k = max(int(B * gamma ** epoch), int(B * min_fraction)); the paper's
defaults are gamma = 0.99 and a floor of nu = 0.5 of the batch (also the defaults of Mimicry's ``TopKGenerator``).
``GANModule(top_k=TopK())`` applies it. "Highest score" means "most real" for every loss of this project (BCE
logits, LSGAN, hinge, Wasserstein critics all score real samples higher).
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from gan_lightning.config_repr import ConfigRepr
from gan_lightning.errors import ConfigurationError


class TopK(ConfigRepr):
    """The k schedule and the selection.

    Args:
        gamma: decay of k per epoch (paper: 0.99).
        min_fraction: the floor of k as a fraction of the batch, nu (paper: 0.5).
        decay_every_steps: decay per this many generator steps instead of per epoch; for data sets so small
            (or so large) that an epoch is not the paper's unit (a CIFAR-10 epoch at batch 64 is ~780 steps).
    """

    def __init__(self, gamma: float = 0.99, min_fraction: float = 0.5, decay_every_steps: Optional[int] = None):
        if not 0.0 < gamma <= 1.0:
            raise ConfigurationError(f"TopK: gamma must be in (0, 1], got {gamma}")
        if not 0.0 < min_fraction <= 1.0:
            raise ConfigurationError(f"TopK: min_fraction must be in (0, 1], got {min_fraction}")
        if decay_every_steps is not None and decay_every_steps < 1:
            raise ConfigurationError(f"TopK: decay_every_steps must be >= 1 or null (per epoch), got {decay_every_steps}")
        self.gamma, self.min_fraction, self.decay_every_steps = gamma, min_fraction, decay_every_steps

    def k(self, batch_size: int, epoch: int, step: int) -> int:
        """How many fakes update G at this epoch / generator step (a Python int: no host sync)."""
        decays = epoch if self.decay_every_steps is None else step // self.decay_every_steps
        floor = max(1, int(batch_size * self.min_fraction))
        return min(batch_size, max(int(batch_size * self.gamma**decays), floor))

    @staticmethod
    def select(fake_scores: Tensor, ranking: Tensor, k: int) -> Tensor:
        """The rows of ``fake_scores`` whose ``ranking`` (one adversarial score per sample) is among the k highest."""
        if k >= fake_scores.shape[0]:
            return fake_scores
        index = torch.topk(ranking.reshape(ranking.shape[0], -1)[:, 0].float(), k, dim=0, sorted=False).indices
        return fake_scores.index_select(0, index)
