"""GMAN: one generator against K discriminators (Durugkar, Gemp & Mahadevan 2017, "Generative Multi-Adversarial
Networks", ICLR 2017).

Why: a single discriminator can become a critic the generator gets no constructive feedback from. K independently
initialised discriminators act as an ensemble: their averaged feedback has lower variance, the generator only has
to fool some of them to get a useful gradient (the paper's Sec. 3.3.2), and a generator that emits a single point
"will score well for a single discriminator at the large expense of the rest" (Sec. 4.2.2).

Nothing in the training loop changes; the K discriminators travel through the two existing extension points:

- :class:`MultiDiscriminator` is an ordinary discriminator whose scores have shape ``(N, K)``: column k holds the
  raw scores of discriminator k.
- :class:`MultiDiscriminatorLoss` (``--model.loss=gman``) is an ordinary :class:`AdversarialLoss` that reads the
  columns. Each discriminator minimises the base loss on its own column; the discriminator loss is the *sum* over
  k, so the gradient reaching D_k's parameters is exactly that of a one-discriminator GAN with D_k. The generator
  minimises the mean of the K base generator losses (GMAN-0), or the soft-max weighted mean (GMAN-lambda, Eq. 3,
  "AM_soft"): sum_k w_k L_k with w = softmax(lambda * V), V_k = V(D_k, G), the value discriminator k achieves
  (minus its base discriminator loss on the current batch), lambda >= 0. lambda = 0 is the mean; as lambda grows
  the weight goes to the harshest discriminator (the max, "GMAN-max"). The weights are computed without gradient,
  so the generator follows a fixed convex combination of the discriminators at each step (the paper's App. A.3
  reading of the soft-max as V(D~, G) for a convex combination D~ of the D_k).

The module's logged ``d_real``/``d_fake`` and BalanceDiagnosticsCallback's accuracies then average over the K
discriminators. Regularizers that differentiate D's output (gradient penalties, R1/R2) see the sum of the columns;
wrap them in :class:`PerDiscriminatorRegularizer` to penalise each discriminator on its own, as the loss does for
the base loss's own regularizers (WGAN-GP's penalty).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable, Literal, Optional, Sequence, Union

import torch
from torch import Tensor, nn

from gan_lightning.errors import ConfigurationError
from gan_lightning.losses import AdversarialLoss, build_loss, register_loss
from gan_lightning.networks.interface import num_classes_of
from gan_lightning.runtime import internals
from gan_lightning.regularizers import Regularizer, RegularizerContext, StatefulRegularizer

_INIT = "--model.discriminator.init_args"


class MultiDiscriminator(nn.Module):
    """K discriminators side by side; ``forward(x)`` returns their raw scores as columns, shape ``(N, K)``.

    Give either
        discriminators: a list of networks (in YAML, a list of ``class_path``/``init_args`` blocks); each is
            built separately, so each has its own initialisation, and they may differ (the paper keeps its
            discriminators diverse by varying dropout and depth);
        discriminator: how to build one network: in YAML one ``class_path``/``init_args`` block, in Python a
            callable with no arguments (``lambda: MLPDiscriminator(...)``). It is called ``num_discriminators``
            times (default 2), so every copy gets the network's own initialisation with fresh random numbers.

    Every member returns ``(N,)`` or ``(N, 1)`` scores. Conditional members (``num_classes > 0``, all equal) get
    the labels: ``forward(x, labels)``.
    """

    def __init__(
        self,
        discriminators: Optional[list[nn.Module]] = None,
        discriminator: Optional[Callable[[], nn.Module]] = None,
        num_discriminators: Optional[int] = None,
    ):
        super().__init__()
        if (discriminators is None) == (discriminator is None):
            raise ConfigurationError(
                "MultiDiscriminator needs exactly one of `discriminators` (a list of networks) and `discriminator` "
                f"(one network, built num_discriminators times); got {'both' if discriminators is not None else 'neither'}. "
                f"Set {_INIT}.discriminator (a class_path/init_args block) and {_INIT}.num_discriminators, or list them "
                f"in {_INIT}.discriminators."
            )
        if num_discriminators is not None and (
            not isinstance(num_discriminators, int) or isinstance(num_discriminators, bool) or num_discriminators < 1
        ):
            raise ConfigurationError(
                f"MultiDiscriminator: num_discriminators must be a positive integer (2 or 5 in GMAN), got "
                f"{num_discriminators!r}; set {_INIT}.num_discriminators."
            )
        if discriminator is not None:
            if isinstance(discriminator, nn.Module):
                raise ConfigurationError(
                    "MultiDiscriminator: `discriminator` must say how to build a network, not be one (a network "
                    "instance would be shared, not copied). In Python pass a callable such as "
                    "`lambda: MLPDiscriminator(...)` or a list `discriminators=[...]`; in YAML a class_path/init_args block."
                )
            members = [discriminator() for _ in range(num_discriminators or 2)]
        else:
            members = list(discriminators or [])
            if not members:
                raise ConfigurationError(f"MultiDiscriminator: `discriminators` is empty; list at least one network in {_INIT}.discriminators.")
            if num_discriminators is not None and num_discriminators != len(members):
                raise ConfigurationError(
                    f"MultiDiscriminator: num_discriminators={num_discriminators} but {len(members)} discriminators are "
                    f"listed; drop {_INIT}.num_discriminators or make it match the list."
                )
        for i, member in enumerate(members):
            if not isinstance(member, nn.Module):
                raise ConfigurationError(f"MultiDiscriminator: discriminator {i} is a {type(member).__name__}, not an nn.Module.")
        if len({id(m) for m in members}) < len(members):
            raise ConfigurationError(
                "MultiDiscriminator: the same network object is listed more than once, so those discriminators would "
                "share their weights; build each one separately."
            )
        classes = [num_classes_of(m) for m in members]
        if len(set(classes)) > 1:
            raise ConfigurationError(
                f"MultiDiscriminator: the discriminators have different num_classes {classes}; a conditional GAN needs "
                "all of them set to the number of classes."
            )
        self.discriminators = nn.ModuleList(members)
        self.num_discriminators = len(members)
        self.num_classes = classes[0]

    def extra_repr(self) -> str:
        return f"num_discriminators={self.num_discriminators}"

    def forward(self, x: Tensor, labels: Optional[Tensor] = None) -> Tensor:
        columns = []
        for k, d in enumerate(self.discriminators):
            scores = d(x) if labels is None else d(x, labels)
            if scores.dim() == 2 and scores.shape[1] == 1:
                scores = scores.squeeze(1)
            if scores.dim() != 1:
                raise ConfigurationError(
                    f"MultiDiscriminator: discriminator {k} ({type(d).__name__}) returned scores of shape "
                    f"{tuple(scores.shape)}; each member must return one score per sample, (N,) or (N, 1)."
                )
            columns.append(scores)
        return torch.stack(columns, dim=1)


class _Column:
    """The discriminator seen through one column of its scores: ``(x[, labels]) -> (N,)``."""

    def __init__(self, discriminator: Callable[..., Tensor], column: int):
        self.discriminator, self.column = discriminator, column

    def __call__(self, x: Tensor, labels: Optional[Tensor] = None) -> Tensor:
        scores = self.discriminator(x) if labels is None else self.discriminator(x, labels)
        return scores[:, self.column]


def _score_columns(discriminator: object) -> Optional[int]:
    """K of a MultiDiscriminator, looking through DDP (``.module``) and torch.compile (``._orig_mod``) wrappers."""
    seen = 0
    while discriminator is not None and seen < 8:
        k = getattr(discriminator, "num_discriminators", None)
        if isinstance(k, int):
            return k
        discriminator = getattr(discriminator, "module", None) or internals.compiled_original(discriminator)
        seen += 1
    return None


class PerDiscriminatorRegularizer(Regularizer):
    """Apply a discriminator regularizer to each score column on its own and add the penalties.

    A gradient penalty on an ``(N, K)`` discriminator differentiates the *sum* of the columns, i.e. penalises
    ||sum_k grad D_k||, which couples the discriminators; with this wrapper each D_k gets its own penalty (at the
    wrapped regularizer's weight), as K separate GANs would. ``columns``: which columns (default: all K of a
    :class:`MultiDiscriminator`, read from the network or from the scores). In YAML::

        regularizers:
          - class_path: gan_lightning.variants.gman.PerDiscriminatorRegularizer
            init_args: {regularizer: {class_path: gan_lightning.regularizers.R1Penalty, init_args: {gamma: 1.0}}}

    R1/R2 still reuse the update's own forward pass (one input-gradient per column).
    """

    def __init__(self, regularizer: Regularizer, columns: Optional[list[int]] = None):
        if not isinstance(regularizer, Regularizer):
            raise ConfigurationError(f"PerDiscriminatorRegularizer wraps a Regularizer, got {type(regularizer).__name__}.")
        if isinstance(regularizer, StatefulRegularizer):
            # one state (e.g. LeCam's anchors) would mix the columns, and the wrapper's state is not checkpointed
            raise ConfigurationError(
                f"PerDiscriminatorRegularizer cannot wrap {type(regularizer).__name__}: it keeps state across steps, "
                "which would be shared by all discriminators. Add it to model.regularizers unwrapped."
            )
        if columns is not None and (not columns or any(not isinstance(c, int) or c < 0 for c in columns)):
            raise ConfigurationError(f"PerDiscriminatorRegularizer: columns must be a non-empty list of column indices or null, got {columns!r}.")
        self.regularizer = regularizer
        self.columns = list(columns) if columns is not None else None
        self.phase = regularizer.phase
        self.input_gradient_of = regularizer.input_gradient_of

    @property
    def weight(self) -> float:  # type: ignore[override]
        return self.regularizer.weight

    @property
    def every(self) -> int:  # type: ignore[override]
        return self.regularizer.every

    def is_due(self, step: int) -> bool:
        return self.regularizer.is_due(step)

    def _columns(self, ctx: RegularizerContext) -> list[int]:
        if self.columns is not None:
            return self.columns
        k = _score_columns(ctx.discriminator)
        if k is None:
            scores = ctx.real_scores if ctx.real_scores is not None else ctx.fake_scores
            k = scores.shape[1] if scores is not None and scores.dim() == 2 else None
        if k is None:
            raise ConfigurationError(
                "PerDiscriminatorRegularizer cannot tell how many score columns the discriminator has: give "
                "`columns` explicitly (e.g. [0, 1, 2]) or use gan_lightning.variants.gman.MultiDiscriminator."
            )
        return list(range(k))

    def _per_column(self, ctx: RegularizerContext) -> list[RegularizerContext]:
        return [
            dataclasses.replace(
                ctx,
                discriminator=_Column(ctx.discriminator, k),  # type: ignore[arg-type]
                real_scores=ctx.real_scores[:, k] if ctx.real_scores is not None else None,
                fake_scores=ctx.fake_scores[:, k] if ctx.fake_scores is not None else None,
            )
            for k in self._columns(ctx)
        ]

    def __call__(self, ctx: RegularizerContext) -> Tensor:
        terms = [self.regularizer(ctx_k) for ctx_k in self._per_column(ctx)]
        return torch.stack(terms).sum()

    def penalty(self, ctx: RegularizerContext) -> Tensor:
        return torch.stack([self.regularizer.penalty(ctx_k) for ctx_k in self._per_column(ctx)]).sum()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(regularizer={self.regularizer!r}, columns={self.columns!r})"


def per_discriminator(regularizers: Sequence[Regularizer], columns: Optional[list[int]] = None) -> list[Regularizer]:
    """Wrap the discriminator-phase regularizers of a list in :class:`PerDiscriminatorRegularizer`; keep the others."""
    return [PerDiscriminatorRegularizer(r, columns) if r.phase == "discriminator" else r for r in regularizers]


def _check_columns(owner: str, real_scores: Optional[Tensor], fake_scores: Tensor) -> int:
    if fake_scores.dim() != 2:
        raise ConfigurationError(
            f"{owner} needs discriminator scores of shape (N, K), one column per discriminator, but got shape "
            f"{tuple(fake_scores.shape)}. Use --model.discriminator.class_path="
            "gan_lightning.variants.gman.MultiDiscriminator (or a loss for one discriminator)."
        )
    if real_scores is not None and (real_scores.dim() != 2 or real_scores.shape[1] != fake_scores.shape[1]):
        raise ConfigurationError(
            f"{owner}: real scores of shape {tuple(real_scores.shape)} and fake scores of shape "
            f"{tuple(fake_scores.shape)} must both be (N, K) with the same K."
        )
    return fake_scores.shape[1]


@register_loss("gman", "multi-discriminator")
class MultiDiscriminatorLoss(AdversarialLoss):
    """GMAN's losses over the ``(N, K)`` scores of a :class:`MultiDiscriminator` (Durugkar et al. 2017).

    Args:
        base: the loss each discriminator plays with G (a registered name, a class path or an instance);
            default ``nonsaturating`` (the paper's "mod-" variants; ``minimax`` is its untampered objective).
        aggregation: how the generator combines the K base generator losses: ``mean`` (GMAN-0) or
            ``softmax`` (GMAN-lambda: weights softmax(lambda * V_k), V_k = minus D_k's base discriminator loss on
            the step's real and fake batch, held constant).
        softmax_lambda: lambda >= 0 of ``softmax``; 0 gives the mean, large values the harshest discriminator.
            The paper compares lambda = 0 and 1 (and a learned lambda, GMAN*, not implemented here).

    The discriminator loss is the sum of the K base losses (so each D_k trains exactly as in a one-D GAN).
    ``scores_are_logits``, ``after_discriminator_step`` (WGAN clipping of every D) and the base loss's
    regularizers (per discriminator, see :class:`PerDiscriminatorRegularizer`) come from the base loss; the
    generator also needs real scores when the base loss does or when ``softmax`` with lambda > 0 needs V_k.
    """

    #: Reads several score columns (not a base loss for another multi-column loss).
    multi_column = True

    def __init__(
        self,
        base: Union[str, AdversarialLoss] = "nonsaturating",
        aggregation: Literal["mean", "softmax"] = "mean",
        softmax_lambda: float = 1.0,
    ):
        self.base = build_loss(base)
        if self.base.multi_column:
            raise ConfigurationError(
                f"MultiDiscriminatorLoss: base must be a one-discriminator loss such as nonsaturating or hinge, got "
                f"{type(self.base).__name__}; set --model.loss.init_args.base."
            )
        if aggregation not in ("mean", "softmax"):
            raise ConfigurationError(
                f"MultiDiscriminatorLoss: aggregation must be 'mean' (GMAN-0) or 'softmax' (GMAN-lambda), got "
                f"{aggregation!r}; set --model.loss.init_args.aggregation."
            )
        if not isinstance(softmax_lambda, (int, float)) or not math.isfinite(softmax_lambda) or softmax_lambda < 0:
            raise ConfigurationError(
                f"MultiDiscriminatorLoss: softmax_lambda must be a finite number >= 0 (GMAN's lambda; 0 = mean), got "
                f"{softmax_lambda!r}; set --model.loss.init_args.softmax_lambda."
            )
        self.aggregation = aggregation
        self.softmax_lambda = float(softmax_lambda)

    # ------------------------------------------------------------------ delegated properties
    @property
    def scores_are_logits(self) -> bool:  # type: ignore[override]
        return self.base.scores_are_logits

    @property
    def generator_needs_real_scores(self) -> bool:  # type: ignore[override]
        return self.base.generator_needs_real_scores or self._weights_need_values

    @property
    def _weights_need_values(self) -> bool:
        return self.aggregation == "softmax" and self.softmax_lambda != 0.0

    # ------------------------------------------------------------------ per-discriminator terms
    def discriminator_losses(self, real_scores: Tensor, fake_scores: Tensor) -> Tensor:
        """The K base discriminator losses, shape (K,)."""
        k = _check_columns(type(self).__name__, real_scores, fake_scores)
        return torch.stack([self.base.discriminator_loss(real_scores[:, i], fake_scores[:, i]) for i in range(k)])

    def generator_losses(self, fake_scores: Tensor, real_scores: Optional[Tensor] = None) -> Tensor:
        """The K base generator losses, shape (K,)."""
        k = _check_columns(type(self).__name__, real_scores, fake_scores)
        return torch.stack([
            self.base.generator_loss(fake_scores[:, i], real_scores[:, i] if real_scores is not None else None)
            for i in range(k)
        ])

    def weights(self, fake_scores: Tensor, real_scores: Optional[Tensor] = None) -> Tensor:
        """The generator's weights over the K discriminators, shape (K,), without gradient (constants).

        ``mean``: 1/K each. ``softmax``: softmax(lambda * V) with V_k = -base.discriminator_loss(column k),
        i.e. GMAN's V(D_k, G) = E[log D_k(x)] + E[log(1 - D_k(G(z)))] for the BCE losses (Eq. 1 and 3).
        """
        k = _check_columns(type(self).__name__, real_scores, fake_scores)
        if not self._weights_need_values:
            return torch.full((k,), 1.0 / k, device=fake_scores.device)
        if real_scores is None:
            raise ValueError(
                "MultiDiscriminatorLoss(aggregation='softmax') needs the real scores to weigh the discriminators "
                "(generator_needs_real_scores is True)."
            )
        with torch.no_grad():
            values = -self.discriminator_losses(real_scores.detach().float(), fake_scores.detach().float())
            return torch.softmax(self.softmax_lambda * values, dim=0)

    # ------------------------------------------------------------------ AdversarialLoss
    def discriminator_loss(self, real_scores: Tensor, fake_scores: Tensor) -> Tensor:
        return self.discriminator_losses(real_scores, fake_scores).sum()

    def generator_loss(self, fake_scores: Tensor, real_scores: Optional[Tensor] = None) -> Tensor:
        losses = self.generator_losses(fake_scores, real_scores)
        if not self._weights_need_values:
            return losses.mean()
        return (self.weights(fake_scores, real_scores).to(losses.dtype) * losses).sum()

    def regularizers(self) -> list[Regularizer]:
        return per_discriminator(self.base.regularizers())

    @torch.no_grad()
    def diagnostic_scores(self, real_scores: Tensor, fake_scores: Tensor) -> tuple[AdversarialLoss, Tensor, Tensor]:
        return self.base.diagnostic_scores(real_scores, fake_scores)  # every column is one discriminator

    def after_discriminator_step(self, discriminator: nn.Module) -> None:
        self.base.after_discriminator_step(discriminator)
