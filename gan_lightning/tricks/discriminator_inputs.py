"""Transforms of what the discriminator sees: instance noise and label flipping.

A transform changes the batch the discriminator judges, never the data or the generator's output
elsewhere. ``discriminator_update`` runs in each discriminator update (on real and fake samples and
their labels); ``generator_update`` runs on the batch D judges in the generator update, for tricks
(instance noise) that change D's input distribution and must do so in both updates. ``GANModule(input_transforms=[...])``
applies them in order.
"""

from __future__ import annotations

from typing import NamedTuple, Optional

import torch
from torch import Tensor

from gan_lightning.config_repr import ConfigRepr
from gan_lightning.errors import ConfigurationError


class DiscriminatorBatch(NamedTuple):
    real: Tensor
    fake: Tensor
    real_labels: Optional[Tensor] = None
    fake_labels: Optional[Tensor] = None


class DiscriminatorInputTransform(ConfigRepr):
    """Base class: both methods default to the identity."""

    def discriminator_update(self, batch: DiscriminatorBatch, step: int) -> DiscriminatorBatch:
        return batch

    def generator_update(self, batch: DiscriminatorBatch, step: int) -> DiscriminatorBatch:
        return batch


class InstanceNoise(DiscriminatorInputTransform):
    """Gaussian noise on the discriminator's real and fake inputs, annealed linearly to zero.

    Noise makes the real and generated distributions overlap, so D cannot separate them perfectly and G
    keeps a useful gradient (Arjovsky & Bottou 2017, Sec. 3; Sønderby et al. 2017, "Amortised MAP Inference
    for Image Super-resolution", Sec. 3.1, which anneals it). The standard deviation at generator step t is
    ``std * max(0, 1 - t / anneal_steps)``; ``anneal_steps: null`` keeps it constant. It is added in the
    generator update too, since D was trained on noisy inputs. The default 0.1 is relative to data in [-1, 1].
    """

    def __init__(self, std: float = 0.1, anneal_steps: Optional[int] = 10_000):
        if std < 0:
            raise ConfigurationError(f"InstanceNoise: std must be >= 0, got {std}")
        if anneal_steps is not None and anneal_steps < 1:
            raise ConfigurationError(f"InstanceNoise: anneal_steps must be >= 1 or null, got {anneal_steps}")
        self.std = std
        self.anneal_steps = anneal_steps

    def std_at(self, step: int) -> float:
        if self.anneal_steps is None:
            return self.std
        return self.std * max(0.0, 1.0 - step / self.anneal_steps)

    def _noisy(self, x: Tensor, std: float) -> Tensor:
        return x + std * torch.randn_like(x)

    def discriminator_update(self, batch: DiscriminatorBatch, step: int) -> DiscriminatorBatch:
        std = self.std_at(step)
        if std == 0:
            return batch
        return batch._replace(real=self._noisy(batch.real, std), fake=self._noisy(batch.fake, std))

    generator_update = discriminator_update


class LabelFlipping(DiscriminatorInputTransform):
    """Flip the discriminator's targets for a random share of the pairs (real_i, fake_i).

    Swapping a real sample with a fake one (and their labels) is the same as flipping both targets, for
    every loss, so the trick needs no loss-specific code. A small ``probability`` (0.05 in the "GAN hacks"
    of Chintala et al. 2016) keeps D from becoming over-confident; it applies to D's updates only.
    """

    def __init__(self, probability: float = 0.05):
        if not 0.0 <= probability < 0.5:
            raise ConfigurationError(f"LabelFlipping: probability must be in [0, 0.5), got {probability}")
        self.probability = probability

    def discriminator_update(self, batch: DiscriminatorBatch, step: int) -> DiscriminatorBatch:
        if self.probability == 0:
            return batch
        real, fake = batch.real, batch.fake
        flip = torch.rand(real.shape[0], device=real.device) < self.probability
        mask = flip.view((-1,) + (1,) * (real.dim() - 1))
        swapped = DiscriminatorBatch(torch.where(mask, fake, real), torch.where(mask, real, fake))
        if batch.real_labels is not None and batch.fake_labels is not None:
            swapped = swapped._replace(
                real_labels=torch.where(flip, batch.fake_labels, batch.real_labels),
                fake_labels=torch.where(flip, batch.real_labels, batch.fake_labels),
            )
        return swapped
