"""DiscriminatorOverfittingCallback: D's scores on training reals, held-out reals and fakes (Karras et al. 2020, Fig. 1b)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from conftest import quiet_trainer, tiny_gan, tiny_ring
from gan_lightning import GANModule
from gan_lightning.callbacks.overfitting import (
    ACC_HOLDOUT,
    ACC_TRAIN,
    POSITION,
    DiscriminatorOverfittingCallback,
    measure_overfitting,
)
from gan_lightning.data import DigitsDataModule
from gan_lightning.errors import ConfigurationError
from gan_lightning.networks import DCGANDiscriminator, DCGANGenerator

HELD_OUT = {"class_path": "gan_lightning.data.DigitsDataModule", "init_args": {"image_size": 8, "subset": 64, "held_out": True}}


class BlankGenerator(nn.Module):
    """Every sample is a black 8x8 image."""

    latent_dim = 4

    def __init__(self):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(1))

    def forward(self, z):
        return torch.full((z.shape[0], 1, 8, 8), -1.0) + 0 * self.bias


class LookupDiscriminator(nn.Module):
    """+5 for an exact training image, -5 for anything else: pure memorisation."""

    def __init__(self, train: torch.Tensor):
        super().__init__()
        self.register_buffer("memory", train.flatten(1))

    def forward(self, x):
        distance = torch.cdist(x.flatten(1), self.memory).min(dim=1).values
        return torch.where(distance < 1e-4, 5.0, -5.0)


class StrokeDiscriminator(nn.Module):
    """+3 for any image with a bright stroke, -3 for a blank one: a rule that holds for every digit."""

    def forward(self, x):
        return torch.where(x.flatten(1).amax(dim=1) > 0.5, 3.0, -3.0)


class ConstantDiscriminator(nn.Module):
    def forward(self, x):
        return torch.zeros(x.shape[0])


def _digits(held_out: bool = False):
    dataset = DigitsDataModule(image_size=8, subset=64, held_out=held_out).train_dataset
    return dataset.tensors[0][:64], None


def test_a_memorising_discriminator_scores_held_out_reals_like_fakes():
    train, holdout = _digits(), _digits(held_out=True)
    memorising = GANModule(BlankGenerator(), LookupDiscriminator(train[0]))
    metrics = measure_overfitting(memorising, train, holdout, batch_size=16)
    assert metrics[POSITION].item() == pytest.approx(1.0)
    assert metrics[ACC_TRAIN].item() == 1.0 and metrics[ACC_HOLDOUT].item() == 0.0

    generalising = GANModule(BlankGenerator(), StrokeDiscriminator())
    metrics = measure_overfitting(generalising, train, holdout, batch_size=16)
    assert metrics[POSITION].item() == pytest.approx(0.0)
    assert metrics[ACC_TRAIN].item() == 1.0 and metrics[ACC_HOLDOUT].item() == 1.0

    undecided = GANModule(BlankGenerator(), ConstantDiscriminator())  # fakes score as reals: no position to give
    assert math.isnan(measure_overfitting(undecided, train, holdout)[POSITION].item())


def test_measuring_leaves_batchnorm_statistics_modes_and_the_random_state_alone():
    torch.manual_seed(0)
    model = GANModule(DCGANGenerator(latent_dim=8, image_size=8, channels=1, width=8),
                      DCGANDiscriminator(image_size=8, channels=1, width=8, dropout=0.3))
    model.generator.eval()
    buffers = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()
    first = measure_overfitting(model, _digits(), _digits(held_out=True), batch_size=16, seed=3)
    assert torch.equal(torch.get_rng_state(), rng)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in buffers.items())
    assert not model.generator.training and model.discriminator.training
    again = measure_overfitting(model, _digits(), _digits(held_out=True), batch_size=16, seed=3)
    assert all(torch.equal(first[k], again[k]) for k in first)  # the same fakes and images every time


def test_the_callback_logs_during_fit_and_changes_nothing_about_training():
    def fit(callbacks):
        torch.manual_seed(0)
        model = GANModule(DCGANGenerator(latent_dim=8, image_size=8, channels=1, width=8),
                          DCGANDiscriminator(image_size=8, channels=1, width=8))
        trainer = quiet_trainer(max_steps=4, callbacks=callbacks)
        trainer.fit(model, DigitsDataModule(image_size=8, subset=64, batch_size=32))
        return model, trainer

    plain, _ = fit([])
    callback = DiscriminatorOverfittingCallback(every_n_steps=2, num_images=64)  # the digits the subset leaves out
    watched, trainer = fit([callback])
    assert callback.batch_size == 32 and len(callback._holdout[0]) == 64
    rest = DigitsDataModule(**HELD_OUT["init_args"]).train_dataset.tensors[0]
    assert all(any(torch.equal(image, other) for other in rest) for image in callback._holdout[0][:5])
    assert all(torch.equal(a, b) for a, b in zip(plain.state_dict().values(), watched.state_dict().values()))
    logged = trainer.callback_metrics
    assert {POSITION, ACC_TRAIN, "overfitting/d_holdout_real", "overfitting/d_fake"} <= set(logged)
    assert all(math.isfinite(float(logged[k])) for k in ("overfitting/d_train_real", "overfitting/d_holdout_real"))


def test_the_callback_says_what_is_wrong_with_its_inputs():
    with pytest.raises(ConfigurationError, match="every_n_steps must be >= 1"):
        DiscriminatorOverfittingCallback(HELD_OUT, every_n_steps=0)
    with pytest.raises(ConfigurationError, match="none are held out: set --data.init_args.subset=N"):
        quiet_trainer(max_steps=1, callbacks=[DiscriminatorOverfittingCallback()]).fit(
            GANModule(DCGANGenerator(latent_dim=8, image_size=8, channels=1, width=8),
                      DCGANDiscriminator(image_size=8, channels=1, width=8)), DigitsDataModule(image_size=8, batch_size=32))
    with pytest.raises(ConfigurationError, match="is for images"):
        quiet_trainer(max_steps=1, callbacks=[DiscriminatorOverfittingCallback("ring8")]).fit(tiny_gan(), tiny_ring())
    model = GANModule(DCGANGenerator(latent_dim=8, image_size=8, channels=1, width=8),
                      DCGANDiscriminator(image_size=8, channels=1, width=8))
    wrong_size = {**HELD_OUT, "init_args": {**HELD_OUT["init_args"], "image_size": 16}}
    with pytest.raises(ConfigurationError, match="load both at the same size"):
        quiet_trainer(max_steps=1, callbacks=[DiscriminatorOverfittingCallback(wrong_size)]).fit(
            model, DigitsDataModule(image_size=8, subset=64, batch_size=32))
    with pytest.raises(ConfigurationError, match="not a set of real images"):
        quiet_trainer(max_steps=1, callbacks=[DiscriminatorOverfittingCallback("grid25")]).fit(
            model, DigitsDataModule(image_size=8, subset=64, batch_size=32))


def test_a_folder_of_images_is_a_held_out_set(tmp_path):
    from PIL import Image

    for i in range(6):
        Image.new("L", (20, 12), color=40 * i).save(tmp_path / f"{i}.png")
    callback = DiscriminatorOverfittingCallback(str(tmp_path), every_n_steps=1, num_images=4)
    model = GANModule(DCGANGenerator(latent_dim=8, image_size=8, channels=1, width=8),
                      DCGANDiscriminator(image_size=8, channels=1, width=8))
    trainer = quiet_trainer(max_steps=1, callbacks=[callback])
    trainer.fit(model, DigitsDataModule(image_size=8, subset=64, batch_size=32))
    assert callback._holdout[0].shape == (4, 1, 8, 8) and callback._holdout[0].min() >= -1
    assert POSITION in trainer.callback_metrics
    from gan_lightning.data import ImageFolderDataModule

    with pytest.raises(ConfigurationError, match="has none of its own: set `holdout` to a folder"):
        quiet_trainer(max_steps=1, callbacks=[DiscriminatorOverfittingCallback()]).fit(
            model, ImageFolderDataModule(str(tmp_path), image_size=8, channels=1, batch_size=2))


def test_multi_column_discriminators_are_read_through_their_loss():
    from gan_lightning.variants.mgan import MGANDCGANDiscriminator, MGANLoss, MultiDCGANGenerator

    torch.manual_seed(0)
    model = GANModule(MultiDCGANGenerator(num_generators=4, latent_dim=8, image_size=8, channels=1, width=8),
                      MGANDCGANDiscriminator(num_generators=4, image_size=8, channels=1, width=8), loss=MGANLoss(num_generators=4))
    metrics = measure_overfitting(model, _digits(), _digits(held_out=True), batch_size=16)
    raw = model.discriminator(_digits()[0][:16])
    assert raw.shape == (16, 5) and metrics["overfitting/d_train_real"].dim() == 0  # D's column only, one mean
    assert math.isfinite(metrics[POSITION].item())
