"""Regularizers: extra terms added to one network's loss in its own update.

A regularizer is one class: it names the phase it belongs to (``"discriminator"`` or ``"generator"``),
returns its unweighted penalty from a :class:`RegularizerContext`, and may run lazily every ``every``
steps with its weight multiplied by ``every`` (Karras et al. 2020, "Analyzing and Improving the Image
Quality of StyleGAN", Sec. 4, "lazy regularization"). ``GANModule(regularizers=[...])`` composes them.
"""

from __future__ import annotations

import inspect
import math
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterator, Optional

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
    #: D's scores on ``real`` and ``fake`` from the discriminator update itself (None in the generator update),
    #: so that penalties on them (R1 on real inputs, LeCam, bCR) reuse that forward pass instead of running the
    #: discriminator again.
    real_scores: Optional[Tensor] = None
    fake_scores: Optional[Tensor] = None
    #: The update this context belongs to: ``"discriminator"`` or ``"generator"`` (a regularizer of phase
    #: ``"both"`` reads it).
    phase: str = "discriminator"
    #: The module's differentiable augmentation (``--model.augment``), or None. In the discriminator update
    #: ``real`` and ``fake`` are already augmented; in the generator update they are the plain samples.
    augment: Optional[Callable[[Tensor], Tensor]] = None

    def score(self, x: Tensor, labels: Optional[Tensor] = None) -> Tensor:
        """The discriminator's scores on ``x`` (given ``labels`` for a conditional discriminator)."""
        return self.discriminator(x) if labels is None else self.discriminator(x, labels)

    def generate(self, z: Tensor, labels: Optional[Tensor] = None) -> Tensor:
        """The generator's samples for latents ``z`` (given ``labels`` for a conditional generator)."""
        return self.generator(z) if labels is None else self.generator(z, labels)


_BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)


@contextmanager
def batchnorm_statistics_unchanged(module: nn.Module) -> Iterator[None]:
    """Extra forward passes inside normalise with their batch's statistics, as any train-mode pass does, but leave
    the BatchNorm running statistics of ``module`` alone.

    A regularizer's extra passes (zCR's perturbed latents) would otherwise update them once more per step than
    training without it, and the eval-mode generator (samples, evaluation) would drift with the regularizer's
    batches. Done with ``track_running_stats = False`` for the duration (PyTorch then passes no running statistics
    to the kernel), not by restoring the buffers afterwards: the CPU kernel keeps them for its backward pass."""
    norms = [m for m in module.modules() if isinstance(m, _BATCH_NORMS) and m.training and m.track_running_stats]
    for norm in norms:
        norm.track_running_stats = False
    try:
        yield
    finally:
        for norm in norms:
            norm.track_running_stats = True


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

    #: ``"discriminator"``, ``"generator"``, or ``"both"`` (called in both updates; ``ctx.phase`` says which).
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


# ---------------------------------------------------------------------------------------------------------------
# Regularizers for small data and for diversity: LeCam, consistency (bCR, zCR), nearest-neighbour entropy.


class StatefulRegularizer(Regularizer, nn.Module):
    """A regularizer that keeps state (tensors) across steps, as buffers of an ``nn.Module``.

    ``GANModule`` registers every such regularizer as a submodule, so its state moves with the module's device and
    is in the module's ``state_dict``: checkpoints, exact resume and the mode-collapse monitor's rollback carry it.
    """

    def __init__(self, weight: float = 1.0, every: int = 1):
        nn.Module.__init__(self)
        Regularizer.__init__(self, weight, every)

    __call__ = Regularizer.__call__  # the weighted penalty, not nn.Module's forward

    def __repr__(self) -> str:
        names = [n for n in inspect.signature(type(self).__init__).parameters if n != "self" and hasattr(self, n)]
        return f"{type(self).__name__}({', '.join(f'{n}={getattr(self, n)!r}' for n in names)})"


def _squared_difference(a: Tensor, b: Tensor) -> Tensor:
    """E_batch ||a - b||^2 over each sample's scores, in float32."""
    return (a.float() - b.float()).reshape(a.shape[0], -1).pow(2).sum(dim=1).mean()


