"""Adversarial losses behind one small interface.

A loss says what the discriminator minimises given its scores on real and fake samples, and what the
generator minimises given the scores on fake (and, for relativistic losses, real) samples. Scores are
raw discriminator outputs: logits for the BCE family, critic values otherwise. Everything that is not a
pure function of the scores (gradient penalties, weight clipping) hangs off the loss as regularizers or
a post-step hook, so the training loop never special-cases a loss.

New losses are one class plus ``@register_loss("name")``; the name is then valid for ``--model.loss``.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gan_lightning.config_repr import ConfigRepr
from gan_lightning.errors import ConfigurationError
from gan_lightning.regularizers import GradientPenalty, Regularizer
from gan_lightning.registry import Registry

LOSSES = Registry(
    "adversarial loss",
    base=lambda: AdversarialLoss,
    hint="or the import path of an AdversarialLoss subclass, e.g. --model.loss=gan_lightning.losses.HingeLoss.",
    normalise=lambda name: name.lower().replace("_", "-"),
)


def register_loss(*names: str):
    """Class decorator that makes a loss selectable by short name (``--model.loss=NAME``)."""
    return LOSSES.register(*names)


def available_losses() -> list[str]:
    """The main short name of every registered loss (aliases such as ``ns`` are accepted too)."""
    return LOSSES.available()


def build_loss(spec: "AdversarialLoss | str") -> "AdversarialLoss":
    """Turn a short name, a class path or an instance into a loss instance."""
    return LOSSES.build(spec)


class AdversarialLoss(ConfigRepr):
    """Interface of an adversarial loss (in the spirit of StyleGAN2-ADA's phase-based ``loss.py``)."""

    #: Scores are logits of P(real): logged diagnostics show sigmoid(score) instead of raw values.
    scores_are_logits: bool = False
    #: The generator loss also needs D's scores on a real batch (relativistic losses).
    generator_needs_real_scores: bool = False
    #: D's loss is bounded below and reaches its floor when D wins outright (BCE, LSGAN, hinge). A Wasserstein
    #: critic's loss has no floor, so "D loss close to its minimum" means nothing there.
    has_loss_floor: bool = True
    #: Scores are (N, K) columns of several discriminators or heads (GMAN, MGAN), not one score per sample;
    #: such a loss cannot be the ``base`` of another multi-column loss.
    multi_column: bool = False

    def discriminator_loss(self, real_scores: Tensor, fake_scores: Tensor) -> Tensor:
        raise NotImplementedError

    def generator_loss(self, fake_scores: Tensor, real_scores: Optional[Tensor] = None) -> Tensor:
        raise NotImplementedError

    def regularizers(self) -> list[Regularizer]:
        """Regularizers that are part of the loss's definition (e.g. WGAN-GP's gradient penalty)."""
        return []

    def diagnostic_scores(self, real_scores: Tensor, fake_scores: Tensor) -> tuple["AdversarialLoss", Tensor, Tensor]:
        """The loss whose conventions logged D outputs and accuracies follow, and the scores they read.

        Wrappers (several discriminators, an auxiliary classifier head) return their base loss and the
        adversarial columns only.
        """
        return self, real_scores, fake_scores

    def decision_threshold(self) -> Optional[float]:
        """The score above which D calls a sample real, or None where accuracy has no meaning.

        0 by default: sigmoid(score) = 0.5 for logits, the middle of the hinge margins -1 and +1 (Lim & Ye 2017).
        """
        return 0.0

    def discriminator_accuracy(
        self, real_scores: Tensor, fake_scores: Tensor, threshold: Optional[float] = None
    ) -> Optional[tuple[Tensor, Tensor]]:
        """Fractions of real samples judged real and of fake samples judged fake (tensors, no host sync).

        ``threshold`` overrides :meth:`decision_threshold`; None when accuracy has no meaning for this loss.
        """
        t = threshold if threshold is not None else self.decision_threshold()
        if t is None:
            return None
        real, fake = real_scores.float().flatten(), fake_scores.float().flatten()
        return (real > t).float().mean(), (fake < t).float().mean()

    @torch.no_grad()
    def after_discriminator_step(self, discriminator: nn.Module) -> None:
        """Hook run after every discriminator optimizer step (WGAN weight clipping uses it)."""


class _BCELoss(AdversarialLoss):
    """Shared discriminator side of the BCE losses, in the stable softplus form.

    ``label_smoothing`` is one-sided: the real target becomes ``1 - label_smoothing`` and fakes stay at 0
    (Salimans et al. 2016, "Improved Techniques for Training GANs", use 0.1).
    """

    scores_are_logits = True

    def __init__(self, label_smoothing: float = 0.0):
        if not 0.0 <= label_smoothing < 1.0:
            raise ConfigurationError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
        self.label_smoothing = label_smoothing

    def discriminator_loss(self, real_scores: Tensor, fake_scores: Tensor) -> Tensor:
        target = 1.0 - self.label_smoothing
        # BCE(sigmoid(s), t) = t*softplus(-s) + (1-t)*softplus(s)
        real_term = target * F.softplus(-real_scores)
        if self.label_smoothing:
            real_term = real_term + (1.0 - target) * F.softplus(real_scores)
        return real_term.mean() + F.softplus(fake_scores).mean()


@register_loss("minimax", "saturating")
class MinimaxLoss(_BCELoss):
    """The original saturating game (Goodfellow et al. 2014): G minimises log(1 - D(G(z)))."""

    def generator_loss(self, fake_scores: Tensor, real_scores: Optional[Tensor] = None) -> Tensor:
        # log(1 - sigmoid(s)) = -softplus(s)
        return -F.softplus(fake_scores).mean()


@register_loss("nonsaturating", "non-saturating", "ns", "gan", "bce")
class NonSaturatingLoss(_BCELoss):
    """Goodfellow et al. 2014, Sec. 3: G maximises log D(G(z)), which keeps gradients early in training."""

    def generator_loss(self, fake_scores: Tensor, real_scores: Optional[Tensor] = None) -> Tensor:
        return F.softplus(-fake_scores).mean()


@register_loss("lsgan", "least-squares")
class LeastSquaresLoss(AdversarialLoss):
    """LSGAN (Mao et al. 2017, Eq. 2) with targets a (fake), b (real) for D and c for G; 0/1/1 by default."""

    def __init__(self, a: float = 0.0, b: float = 1.0, c: float = 1.0):
        self.a, self.b, self.c = a, b, c

    def discriminator_loss(self, real_scores: Tensor, fake_scores: Tensor) -> Tensor:
        return 0.5 * (real_scores - self.b).pow(2).mean() + 0.5 * (fake_scores - self.a).pow(2).mean()

    def generator_loss(self, fake_scores: Tensor, real_scores: Optional[Tensor] = None) -> Tensor:
        return 0.5 * (fake_scores - self.c).pow(2).mean()

    def decision_threshold(self) -> Optional[float]:
        """Halfway between the fake target a and the real target b (Mao et al. 2017)."""
        return (self.a + self.b) / 2

    def discriminator_accuracy(
        self, real_scores: Tensor, fake_scores: Tensor, threshold: Optional[float] = None
    ) -> Optional[tuple[Tensor, Tensor]]:
        if self.b >= self.a:
            return super().discriminator_accuracy(real_scores, fake_scores, threshold)
        t = threshold if threshold is not None else self.decision_threshold()  # real target below the fake target
        real, fake = real_scores.float().flatten(), fake_scores.float().flatten()
        return (real < t).float().mean(), (fake > t).float().mean()


@register_loss("wgan", "wasserstein")
class WassersteinLoss(AdversarialLoss):
    """WGAN (Arjovsky et al. 2017): critic maximises E[D(x)] - E[D(G(z))], weights clipped to ±clip_value.

    The paper's defaults: clip 0.01, n_critic 5, RMSProp lr 5e-5. ``clip_value=None`` disables clipping,
    which is what WGAN-GP builds on.
    """

    has_loss_floor = False

    def __init__(self, clip_value: Optional[float] = 0.01):
        if clip_value is not None and clip_value <= 0:
            raise ConfigurationError(f"clip_value must be positive or null, got {clip_value}")
        self.clip_value = clip_value

    def discriminator_loss(self, real_scores: Tensor, fake_scores: Tensor) -> Tensor:
        return fake_scores.mean() - real_scores.mean()

    def generator_loss(self, fake_scores: Tensor, real_scores: Optional[Tensor] = None) -> Tensor:
        return -fake_scores.mean()

    def decision_threshold(self) -> Optional[float]:
        """None: a critic's scale is arbitrary, so the estimate E[D(x)] - E[D(G(z))] is logged instead
        (Arjovsky et al. 2017, Sec. 3)."""
        return None

    @torch.no_grad()
    def after_discriminator_step(self, discriminator: nn.Module) -> None:
        if self.clip_value is None:
            return
        for p in discriminator.parameters():
            p.clamp_(-self.clip_value, self.clip_value)


@register_loss("wgan-gp")
class WassersteinGPLoss(WassersteinLoss):
    """WGAN-GP (Gulrajani et al. 2017): no clipping; a two-sided gradient penalty of weight 10 on interpolates.

    The paper trains with Adam(lr 1e-4, betas (0, 0.9)) and n_critic 5.
    """

    def __init__(self, gp_weight: float = 10.0):
        super().__init__(clip_value=None)
        self.gp_weight = gp_weight

    def regularizers(self) -> list[Regularizer]:
        return [GradientPenalty(weight=self.gp_weight)]


@register_loss("hinge")
class HingeLoss(AdversarialLoss):
    """Hinge loss (Lim & Ye 2017; Miyato et al. 2018): D on max(0, 1 -/+ s), G maximises the fake score."""

    def discriminator_loss(self, real_scores: Tensor, fake_scores: Tensor) -> Tensor:
        return F.relu(1.0 - real_scores).mean() + F.relu(1.0 + fake_scores).mean()

    def generator_loss(self, fake_scores: Tensor, real_scores: Optional[Tensor] = None) -> Tensor:
        return -fake_scores.mean()


@register_loss("relativistic-average", "ragan")
class RelativisticAverageLoss(AdversarialLoss):
    """RaGAN (Jolicoeur-Martineau 2018, Eq. 8-9): each side judges whether real is more realistic than fake on average."""

    scores_are_logits = True
    generator_needs_real_scores = True

    def discriminator_loss(self, real_scores: Tensor, fake_scores: Tensor) -> Tensor:
        real_rel = real_scores - fake_scores.mean()
        fake_rel = fake_scores - real_scores.mean()
        return F.softplus(-real_rel).mean() + F.softplus(fake_rel).mean()

    def generator_loss(self, fake_scores: Tensor, real_scores: Optional[Tensor] = None) -> Tensor:
        if real_scores is None:
            raise ValueError("RelativisticAverageLoss.generator_loss needs the real scores")
        real_rel = real_scores - fake_scores.mean()
        fake_rel = fake_scores - real_scores.mean()
        return F.softplus(real_rel).mean() + F.softplus(-fake_rel).mean()

    def discriminator_accuracy(
        self, real_scores: Tensor, fake_scores: Tensor, threshold: Optional[float] = None
    ) -> Optional[tuple[Tensor, Tensor]]:
        """Relative realism: a real sample is judged correctly when its score beats the mean fake score, and
        vice versa (Jolicoeur-Martineau 2018, Eq. 8); an explicit ``threshold`` judges absolute scores."""
        if threshold is not None:
            return super().discriminator_accuracy(real_scores, fake_scores, threshold)
        real, fake = real_scores.float().flatten(), fake_scores.float().flatten()
        return (real > fake.mean()).float().mean(), (fake < real.mean()).float().mean()
