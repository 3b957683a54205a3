"""Is the discriminator memorising its training set? D's outputs on training images against held-out ones.

Karras et al. 2020 ("Training Generative Adversarial Networks with Limited Data", Fig. 1b) diagnose overfitting by
scoring three sets with D as training goes: the real images it trains on, real images it never sees, and generated
ones. While D generalises, held-out reals score like training reals; once it memorises, their scores slide toward
the generated ones and FID starts to rise. That is the failure discriminator augmentation exists to prevent, so this
is how a user decides whether ``--model.augment`` can help a run at all.

The summary is one scale-free number, ``overfitting/holdout_position`` = (mean D(train) - mean D(held-out)) /
(mean D(train) - mean D(fake)): 0 when D scores held-out reals like the training reals, 1 when it scores them like
fakes. D and G run as in training (train mode, BatchNorm with batch statistics) but leave their running statistics and
the global random state alone, and nothing is augmented: the numbers are what D thinks of the images themselves.
"""

from __future__ import annotations

import math
from typing import Any, Optional, Union

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from torch import Tensor
from torch.utils.data import Dataset

from gan_lightning.callbacks.diagnostics import log_scalars
from gan_lightning.errors import ConfigurationError
from gan_lightning.regularizers import batchnorm_statistics_unchanged

TRAIN, HOLDOUT, FAKE = "overfitting/d_train_real", "overfitting/d_holdout_real", "overfitting/d_fake"
POSITION = "overfitting/holdout_position"
ACC_TRAIN, ACC_HOLDOUT = "overfitting/acc_train_real", "overfitting/acc_holdout_real"


def take_samples(dataset: Dataset, num: Optional[int], seed: int = 0) -> tuple[Tensor, Optional[Tensor]]:
    """(images, labels or None): ``num`` items of a dataset yielding images or (image, label), a seeded random choice."""
    total = len(dataset)  # type: ignore[arg-type]
    if total == 0:
        raise ConfigurationError("DiscriminatorOverfittingCallback got an empty dataset; give it real images.")
    if num is None or num >= total:
        indices = list(range(total))
    else:
        indices = torch.randperm(total, generator=torch.Generator().manual_seed(seed))[:num].sort().values.tolist()
    items = [dataset[i] for i in indices]
    if isinstance(items[0], (list, tuple)):
        labels = torch.as_tensor([int(item[1]) for item in items]) if len(items[0]) > 1 else None
        return torch.stack([torch.as_tensor(item[0]) for item in items]), labels
    return torch.stack([torch.as_tensor(item) for item in items]), None


def _device_types(device: torch.device) -> list[Any]:
    return [device] if device.type == "cuda" else []


@torch.no_grad()
def _scores(pl_module: Any, images: Tensor, labels: Optional[Tensor], batch_size: int) -> Tensor:
    chunks = []
    for i in range(0, len(images), batch_size):
        x = images[i : i + batch_size].to(pl_module.device)
        y = None if labels is None or not pl_module.num_classes else labels[i : i + batch_size].to(pl_module.device)
        chunks.append(pl_module.run_discriminator(pl_module.discriminator, x, y).float())
    return torch.cat(chunks)


@torch.no_grad()
def _fakes(pl_module: Any, num: int, seed: int, batch_size: int) -> tuple[Tensor, Optional[Tensor]]:
    rng = torch.Generator().manual_seed(seed)
    z = torch.randn(num, pl_module.latent_dim, generator=rng) if pl_module.latent_distribution == "normal" else (
        torch.rand(num, pl_module.latent_dim, generator=rng) * 2 - 1)
    labels = pl_module.sample_labels(num, rng)
    chunks = []
    for i in range(0, num, batch_size):
        y = None if labels is None else labels[i : i + batch_size]
        chunks.append(pl_module.run_generator(pl_module.generator, z[i : i + batch_size].to(pl_module.device), y))
    return torch.cat(chunks), labels


def measure_overfitting(
    pl_module: Any,
    train: tuple[Tensor, Optional[Tensor]],
    holdout: tuple[Tensor, Optional[Tensor]],
    batch_size: int = 64,
    seed: int = 0,
    threshold: Optional[float] = None,
) -> dict[str, Tensor]:
    """Mean D scores on training reals, held-out reals and ``len(holdout)`` fakes (latents from ``seed``), their
    accuracies where the loss has a decision threshold, and ``holdout_position``; device tensors, no host sync."""
    networks = (pl_module.generator, pl_module.discriminator)
    modes = [n.training for n in networks]
    try:
        for network in networks:
            network.train()  # as in training: BatchNorm normalises with each (homogeneous) batch's statistics
        with torch.random.fork_rng(devices=_device_types(pl_module.device)), \
                batchnorm_statistics_unchanged(pl_module.generator), batchnorm_statistics_unchanged(pl_module.discriminator):
            fake, fake_labels = _fakes(pl_module, len(holdout[0]), seed, batch_size)
            train_scores = _scores(pl_module, *train, batch_size)
            holdout_scores = _scores(pl_module, *holdout, batch_size)
            raw_fake_scores = _scores(pl_module, fake, fake_labels, batch_size)
    finally:
        for network, mode in zip(networks, modes):
            network.train(mode)
    # the adversarial columns only (MGAN's classifier logits, several discriminators: the loss knows which)
    loss, train_scores, fake_scores = pl_module.loss.diagnostic_scores(train_scores, raw_fake_scores)
    _, holdout_scores, _ = pl_module.loss.diagnostic_scores(holdout_scores, raw_fake_scores)
    t, h, f = train_scores.mean(), holdout_scores.mean(), fake_scores.mean()
    gap = t - f  # undefined while D cannot tell training reals from fakes at all
    position = torch.where(gap.abs() > 1e-6, (t - h) / gap, torch.full_like(gap, math.nan))
    metrics = {TRAIN: t, HOLDOUT: h, FAKE: f, POSITION: position}
    threshold = loss.decision_threshold() if threshold is None else threshold
    if threshold is not None:
        metrics[ACC_TRAIN] = (train_scores > threshold).float().mean()
        metrics[ACC_HOLDOUT] = (holdout_scores > threshold).float().mean()
    return metrics