class LeCamRegularizer(StatefulRegularizer):
    """LeCam regularization (Tseng et al. 2021, "Regularizing Generative Adversarial Networks under Limited
    Data", Eq. 3): R = E_x ||D(x) - alpha_F||^2 + E_z ||D(G(z)) - alpha_R||^2, where alpha_R and alpha_F are
    exponential moving averages (decay 0.99) of D's mean score on real and on fake samples. It keeps D's outputs
    on real and fake data from drifting apart, the failure of GANs trained on little data.

    Defaults follow the authors' code (google/lecam-gan): ``weight`` 0.3, their BigGAN CIFAR-10/100 setting
    (``--LC 0.3`` in ``biggan_cifar/scripts/lc-*.sh``; the paper uses a smaller weight with StyleGAN2), decay 0.99
    and ``one_sided=True``: only D(x) above alpha_F and D(G(z)) below alpha_R are penalised (their ``lecam_reg``
    applies a ReLU to both differences; ``one_sided=False`` is the paper's Eq. 3 as printed). As in their code the
    anchors are updated with the current batch before the penalty is taken, and the averages are zero-debiased
    (StyleGAN2 version: ``assign_moving_average(..., zero_debias=True)``), so the first anchors are the first
    batch's means. The scores are those of the discriminator update itself (no second forward pass); with
    ``--model.augment`` they are D's scores on the augmented batches, as in the paper's LeCam + DiffAugment runs.

    The anchors are buffers (``real_average``, ``fake_average``, ``average_weight``) in the module's state_dict.
    Under DDP the batch means are averaged over all ranks before each update, so every rank has the same anchors.
    """

    def __init__(self, weight: float = 0.3, every: int = 1, decay: float = 0.99, one_sided: bool = True):
        super().__init__(weight, every)
        if not 0.0 <= decay < 1.0:
            raise ConfigurationError(f"LeCamRegularizer: decay must be in [0, 1), got {decay}")
        self.decay, self.one_sided = decay, one_sided
        self.register_buffer("real_average", torch.zeros(()))
        self.register_buffer("fake_average", torch.zeros(()))
        # The average of a constant 1 under the same decay: dividing by it removes the bias of starting at 0.
        self.register_buffer("average_weight", torch.zeros(()))

    @torch.no_grad()
    def update(self, real_scores: Tensor, fake_scores: Tensor) -> None:
        """Move the averages towards this batch's mean scores (in place; no host sync).

        Under DDP the means are averaged over all ranks first (one all-reduce of two numbers), so every rank
        keeps the same anchors, those of the global batch, whatever the strategy.
        """
        means = torch.stack([real_scores.detach().float().mean(), fake_scores.detach().float().mean()])
        if torch.distributed.is_available() and torch.distributed.is_initialized() and torch.distributed.get_world_size() > 1:
            torch.distributed.all_reduce(means)
            means = means / torch.distributed.get_world_size()
        keep = self.decay
        self.real_average.mul_(keep).add_(means[0].to(self.real_average.dtype), alpha=1 - keep)
        self.fake_average.mul_(keep).add_(means[1].to(self.fake_average.dtype), alpha=1 - keep)
        self.average_weight.mul_(keep).add_(1 - keep)

    def anchors(self) -> tuple[Tensor, Tensor]:
        """(alpha_R, alpha_F): the debiased averages of D's mean real and fake scores (0 before the first update)."""
        weight = self.average_weight.float()
        safe = torch.where(weight > 0, weight, torch.ones_like(weight))
        return self.real_average.float() / safe, self.fake_average.float() / safe

    def penalty(self, ctx: RegularizerContext) -> Tensor:
        real_scores = ctx.real_scores if ctx.real_scores is not None else ctx.score(ctx.real, ctx.real_labels)
        fake_scores = ctx.fake_scores if ctx.fake_scores is not None else ctx.score(ctx.fake, ctx.fake_labels)
        self.update(real_scores, fake_scores)
        real_anchor, fake_anchor = self.anchors()
        real_gap = real_scores.float() - fake_anchor
        fake_gap = real_anchor - fake_scores.float()
        if self.one_sided:
            real_gap, fake_gap = real_gap.clamp(min=0), fake_gap.clamp(min=0)
        return real_gap.pow(2).mean() + fake_gap.pow(2).mean()


class FlipAndTranslate(nn.Module):
    """The consistency transform of CR-GAN and bCR: a random horizontal flip (probability 1/2) and a random integer
    translation of up to ``translation_ratio`` of the image size, zero padded (Zhang et al. 2020, "Consistency
    Regularization for Generative Adversarial Networks", Sec. 3: flipping and shifting by a few pixels; 1/8 is 4
    pixels at 32x32, DiffAugment's translation). Batched, differentiable, each sample its own draw."""

    def __init__(self, translation_ratio: float = 0.125):
        super().__init__()
        from gan_lightning.tricks.augment import DiffAugment  # (tricks.augment does not import this module)

        self.translation_ratio = translation_ratio
        self._translate = DiffAugment(policy="translation", translation_ratio=translation_ratio)

    def forward(self, x: Tensor) -> Tensor:
        flip = torch.rand(x.shape[0], 1, 1, 1, device=x.device) < 0.5
        return self._translate(torch.where(flip, x.flip(-1), x))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(translation_ratio={self.translation_ratio!r})"


