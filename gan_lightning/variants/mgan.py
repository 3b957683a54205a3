"""MGAN: K generators that share their body, one discriminator with a classifier head that tells them apart
(Hoang, Nguyen, Le & Phung 2018, "MGAN: Training Generative Adversarial Nets with Multiple Generators", ICLR 2018).

Why: a single generator that has to cover every mode of the data tends to drop some. MGAN trains a mixture of K
generators against a discriminator D (real or generated?) and a classifier C (which generator made this sample?);
the generators minimise the usual GAN loss plus beta times C's cross-entropy on their samples, so they are pushed
to be easy to tell apart. At the equilibrium the Jensen-Shannon divergence between the mixture and the data is
minimal while the JSD among the generators is maximal (the paper's Theorems 2-3): the generators split the modes.
Parameter sharing keeps the cost close to one GAN: the generators share every layer except the input layer, and
C shares every layer of D except the last (the paper's Sec. 3 and its code, github.com/qhoangdl/MGAN).

The training loop does not change; the generator index travels in the batch position:

- :class:`MultiGenerator` makes sample i of every batch with generator ``i mod K`` (a uniform mixture, pi_k = 1/K,
  as in the paper). The loss therefore knows the label of every generated score from its row, ``arange(N) % K``.
- :class:`MGANDiscriminator` returns ``(N, 1 + K)`` scores: column 0 is D's raw score, columns 1..K are C's logits.
- :class:`MultiDCGANGenerator` and :class:`MGANDCGANDiscriminator` are the same pair built from DCGAN's networks
  (Radford et al. 2016) for images, as in the paper's CIFAR-10/STL-10/ImageNet models: the generators share all but
  their first (transposed convolution) layer, D and C share every convolution and differ in their last 4x4 one.
- :class:`MGANLoss` (``--model.loss=mgan``): D minimises the base loss on column 0 plus the cross-entropy of C on the
  generated batch with labels ``i mod K``; G minimises the base generator loss on column 0 plus ``beta`` times the
  same cross-entropy (the official code: ``d_loss = d_bin_loss + d_mul_loss``, ``g_loss = g_bin_loss + beta *
  d_mul_loss``). C is never trained on real samples: their classifier columns are ignored.

Anything that reorders or mixes generated samples before D sees them breaks the position code: PacGAN packing
across generators is fine only if you do not need C, and ``LabelFlipping`` puts real samples in some fake rows,
whose class label is then meaningless (a small share; instance noise is harmless). Generation in chunks
(``GANModule.generate``) restarts the cycle in every chunk, which keeps the mixture uniform up to one sample per
chunk. The logged ``d_real``/``d_fake``, BalanceDiagnosticsCallback's accuracies and ModeCollapseMonitor's dynamics
read D's column 0 only (``MGANLoss.diagnostic_scores``). Regularizers given to the module (R1, gradient penalties)
differentiate the sum of all 1 + K columns, so they also penalise C; the base loss's own penalty (``base: wgan-gp``)
sees column 0 only.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gan_lightning.errors import ConfigurationError
from gan_lightning.losses import AdversarialLoss, build_loss, register_loss
from gan_lightning.variants.gman import per_discriminator
from gan_lightning.networks.dcgan import (
    _dcgan_init,
    _num_doublings,
    discriminator_trunk,
    generator_body,
    generator_input_features,
)
from gan_lightning.networks.layers import spectral_normalize
from gan_lightning.networks.mlp import discriminator_blocks, generator_blocks
from gan_lightning.regularizers import Regularizer


def _check_count(owner: str, value: object, option: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ConfigurationError(f"{owner}: num_generators must be a positive integer (e.g. 4), got {value!r}; set {option}.")
    return value


def _check_dims(owner: str, hidden_dims: Sequence[int], option: str) -> list[int]:
    dims = list(hidden_dims)
    if not dims or any(not isinstance(h, int) or h < 1 for h in dims):
        raise ConfigurationError(f"{owner}: hidden_dims must be a non-empty list of positive sizes, got {dims}; set {option}.")
    return dims


def generator_labels(n: int, num_generators: int, device: Optional[torch.device] = None) -> Tensor:
    """Which generator made each row of an ``n``-sample batch of an MGAN generator: ``arange(n) % K``."""
    return torch.arange(n, device=device) % num_generators


class _GeneratorMixture(nn.Module):
    """What every MGAN generator shares: K input layers in front of one body, and the routing of the batch.

    Subclasses set ``num_generators``, ``input_layers`` (one per generator), ``input_norms`` (one BatchNorm per
    generator, or None) and ``body`` (the shared rest). Row i of ``forward(z)`` is made by generator ``i % K``
    (:func:`generator_labels`), which is how :class:`MGANLoss` knows every sample's generator without any change to
    the training loop; each generator runs its own input layer on its own rows only, then the rows are put back in
    place and the body runs once on the whole batch, so the cost per sample is one generator's.
    """

    num_generators: int
    input_layers: nn.ModuleList
    input_norms: Optional[nn.ModuleList]
    body: nn.Module

    def extra_repr(self) -> str:
        return f"num_generators={self.num_generators}, sample i from generator i % {self.num_generators}"

    def _latent(self, z: Tensor) -> Tensor:
        """The latent batch in the shape the input layers take (a hook: the convolutional generators reshape)."""
        return z

    def _input(self, z: Tensor, k: int) -> Tensor:
        h = self.input_layers[k](z)
        return self.input_norms[k](h) if self.input_norms is not None else h

    def forward_generator(self, z: Tensor, k: int) -> Tensor:
        """Every sample of the batch from generator ``k`` (for plots per generator and tests)."""
        if not 0 <= k < self.num_generators:
            raise ValueError(f"generator index {k} is out of range for {self.num_generators} generators")
        return self.body(self._input(self._latent(z), k))

    def forward(self, z: Tensor) -> Tensor:
        z = self._latent(z)
        n, k_total = z.shape[0], self.num_generators
        if self.training and self.input_norms is not None and n < 2 * k_total:
            # Each generator's own BatchNorm sees only its own rows: with one row BatchNorm1d fails outright and
            # BatchNorm2d takes its batch statistics from a single sample.
            raise ConfigurationError(
                f"{type(self).__name__} with batch_norm needs at least 2 samples per generator in training mode: a "
                f"batch of {n} for {k_total} generators gives some generator fewer. Use a batch of at least "
                f"{2 * k_total} (--data.init_args.batch_size), or batch_norm: false "
                "(--model.generator.init_args.batch_norm=false)."
            )
        rows, parts = [], []
        for k in range(min(k_total, n)):
            rows.append(torch.arange(k, n, k_total, device=z.device))
            parts.append(self._input(z[k::k_total], k))
        if len(parts) == 1:
            return self.body(parts[0])
        # Put every generator's rows back in place (out of place, so autograd and double backward work).
        stacked = torch.cat(parts)
        h = stacked.new_zeros(n, *stacked.shape[1:]).index_copy(0, torch.cat(rows), stacked)
        return self.body(h)


class MultiGenerator(_GeneratorMixture):
    """K MLP generators sharing all layers but the input layer; sample i of a batch comes from generator i mod K.

    Generator k is ``body(input_k(z))``: ``input_k`` is its own Linear(latent_dim, hidden_dims[0]) (with its own
    BatchNorm when ``batch_norm``), ``body`` the shared rest: ReLU, then Linear/BatchNorm/ReLU blocks and the
    output Linear, as in :class:`~gan_lightning.networks.MLPGenerator` (whose options these are). Shared
    BatchNorm layers normalise over the whole mixed batch, as in the paper's code.

    ``forward(z)`` for a batch of N latents returns N samples, row i made by generator ``i % num_generators``
    (:func:`generator_labels`); ``forward_generator(z, k)`` makes every sample with generator k.
    """

    def __init__(
        self,
        num_generators: int = 4,
        latent_dim: int = 2,
        output_dim: int = 2,
        hidden_dims: Sequence[int] = (400, 400, 400, 400),
        batch_norm: bool = True,
        spectral_norm: bool = False,
    ):
        super().__init__()
        opt = "--model.generator.init_args"
        self.num_generators = _check_count("MultiGenerator", num_generators, f"{opt}.num_generators")
        dims = _check_dims("MultiGenerator", hidden_dims, f"{opt}.hidden_dims")
        self.latent_dim, self.output_dim = latent_dim, output_dim
        self.num_classes = 0
        self.input_layers = nn.ModuleList(nn.Linear(latent_dim, dims[0], bias=not batch_norm) for _ in range(num_generators))
        self.input_norms = nn.ModuleList(nn.BatchNorm1d(dims[0]) for _ in range(num_generators)) if batch_norm else None
        blocks, width = generator_blocks(dims[0], dims[1:], batch_norm)
        self.body = nn.Sequential(nn.ReLU(), *blocks, nn.Linear(width, output_dim))
        if spectral_norm:
            spectral_normalize(self)


class MultiDCGANGenerator(_GeneratorMixture):
    """K DCGAN generators sharing all layers but the input layer; sample i of a batch comes from generator i mod K.

    The convolutional MGAN generator (Hoang et al. 2018, Sec. 3 and their CIFAR-10/STL-10 code: the generators share
    every layer except the first). Generator k is ``body(input_k(z))``: ``input_k`` is its own
    ConvTranspose2d(latent_dim, feats, 4, 1, 0) from the latent to the first 4x4 map (with its own BatchNorm2d
    when ``batch_norm``), ``body`` is the rest of :class:`~gan_lightning.networks.DCGANGenerator` (Radford et al.
    2016): ReLU, the up-sampling blocks and the tanh output. Options and defaults are DCGANGenerator's, with the
    same N(0, 0.02) initialisation; there is no class conditioning. Shared BatchNorm layers normalise over the
    whole mixed batch, as in the paper's code.

    Every generator's input layer is as large as DCGANGenerator's (latent_dim x feats x 16 weights), and in a small
    DCGAN that is the largest layer: K generators hold about K times its parameters, while each sample still costs
    one generator's compute. ``forward(z)`` returns images ``(N, channels, image_size, image_size)`` in [-1, 1],
    row i from generator ``i % num_generators``; ``forward_generator(z, k)`` makes every image with generator k.
    """

    def __init__(
        self,
        num_generators: int = 4,
        latent_dim: int = 100,
        image_size: int = 32,
        channels: int = 3,
        width: int = 64,
        batch_norm: bool = True,
        spectral_norm: bool = False,
    ):
        super().__init__()
        name = type(self).__name__
        self.num_generators = _check_count(name, num_generators, "--model.generator.init_args.num_generators")
        doublings = _num_doublings(name, image_size)
        self.latent_dim, self.image_size, self.channels = latent_dim, image_size, channels
        self.num_classes = 0
        feats = generator_input_features(width, doublings)
        self.input_layers = nn.ModuleList(
            nn.ConvTranspose2d(latent_dim, feats, 4, 1, 0, bias=not batch_norm) for _ in range(num_generators)
        )
        self.input_norms = nn.ModuleList(nn.BatchNorm2d(feats) for _ in range(num_generators)) if batch_norm else None
        self.body = nn.Sequential(*generator_body(feats, doublings, channels, batch_norm))
        self.apply(_dcgan_init)
        if spectral_norm:
            spectral_normalize(self)

    def _latent(self, z: Tensor) -> Tensor:
        return z.reshape(z.shape[0], self.latent_dim, 1, 1)


class MGANDiscriminator(nn.Module):
    """MLP discriminator D with a K-way classifier C on the same features; returns ``(N, 1 + K)`` raw scores.

    The trunk is :class:`~gan_lightning.networks.MLPDiscriminator`'s (LeakyReLU 0.2 MLP, optional dropout,
    spectral norm and minibatch layer); D and C share it and differ only in their last Linear layer, as in the
    paper. Column 0 is D's score (a logit for the BCE losses), columns 1..K are C's logits over the generators.
    """

    def __init__(
        self,
        num_generators: int = 4,
        input_dim: int = 2,
        hidden_dims: Sequence[int] = (200, 200, 200),
        dropout: float = 0.0,
        spectral_norm: bool = False,
        minibatch_layer: str = "none",
    ):
        super().__init__()
        opt = "--model.discriminator.init_args"
        self.num_generators = _check_count("MGANDiscriminator", num_generators, f"{opt}.num_generators")
        dims = _check_dims("MGANDiscriminator", hidden_dims, f"{opt}.hidden_dims")
        self.input_dim = input_dim
        self.num_classes = 0
        layers, width = discriminator_blocks("MGANDiscriminator", input_dim, dims, dropout, minibatch_layer)
        self.trunk = nn.Sequential(*layers)
        self.score_head = nn.Linear(width, 1)
        self.classifier_head = nn.Linear(width, num_generators)
        self.minibatch_layer = minibatch_layer
        if spectral_norm:
            spectral_normalize(self)

    def forward(self, x: Tensor) -> Tensor:
        x = x.flatten(1)
        if x.shape[1] != self.input_dim:
            raise ConfigurationError(
                f"MGANDiscriminator expects {self.input_dim} values per sample but got {x.shape[1]}; set "
                f"--model.discriminator.init_args.input_dim={x.shape[1]}."
            )
        features = self.trunk(x)
        return torch.cat([self.score_head(features), self.classifier_head(features)], dim=1)


class MGANDCGANDiscriminator(nn.Module):
    """DCGAN discriminator D with a K-way classifier C on the same features; returns ``(N, 1 + K)`` raw scores.

    The trunk is :class:`~gan_lightning.networks.DCGANDiscriminator`'s (Radford et al. 2016: stride-2 4x4
    convolutions down to a 4x4 map, LeakyReLU 0.2, BatchNorm after the first layer, optional Dropout2d and
    spectral norm), with the same options and N(0, 0.02) initialisation. D and C share it and differ only in their
    last layer, as in the paper's convolutional models (Hoang et al. 2018): a 4x4 convolution to 1 channel (D's
    score, a logit for the BCE losses: column 0) and one to K channels (C's logits over the generators: columns
    1..K). No class conditioning and no minibatch layer.
    """

    def __init__(
        self,
        num_generators: int = 4,
        image_size: int = 32,
        channels: int = 3,
        width: int = 64,
        batch_norm: bool = True,
        dropout: float = 0.0,
        spectral_norm: bool = False,
    ):
        super().__init__()
        name = type(self).__name__
        self.num_generators = _check_count(name, num_generators, "--model.discriminator.init_args.num_generators")
        halvings = _num_doublings(name, image_size)
        self.image_size, self.channels = image_size, channels
        self.num_classes = 0
        layers, feats = discriminator_trunk(channels, halvings, width, batch_norm, dropout)
        self.trunk = nn.Sequential(*layers)
        self.score_head = nn.Conv2d(feats, 1, 4, 1, 0)
        self.classifier_head = nn.Conv2d(feats, num_generators, 4, 1, 0)
        self.apply(_dcgan_init)
        if spectral_norm:
            spectral_normalize(self)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 4 or tuple(x.shape[1:]) != (self.channels, self.image_size, self.image_size):
            raise ConfigurationError(
                f"MGANDCGANDiscriminator expects images of shape ({self.channels}, {self.image_size}, "
                f"{self.image_size}) but got {tuple(x.shape[1:])}; set the discriminator's image_size/channels "
                "(--model.discriminator.init_args.image_size, --model.discriminator.init_args.channels) to match "
                "the data."
            )
        features = self.trunk(x)
        return torch.cat([self.score_head(features).flatten(1), self.classifier_head(features).flatten(1)], dim=1)


@register_loss("mgan")
class MGANLoss(AdversarialLoss):
    """MGAN's losses over the ``(N, 1 + K)`` scores of an :class:`MGANDiscriminator` or
    :class:`MGANDCGANDiscriminator` (Hoang et al. 2018).

    Args:
        num_generators: K; default (null) reads it from the scores' width (1 + K). When set, it is checked.
        beta: weight of the classifier's cross-entropy in the generators' loss (the diversity term). The
            default 0.125 is this project's setting for the 2D mixtures, where it gave every mode (see the
            benchmarks page); it has not been checked against the paper's appendix. The authors' TensorFlow code
            (qhoangdl/MGAN) takes beta as an argument (1.0 in its model class, 0.01 in its CIFAR-10 run);
            ``experiments/dcgan_stacked_digits_mgan.yaml`` uses 0.01, the value for the paper's image models.
        base: the adversarial loss on D's column (default ``nonsaturating``, as in the paper's code).

    D minimises ``base.discriminator_loss(col 0) + CE(C(G(z)), i mod K)``; G minimises
    ``base.generator_loss(col 0) + beta * CE(C(G(z)), i mod K)``; C's logits on real samples are ignored.
    ``scores_are_logits``, ``generator_needs_real_scores``, ``after_discriminator_step`` come from the base loss,
    and its discriminator regularizers (WGAN-GP's penalty) act on column 0 only.
    """

    multi_column = True

    def __init__(
        self,
        num_generators: Optional[int] = None,
        beta: float = 0.125,
        base: Union[str, AdversarialLoss] = "nonsaturating",
    ):
        if num_generators is not None:
            _check_count("MGANLoss", num_generators, "--model.loss.init_args.num_generators")
        if not isinstance(beta, (int, float)) or not math.isfinite(beta) or beta < 0:
            raise ConfigurationError(f"MGANLoss: beta must be a finite number >= 0 (0.125 in the paper's 2D experiment), got {beta!r}; set --model.loss.init_args.beta.")
        self.num_generators = num_generators
        self.beta = float(beta)
        self.base = build_loss(base)
        if self.base.multi_column:
            raise ConfigurationError(
                f"MGANLoss: base must be a one-discriminator loss such as nonsaturating or hinge, got "
                f"{type(self.base).__name__}; set --model.loss.init_args.base."
            )

    @property
    def scores_are_logits(self) -> bool:  # type: ignore[override]
        return self.base.scores_are_logits

    @property
    def generator_needs_real_scores(self) -> bool:  # type: ignore[override]
        return self.base.generator_needs_real_scores

    def _check(self, scores: Tensor, which: str) -> int:
        k = scores.shape[1] - 1 if scores.dim() == 2 else 0
        if k < 1 or (self.num_generators is not None and k != self.num_generators):
            expected = f"(N, 1 + {self.num_generators})" if self.num_generators is not None else "(N, 1 + K)"
            raise ConfigurationError(
                f"MGANLoss needs {which} scores of shape {expected} (D's score, then the classifier's logits over the "
                f"generators) but got {tuple(scores.shape)}. Use gan_lightning.variants.mgan.MGANDiscriminator (or "
                "MGANDCGANDiscriminator for images) with the same num_generators as the MultiGenerator or "
                "MultiDCGANGenerator (and as --model.loss.init_args.num_generators, if set)."
            )
        return k

    def classifier_loss(self, fake_scores: Tensor) -> Tensor:
        """Cross-entropy of the classifier columns against the generator of each row, ``i mod K``."""
        k = self._check(fake_scores, "fake")
        labels = generator_labels(fake_scores.shape[0], k, fake_scores.device)
        return F.cross_entropy(fake_scores[:, 1:].float(), labels)

    def discriminator_loss(self, real_scores: Tensor, fake_scores: Tensor) -> Tensor:
        self._check(real_scores, "real")
        adversarial = self.base.discriminator_loss(real_scores[:, 0], fake_scores[:, 0])
        return adversarial + self.classifier_loss(fake_scores)

    def generator_loss(self, fake_scores: Tensor, real_scores: Optional[Tensor] = None) -> Tensor:
        self._check(fake_scores, "fake")
        real = None
        if real_scores is not None:
            self._check(real_scores, "real")
            real = real_scores[:, 0]
        adversarial = self.base.generator_loss(fake_scores[:, 0], real)
        if self.beta == 0.0:
            return adversarial
        return adversarial + self.beta * self.classifier_loss(fake_scores)

    def regularizers(self) -> list[Regularizer]:
        return per_discriminator(self.base.regularizers(), columns=[0])

    @torch.no_grad()
    def diagnostic_scores(self, real_scores: Tensor, fake_scores: Tensor) -> tuple[AdversarialLoss, Tensor, Tensor]:
        return self.base.diagnostic_scores(real_scores[:, 0], fake_scores[:, 0])  # column 0 is D; the rest is C

    def after_discriminator_step(self, discriminator: nn.Module) -> None:
        self.base.after_discriminator_step(discriminator)
