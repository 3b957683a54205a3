"""Exponential moving average of the generator's weights.

Averaging the generator over its recent iterates gives better samples and FID than the last iterate
(Yazıcı et al. 2019, "The Unusual Effectiveness of Averaging in GAN Training"; Karras et al. 2018 and
BigGAN use decay 0.999-0.9999). Before ``start_step`` the average simply tracks the weights, so that
it does not remember the random initialisation (Yazıcı et al. start averaging after a warm-up). The default
start step is 0: the initialisation then fades as decay^t (1/e after 1,000 steps at 0.999); set
``ema_start_step`` to a warm-up (the shipped mixture configs use half the run) to drop it at once.

Buffers (BatchNorm running statistics, spectral-norm power-iteration vectors) are copied, not averaged:
they are statistics of the current weights, and an average of them does not describe the averaged
network any better (StyleGAN2-ADA copies them the same way).
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from gan_lightning.runtime import internals

from gan_lightning.errors import ConfigurationError


def make_ema_copy(generator: nn.Module) -> nn.Module:
    """A frozen copy of ``generator`` that only :func:`update_ema` changes."""
    ema = copy.deepcopy(generator)
    ema.requires_grad_(False)
    return ema


def check_ema_options(decay: float, start_step: int) -> None:
    if not 0.0 < decay < 1.0:
        raise ConfigurationError(f"ema_decay must be in (0, 1), e.g. 0.999; got {decay}")
    if start_step < 0:
        raise ConfigurationError(f"ema_start_step must be >= 0, got {start_step}")


@torch.no_grad()
def update_ema(ema: nn.Module, generator: nn.Module, decay: float, step: int, start_step: int = 0) -> None:
    """ema <- decay * ema + (1 - decay) * generator, from ``start_step`` on; a plain copy before it.

    One fused ``_foreach`` call per step (:mod:`gan_lightning.runtime.internals`) and no host synchronisation.
    """
    ema_params = list(ema.parameters())
    params = [p.detach() for p in generator.parameters()]
    if step < start_step:
        internals.foreach_copy_(ema_params, params)
    else:
        internals.foreach_lerp_(ema_params, params, 1.0 - decay)
    ema_buffers = list(ema.buffers())
    if ema_buffers:
        internals.foreach_copy_(ema_buffers, list(generator.buffers()))