class BalancedConsistencyRegularizer(StatefulRegularizer):
    """bCR, balanced consistency regularization (Zhao et al. 2021, "Improved Consistency Regularization for GANs",
    Algorithm 1): real_weight * E ||D(x) - D(T(x))||^2 + fake_weight * E ||D(G(z)) - D(T(G(z)))||^2 in the
    discriminator's loss, which makes D insensitive to the augmentation T on real *and* generated samples (CR-GAN
    regularised reals only, which let augmentation artefacts leak into G).

    Paper defaults: ``real_weight`` = ``fake_weight`` = 10; T = ``transform``, by default a random flip and a
    translation of up to 1/8 of the image (:class:`FlipAndTranslate`), or any augmentation module (e.g.
    ``{class_path: gan_lightning.tricks.augment.DiffAugment, init_args: {policy: translation,cutout}}``). D(x) is the
    update's own score (no second forward on x); one more D forward runs per weighted batch. With ``--model.augment``,
    x and G(z) are the batches D already sees augmented, and T is applied on top of them. Image batches only.
    """

    def __init__(
        self, real_weight: float = 10.0, fake_weight: float = 10.0, every: int = 1, transform: Optional[nn.Module] = None
    ):
        super().__init__(1.0, every)
        if real_weight < 0 or fake_weight < 0:
            raise ConfigurationError(f"BalancedConsistencyRegularizer: weights must be >= 0, got {real_weight} and {fake_weight}")
        self.real_weight, self.fake_weight = real_weight, fake_weight
        self.transform = transform if transform is not None else FlipAndTranslate()

    def _term(self, ctx: RegularizerContext, x: Tensor, labels: Optional[Tensor], scores: Optional[Tensor]) -> Tensor:
        x = x.detach()
        if x.dim() != 4:
            raise ConfigurationError(
                f"BalancedConsistencyRegularizer augments image batches (N, C, H, W), but the discriminator's input has shape "
                f"{tuple(x.shape)}; use it with image data only."
            )
        if scores is None:
            scores = ctx.score(x, labels)
        return _squared_difference(scores, ctx.score(self.transform(x), labels))

    def penalty(self, ctx: RegularizerContext) -> Tensor:
        total: Tensor = torch.zeros((), device=ctx.real.device)
        if self.real_weight:
            total = total + self.real_weight * self._term(ctx, ctx.real, ctx.real_labels, ctx.real_scores)
        if self.fake_weight:
            total = total + self.fake_weight * self._term(ctx, ctx.fake, ctx.fake_labels, ctx.fake_scores)
        return total


class LatentConsistencyRegularizer(Regularizer):
    """zCR, latent consistency regularization (Zhao et al. 2021, "Improved Consistency Regularization for GANs",
    Algorithm 2), with a term in each update (``phase = "both"``), for latents z and dz ~ N(0, sigma^2 I):

    - discriminator: ``dis_weight`` * E ||D(G(z)) - D(G(z + dz))||^2, D should not tell close latents apart;
    - generator: -``gen_weight`` * E ||G(z) - G(z + dz)||^2 / dim, G should make close latents differ
      (the squared distance per sample is divided by the sample size, the mean squared error that
      implementations compute, so the weight does not depend on the image size).

    Paper defaults: ``dis_weight`` 5, ``gen_weight`` 0.5, ``sigma`` 0.03. In the discriminator update the
    perturbed samples are drawn without gradient; the update's own score of G(z) is reused when there is no
    ``--model.augment``. With augmentation, both G(z) and G(z + dz) pass through it with the *same* random draw
    (the RNG is forked), so the term measures the latent perturbation only. Set a weight to 0 to drop its term.
    The extra generator passes leave G's BatchNorm running statistics as they were
    (:func:`batchnorm_statistics_unchanged`).
    """

    phase = "both"

    def __init__(self, dis_weight: float = 5.0, gen_weight: float = 0.5, sigma: float = 0.03, every: int = 1):
        super().__init__(1.0, every)
        if dis_weight < 0 or gen_weight < 0 or sigma <= 0:
            raise ConfigurationError(
                f"LatentConsistencyRegularizer: weights must be >= 0 and sigma > 0, got {dis_weight}, {gen_weight}, {sigma}"
            )
        self.dis_weight, self.gen_weight, self.sigma = dis_weight, gen_weight, sigma

    def penalty(self, ctx: RegularizerContext) -> Tensor:
        z = ctx.latent
        perturbed_z = z + self.sigma * torch.randn_like(z)
        if ctx.phase == "generator":
            if not self.gen_weight:
                return torch.zeros((), device=z.device)
            with batchnorm_statistics_unchanged(ctx.generator):
                perturbed = ctx.generate(perturbed_z, ctx.fake_labels).float()
            return -self.gen_weight * (ctx.fake.float() - perturbed).pow(2).mean()
        if not self.dis_weight:
            return torch.zeros((), device=z.device)
        with torch.no_grad(), batchnorm_statistics_unchanged(ctx.generator):
            perturbed = ctx.generate(perturbed_z, ctx.fake_labels)
        if ctx.augment is None:
            scores = ctx.fake_scores if ctx.fake_scores is not None else ctx.score(ctx.fake.detach(), ctx.fake_labels)
        else:
            with torch.no_grad(), batchnorm_statistics_unchanged(ctx.generator):
                fake = ctx.generate(z, ctx.fake_labels)
            devices = [perturbed.device] if perturbed.device.type == "cuda" else []
            with torch.random.fork_rng(devices=devices):  # the draws of this call are made again for the next one
                fake = ctx.augment(fake)
            perturbed = ctx.augment(perturbed)
            scores = ctx.score(fake, ctx.fake_labels)
        return self.dis_weight * _squared_difference(scores, ctx.score(perturbed, ctx.fake_labels))


