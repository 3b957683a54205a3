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

from gan_lightning.config_repr import ConfigRepr
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
    #: Class labels of ``real`` and ``fake`` for conditional networks (None otherwise).
    real_labels: Optional[Tensor] = None
    fake_labels: Optional[Tensor] = None
    #: D's scores on ``real`` from the update itself; set when ``real`` requires grad, so that a penalty on
    #: real inputs (R1) reuses that forward pass instead of running the discriminator again.
    real_scores: Optional[Tensor] = None
    fake_scores: Optional[Tensor] = None

    def score(self, x: Tensor, labels: Optional[Tensor] = None) -> Tensor:
        """The discriminator's scores on ``x`` (given ``labels`` for a conditional discriminator)."""
        return self.discriminator(x) if labels is None else self.discriminator(x, labels)


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


class Regularizer(ConfigRepr):
    """Base class: ``penalty(ctx)`` returns the unweighted term; the module adds ``weight * every * penalty``."""

    phase: str = "discriminator"
    #: "real" or "fake" when the penalty differentiates D's scores on that batch with respect to its input:
    #: the module then makes that batch require grad before the update's own forward pass, and passes the
    #: scores in the context, so no second forward pass is needed.
    input_gradient_of: Optional[str] = None
    #: The penalty compares the two halves of the generator batch pairwise (mode seeking): in a conditional
    #: GAN the module then gives each pair the same class.
    pairs_halves: bool = False

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
        return _unit_norm_penalty(ctx, x_hat, self.one_sided)


def _unit_norm_penalty(ctx: RegularizerContext, x_hat: Tensor, one_sided: bool = False) -> Tensor:
    """E[(||grad D(x_hat)|| - 1)^2] (or its one-sided form); conditional critics judge x_hat with the real labels."""
    grad = input_gradients(ctx.score(x_hat, ctx.real_labels), x_hat, ctx.grad_scale)
    excess = _norm_per_sample(grad) - 1.0
    if one_sided:
        excess = excess.clamp(min=0)
    return excess.pow(2).mean()


class DRAGANPenalty(Regularizer):
    """DRAGAN (Kodali et al. 2017, "On Convergence and Stability of GANs", Sec. 4): a unit-gradient-norm
    penalty in a neighbourhood of the real data, which discourages the sharp gradients around real
    samples that go with mode collapse.

    Points are x + alpha * delta with delta = ``perturbation`` * std(x) * U[0, 1) per element and alpha ~
    U[0, 1) per sample; the paper's defaults are weight 10 and perturbation 0.5 (std over the whole batch).
    """

    def __init__(self, weight: float = 10.0, every: int = 1, perturbation: float = 0.5, one_sided: bool = False):
        super().__init__(weight, every)
        if perturbation <= 0:
            raise ConfigurationError(f"DRAGANPenalty: perturbation must be positive, got {perturbation}")
        self.perturbation = perturbation
        self.one_sided = one_sided

    def penalty(self, ctx: RegularizerContext) -> Tensor:
        real = ctx.real.detach()
        delta = self.perturbation * real.std() * torch.rand_like(real)
        alpha = torch.rand((real.shape[0],) + (1,) * (real.dim() - 1), device=real.device, dtype=real.dtype)
        x_hat = (real + alpha * delta).requires_grad_(True)
        return _unit_norm_penalty(ctx, x_hat, self.one_sided)


class _SquaredGradientNorm(Regularizer):
    """gamma/2 * E[||grad D(x)||^2] on one batch: the zero-centred penalties of Mescheder et al. 2018."""

    def __init__(self, gamma: float = 10.0, every: int = 1):
        super().__init__(weight=gamma / 2, every=every)
        self.gamma = gamma

    def penalty(self, ctx: RegularizerContext) -> Tensor:
        x, labels, scores = (
            (ctx.real, ctx.real_labels, ctx.real_scores) if self.input_gradient_of == "real" else (ctx.fake, ctx.fake_labels, ctx.fake_scores)
        )
        if scores is None or not x.requires_grad:  # called on its own: run the discriminator here
            x = x.detach().requires_grad_(True)
            scores = ctx.score(x, labels)
        grad = input_gradients(scores, x, ctx.grad_scale)
        return grad.flatten(1).pow(2).sum(dim=1).mean()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(gamma={self.gamma!r}, every={self.every!r})"


class R1Penalty(_SquaredGradientNorm):
    """R1 (Mescheder et al. 2018, "Which Training Methods for GANs do actually Converge?", Eq. 9):
    gamma/2 * E_real ||grad D(x)||^2. Penalising D's gradient on real data makes the game locally
    convergent. gamma 10 is the paper's common setting; StyleGAN2 runs it lazily (``every: 16``, Karras
    et al. 2020), the weight then being multiplied by 16.
    """

    input_gradient_of = "real"


class R2Penalty(_SquaredGradientNorm):
    """R2 (Mescheder et al. 2018, Eq. 10): gamma/2 * E_fake ||grad D(x)||^2, the same penalty on generated samples."""

    input_gradient_of = "fake"


class ModeSeekingRegularizer(Regularizer):
    """Mode seeking (Mao et al. 2019, "Mode Seeking GANs for Diverse Image Synthesis", Eq. 3), for the generator.

    The batch's two halves are pairs (z1, z2): the ratio r = mean|G(z1) - G(z2)| / mean|z1 - z2| is large when
    distinct latents give distinct samples, and collapses towards 0 when G maps many latents to one mode.
    The penalty is 1 / (r + eps), as in the paper's code (weight 1, eps 1e-5). In a conditional GAN both samples
    of a pair have the same class (the module copies the first half's labels to the second half when this is due).
    """

    phase = "generator"
    pairs_halves = True

    def __init__(self, weight: float = 1.0, every: int = 1, eps: float = 1e-5):
        super().__init__(weight, every)
        self.eps = eps

    def penalty(self, ctx: RegularizerContext) -> Tensor:
        half = ctx.fake.shape[0] // 2
        if half < 1:
            raise ConfigurationError("ModeSeekingRegularizer needs a batch of at least 2 samples")
        fake, z = ctx.fake.float(), ctx.latent.float()
        sample_distance = (fake[:half] - fake[half : 2 * half]).abs().mean()
        latent_distance = (z[:half] - z[half : 2 * half]).abs().mean()
        return 1.0 / (sample_distance / latent_distance + self.eps)
