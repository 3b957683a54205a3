import math

import pytest
import torch

from gan_lightning import available_losses, build_loss
from gan_lightning.errors import ConfigurationError
from gan_lightning.losses import (
    HingeLoss,
    LeastSquaresLoss,
    MinimaxLoss,
    NonSaturatingLoss,
    RelativisticAverageLoss,
    WassersteinGPLoss,
    WassersteinLoss,
)
from gan_lightning.regularizers import GradientPenalty

LOG2 = math.log(2.0)
zeros = torch.zeros(8)


def test_bce_family_at_zero_scores_gives_log2_terms():
    assert NonSaturatingLoss().discriminator_loss(zeros, zeros).item() == pytest.approx(2 * LOG2)
    assert NonSaturatingLoss().generator_loss(zeros).item() == pytest.approx(LOG2)
    assert MinimaxLoss().generator_loss(zeros).item() == pytest.approx(-LOG2)
    assert RelativisticAverageLoss().discriminator_loss(zeros, zeros).item() == pytest.approx(2 * LOG2)
    assert RelativisticAverageLoss().generator_loss(zeros, zeros).item() == pytest.approx(2 * LOG2)


def test_bce_matches_torch_bce_on_random_scores():
    torch.manual_seed(0)
    r, f = torch.randn(64) * 3, torch.randn(64) * 3
    bce = torch.nn.functional.binary_cross_entropy_with_logits
    expected = bce(r, torch.ones_like(r)) + bce(f, torch.zeros_like(f))
    assert NonSaturatingLoss().discriminator_loss(r, f).item() == pytest.approx(expected.item(), rel=1e-6)
    assert NonSaturatingLoss().generator_loss(f).item() == pytest.approx(bce(f, torch.ones_like(f)).item(), rel=1e-6)
    smoothed = bce(r, torch.full_like(r, 0.9)) + bce(f, torch.zeros_like(f))
    assert NonSaturatingLoss(label_smoothing=0.1).discriminator_loss(r, f).item() == pytest.approx(smoothed.item(), rel=1e-6)


def test_bce_is_stable_for_extreme_logits():
    big = torch.tensor([1e4, -1e4])
    for loss in (NonSaturatingLoss(), MinimaxLoss()):
        assert torch.isfinite(loss.discriminator_loss(big, big))
        assert torch.isfinite(loss.generator_loss(big))


def test_lsgan_closed_form():
    r, f = torch.tensor([1.0, 3.0]), torch.tensor([0.0, 2.0])
    loss = LeastSquaresLoss()  # a=0, b=1, c=1
    # D: 0.5*mean((r-1)^2) + 0.5*mean(f^2) = 0.5*2 + 0.5*2
    assert loss.discriminator_loss(r, f).item() == pytest.approx(2.0)
    assert loss.generator_loss(f).item() == pytest.approx(0.5 * (1 + 1) / 2)
    assert LeastSquaresLoss(a=-1, b=1, c=0).generator_loss(f).item() == pytest.approx(0.5 * (0 + 4) / 2)


def test_wasserstein_and_hinge_closed_form():
    r, f = torch.tensor([2.0, 0.0]), torch.tensor([-0.5, 0.5])
    assert WassersteinLoss().discriminator_loss(r, f).item() == pytest.approx(0.0 - 1.0)
    assert WassersteinLoss().generator_loss(f).item() == pytest.approx(0.0)
    # hinge D: mean(relu(1-r)) + mean(relu(1+f)) = (0+1)/2 + (0.5+1.5)/2
    assert HingeLoss().discriminator_loss(r, f).item() == pytest.approx(1.5)
    assert HingeLoss().generator_loss(f).item() == pytest.approx(0.0)


@pytest.mark.parametrize("name", ["minimax", "nonsaturating", "lsgan", "wgan", "wgan-gp", "hinge", "ragan"])
def test_generator_gradient_pushes_fake_scores_toward_real(name):
    loss = build_loss(name)
    fake = torch.full((4,), 0.25, requires_grad=True)
    real = torch.full((4,), 0.5)
    loss.generator_loss(fake, real).backward()
    assert (fake.grad < 0).all(), "a gradient step must raise D(G(z))"
    # and the discriminator is pushed the other way on fakes, toward higher scores on reals
    r = real.clone().requires_grad_(True)
    f = fake.detach().clone().requires_grad_(True)
    loss.discriminator_loss(r, f).backward()
    assert (r.grad < 0).all() and (f.grad > 0).all()


def test_registry_names_class_names_and_paths():
    assert set(available_losses()) >= {"minimax", "nonsaturating", "lsgan", "wgan", "wgan-gp", "hinge"}
    assert isinstance(build_loss("hinge"), HingeLoss)
    assert isinstance(build_loss("HingeLoss"), HingeLoss)
    assert isinstance(build_loss("gan_lightning.losses.HingeLoss"), HingeLoss)
    assert isinstance(build_loss("WGAN_GP"), WassersteinGPLoss)


def test_unknown_loss_name_lists_the_valid_ones():
    with pytest.raises(ConfigurationError, match="Unknown adversarial loss 'hingee'.*hinge"):
        build_loss("hingee")
    with pytest.raises(ConfigurationError):
        build_loss("torch.nn.MSELoss")


def test_wgan_gp_brings_its_penalty_and_wgan_clips():
    regs = WassersteinGPLoss(gp_weight=5.0).regularizers()
    assert len(regs) == 1 and isinstance(regs[0], GradientPenalty) and regs[0].weight == 5.0
    d = torch.nn.Linear(3, 1)
    torch.nn.init.constant_(d.weight, 1.0)
    WassersteinLoss(clip_value=0.01).after_discriminator_step(d)
    assert d.weight.abs().max().item() == pytest.approx(0.01)


def test_invalid_loss_options_are_refused():
    with pytest.raises(ConfigurationError):
        NonSaturatingLoss(label_smoothing=1.5)
    with pytest.raises(ConfigurationError):
        WassersteinLoss(clip_value=-1)