class DiscriminatorOverfittingCallback(Callback):
    """Every ``every_n_steps`` generator steps, log how D scores training reals, held-out reals and fakes.

    Args:
        holdout: real images D never trains on, named like :class:`~gan_lightning.callbacks.GANEvaluation`'s
            ``reference``: a folder of images, or a datamodule (``{class_path: ..., init_args: ...}`` or a YAML file)
            whose training set is the held-out set. It must not overlap the training set, or the diagnostic shows
            nothing. Default: the training datamodule's ``held_out_dataset()`` (``DigitsDataModule`` with a
            ``subset``: the digits it leaves out).
        every_n_steps: interval in generator steps.
        num_images: training and held-out images scored (a seeded random choice of each); as many fakes.
        batch_size: images per D pass (default: D's real batch in training, the datamodule's batch size / n_critic,
            so BatchNorm sees batches as in training).
        seed: latent seed of the fakes and of the image choice, the same at every evaluation.
        threshold: the score above which D calls an image real (default: the loss's).

    Scalars: ``overfitting/d_train_real``, ``overfitting/d_holdout_real``, ``overfitting/d_fake`` (mean raw scores),
    ``overfitting/holdout_position`` (0: held-out reals scored like training reals; 1: like fakes), and the
    fraction of each real set D calls real, ``overfitting/acc_train_real`` and ``overfitting/acc_holdout_real``.
    """

    def __init__(
        self,
        holdout: Union[str, dict, None] = None,
        every_n_steps: int = 500,
        num_images: int = 500,
        batch_size: Optional[int] = None,
        seed: int = 0,
        threshold: Optional[float] = None,
    ):
        if every_n_steps < 1:
            raise ConfigurationError(f"DiscriminatorOverfittingCallback: every_n_steps must be >= 1, got {every_n_steps}")
        if num_images < 2:
            raise ConfigurationError(f"DiscriminatorOverfittingCallback: num_images must be >= 2, got {num_images}")
        if batch_size is not None and batch_size < 2:
            raise ConfigurationError("DiscriminatorOverfittingCallback: batch_size must be >= 2 (BatchNorm needs a batch)")
        self.holdout, self.every_n_steps, self.num_images = holdout, every_n_steps, num_images
        self.batch_size, self.seed, self.threshold = batch_size, seed, threshold
        self._train: Optional[tuple[Tensor, Optional[Tensor]]] = None
        self._holdout: Optional[tuple[Tensor, Optional[Tensor]]] = None

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        datamodule = getattr(trainer, "datamodule", None)
        dataset = getattr(datamodule, "train_dataset", None) if datamodule is not None else None
        if dataset is None:
            raise ConfigurationError(
                "DiscriminatorOverfittingCallback needs a gan_lightning datamodule (it reads its train_dataset); "
                "train with --data=... ."
            )
        if getattr(datamodule, "kind", "image") == "points":
            raise ConfigurationError("DiscriminatorOverfittingCallback is for images; the 2D mixtures have no held-out set.")
        self._train = take_samples(dataset, self.num_images, self.seed)
        self._holdout = take_samples(self._holdout_dataset(datamodule, tuple(self._train[0].shape[1:])), self.num_images, self.seed)
        if self._holdout[0].shape[1:] != self._train[0].shape[1:]:
            raise ConfigurationError(
                f"DiscriminatorOverfittingCallback: held-out images have shape {tuple(self._holdout[0].shape[1:])}, "
                f"training images {tuple(self._train[0].shape[1:])}; load both at the same size and channels."
            )
        if self.batch_size is None:  # D's real batches in training: the loader's batch split n_critic ways
            n_critic = int(getattr(pl_module, "n_critic", 1))
            self.batch_size = max(2, int(getattr(datamodule, "batch_size", 64)) // n_critic)

    def _holdout_dataset(self, datamodule: Any, shape: tuple[int, ...]) -> Dataset:
        from gan_lightning.metrics.reference import ImageReference, parse_reference

        if self.holdout is None:
            if not callable(getattr(datamodule, "held_out_dataset", None)):
                raise ConfigurationError(
                    f"DiscriminatorOverfittingCallback needs held-out real images and {type(datamodule).__name__} has none "
                    "of its own: set `holdout` to a folder of images D does not train on (or a datamodule config)."
                )
            return datamodule.held_out_dataset()
        reference = parse_reference(self.holdout, shape)
        if not isinstance(reference, ImageReference):
            raise ConfigurationError(
                f"DiscriminatorOverfittingCallback: holdout={self.holdout!r} is not a set of real images; give a folder of "
                "images or a datamodule config whose training set holds images D does not train on."
            )
        return reference.dataset

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int) -> None:
        if self._train is None or self._holdout is None or trainer.global_step % self.every_n_steps:
            return
        metrics = measure_overfitting(pl_module, self._train, self._holdout, self.batch_size or 64, self.seed, self.threshold)
        log_scalars(trainer, pl_module, metrics)