def nearest_neighbour_log_distances(x: Tensor, eps: float = 1e-8) -> Tensor:
    """log ||x_i - x_j(i)|| for each sample i, with j(i) its nearest other sample in the batch (flattened, float32).

    The neighbour is chosen without gradient from the Gram-matrix form of the distances; the distance itself is
    recomputed from the difference, exactly and differentiably. ``eps`` is added to the squared distance so that
    duplicate samples give a finite value and gradient.
    """
    if x.shape[0] < 2:
        raise ConfigurationError("The nearest-neighbour entropy estimate needs a batch of at least 2 samples")
    flat = x.flatten(1).float()
    with torch.no_grad(), torch.autocast(flat.device.type, enabled=False):
        sq_norms = flat.pow(2).sum(dim=1)
        squared = (sq_norms[:, None] + sq_norms[None, :] - 2 * flat @ flat.T).clamp(min=0)
        squared.fill_diagonal_(float("inf"))
        neighbour = squared.argmin(dim=1)
    return 0.5 * ((flat - flat[neighbour]).pow(2).sum(dim=1) + eps).log()


def kozachenko_leonenko_entropy(x: Tensor) -> Tensor:
    """The Kozachenko-Leonenko estimate of the differential entropy (nats) of the distribution of the batch ``x``:
    H = d * mean_i log rho_i + log V_d + psi(N) - psi(1), rho_i the distance from x_i to its nearest other sample,
    V_d the volume of the unit d-ball, N the batch size (Kozachenko & Leonenko 1987, "Sample Estimate of the Entropy
    of a Random Vector", Probl. Peredachi Inf. 23(2); the k = 1 form of Kraskov et al. 2004, Eq. 20)."""
    n, d = x.shape[0], x[0].numel()
    log_unit_ball = (d / 2) * math.log(math.pi) - math.lgamma(d / 2 + 1)
    digamma = torch.special.digamma
    psi_n = digamma(torch.tensor(float(n))) - digamma(torch.tensor(1.0))
    return d * nearest_neighbour_log_distances(x).mean() + log_unit_ball + psi_n.to(x.device)


class NearestNeighbourEntropyRegularizer(Regularizer):
    """Rewards the entropy of the generator's samples, a remedy for mode collapse (many latents mapped to few
    samples): penalty = -mean_i log ||G(z_i) - G(z_j(i))||, j(i) the nearest other sample of the batch.

    The term is the part of the Kozachenko-Leonenko entropy estimate (Kozachenko & Leonenko 1987; see
    :func:`kozachenko_leonenko_entropy`) that depends on the samples, divided by the dimension d, so that the weight
    does not scale with the image size; minimising the penalty maximises the estimate. Distances are Euclidean in
    **sample space** (flattened samples: coordinates of points, pixels of images), which every generator has; it pushes
    each sample away from its nearest neighbour, and its gradient is largest for near-duplicates. There is no published
    weight for this term as a GAN regularizer: ``weight`` 1 is of the order of the adversarial losses; tune it.
    """

    phase = "generator"

    def __init__(self, weight: float = 1.0, every: int = 1, eps: float = 1e-8):
        super().__init__(weight, every)
        self.eps = eps

    def penalty(self, ctx: RegularizerContext) -> Tensor:
        return -nearest_neighbour_log_distances(ctx.fake, self.eps).mean()
