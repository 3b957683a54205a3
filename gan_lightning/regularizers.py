"""Regularizers: extra terms added to one network's loss in its own update.

A regularizer is one class: it names the phase it belongs to (``"discriminator"`` or ``"generator"``),
returns its unweighted penalty from a :class:`RegularizerContext`, and may run lazily every ``every``
steps with its weight multiplied by ``every`` (Karras et al. 2020, "Analyzing and Improving the Image
Quality of StyleGAN", Sec. 4, "lazy regularization"). ``GANModule(regularizers=[...])`` composes them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from torch import Tensor, nn

from gan_lightning.errors import ConfigurationError


@dataclass
class RegularizerContext:
    """What a regularizer may look at during one update."""

    discriminator: nn.Module
    generator: nn.Module
    real: Tensor
    fake: Tensor
    latent: Tensor
    #: Current loss scale of a 16-bit GradScaler (a tensor, no host sync), or None.
    grad_scale: Optional[Tensor] = None


def input_gradients(outputs: Tensor, inputs: Tensor, grad_scale: Optional[Tensor] = None) -> Tensor:
    """d(sum outputs)/d(inputs) with a graph for double backward, safe under 16-bit autocast.

    Under float16 the unscaled gradients underflow to zero, so the outputs are multiplied by the loss scale
    before ``autograd.grad`` and the result divided by it afterwards (PyTorch AMP examples, "Gradient
    penalty"). The scale is a tensor, so no host sync happens.
    """
    total = outputs.float().sum()
    if grad_scale is not None:
        total = total * grad_scale
    (grad,) = torch.autograd.grad(total, inputs, create_graph=True)
    grad = grad.float()
    if grad_scale is not None:
        grad = grad / grad_scale
    return grad


def _norm_per_sample(grad: Tensor) -> Tensor:
    # eps inside the sqrt: the gradient of a norm at 0 is NaN (pytorch#2534)
    return (grad.flatten(1).pow(2).sum(dim=1) + 1e-12).sqrt()


class Regularizer:
    """Base class: ``penalty(ctx)`` returns the unweighted term; the module adds ``weight * every * penalty``."""

    phase: str = "discriminator"

    def __init__(self, weight: float = 1.0, every: int = 1):
        if every < 1:
            raise ConfigurationError(f"{type(self).__name__}: every must be >= 1, got {every}")
        self.weight = weight
        self.every = every

    def is_due(self, step: int) -> bool:
        return step % self.every == 0

    def penalty(self, ctx: RegularizerContext) -> Tensor:
        raise NotImplementedError

    def __call__(self, ctx: RegularizerContext) -> Tensor:
        return self.penalty(ctx) * (self.weight * self.every)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({args})"


class GradientPenalty(Regularizer):
    """WGAN-GP penalty E[(||grad D(x_hat)|| - 1)^2] on random interpolates of real and fake samples.

    Gulrajani et al. 2017, "Improved Training of Wasserstein GANs", Algorithm 1 (weight 10).
    ``one_sided=True`` penalises only norms above 1, max(0, ||grad|| - 1)^2 (their Sec. 4 discusses it;
    Petzka et al. 2018 argue for it).
    """

    def __init__(self, weight: float = 10.0, every: int = 1, one_sided: bool = False):
        super().__init__(weight, every)
        self.one_sided = one_sided

    def penalty(self, ctx: RegularizerContext) -> Tensor:
        real, fake = ctx.real.detach(), ctx.fake.detach()
        eps = torch.rand((real.shape[0],) + (1,) * (real.dim() - 1), device=real.device, dtype=real.dtype)
        x_hat = (eps * real + (1 - eps) * fake).requires_grad_(True)
        grad = input_gradients(ctx.discriminator(x_hat), x_hat, ctx.grad_scale)
        excess = _norm_per_sample(grad) - 1.0
        if self.one_sided:
            excess = excess.clamp(min=0)
        return excess.pow(2).mean()
