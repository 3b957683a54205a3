"""Mixed precision on CPU: bf16-mixed natively, 16-mixed through an explicit CPU GradScaler plugin."""

import pytest
import torch
from lightning.pytorch.plugins import MixedPrecision

from gan_lightning.regularizers import input_gradients

from conftest import quiet_trainer, tiny_gan, tiny_ring


def _precision(kind):
    if kind == "16-mixed":  # Lightning turns "16-mixed" into bf16 on CPU unless the plugin is given explicitly
        return {"plugins": [MixedPrecision("16-mixed", "cpu", scaler=torch.amp.GradScaler("cpu"))]}
    return {"precision": kind}


@pytest.mark.parametrize("kind", ["bf16-mixed", "16-mixed"])
@pytest.mark.parametrize("loss", ["nonsaturating", "lsgan", "wgan", "wgan-gp", "hinge", "ragan"])
def test_every_loss_trains_under_mixed_precision(kind, loss):
    model = tiny_gan(loss=loss, n_critic=2)
    trainer = quiet_trainer(max_steps=6, **_precision(kind))
    trainer.fit(model, tiny_ring())
    assert trainer.global_step == 6
    assert all(torch.isfinite(p).all() for p in model.parameters())


@pytest.mark.parametrize("kind", ["bf16-mixed", "16-mixed"])
def test_regularizers_train_under_mixed_precision(kind):
    from gan_lightning.regularizers import DRAGANPenalty, ModeSeekingRegularizer, R1Penalty, R2Penalty

    regs = [R1Penalty(), R2Penalty(every=2), DRAGANPenalty(), ModeSeekingRegularizer()]
    model = tiny_gan(regularizers=regs, unrolled_steps=2, discriminator_grad_clip=1.0, generator_grad_clip=1.0)
    trainer = quiet_trainer(max_steps=4, **_precision(kind))
    trainer.fit(model, tiny_ring())
    assert trainer.global_step == 4
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_input_gradients_under_float16_need_the_loss_scale():
    """Tiny input gradients underflow to 0 in float16; scaled by the loss scale they match float32."""
    torch.manual_seed(0)
    critic = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
    with torch.no_grad():  # each factor is representable in float16, their product (~1e-9) is not
        critic[0].weight.mul_(1e-4)
        critic[2].weight.mul_(1e-4)
    x = torch.randn(16, 4, requires_grad=True)
    reference = input_gradients(critic(x), x)
    with torch.autocast("cpu", dtype=torch.float16):
        unscaled = input_gradients(critic(x), x)
        scaled = input_gradients(critic(x), x, grad_scale=torch.tensor(2.0**14))
    assert reference.abs().max() > 0 and unscaled.abs().max() == 0  # the failure the recipe prevents
    torch.testing.assert_close(scaled, reference, rtol=2e-2, atol=1e-12)


def test_16_mixed_gives_each_network_its_own_scaler_and_does_not_count_skipped_generator_steps(tmp_path):
    from gan_lightning import GANCheckpoint
    from gan_lightning.losses import NonSaturatingLoss

    class OverflowOnce(NonSaturatingLoss):
        """A finite generator loss whose scaled float16 gradients overflow on the 3rd generator update."""

        calls = 0

        def generator_loss(self, fake_scores, real_scores=None):
            type(self).calls += 1
            loss = super().generator_loss(fake_scores)
            return loss * 1e4 if type(self).calls == 3 else loss  # finite in float16, scaled gradients are not

    model = tiny_gan(loss=OverflowOnce())
    steps = []
    model.training_step = (lambda orig: (lambda *a, **k: (steps.append(1), orig(*a, **k))[1]))(model.training_step)
    ckpt = GANCheckpoint(dirpath=tmp_path, save_last=True)
    trainer = quiet_trainer(max_steps=5, callbacks=[ckpt], enable_checkpointing=True, **_precision("16-mixed"))
    trainer.fit(model, tiny_ring())
    skipped = model.optimizer_steps.skipped_generator_steps
    assert skipped >= 1  # the forced overflow (an early step at the initial scale 2**16 may overflow too)
    assert trainer.global_step == 5 and len(steps) == 5 + skipped  # skipped updates are not generator steps
    g_scale, d_scale = model.optimizer_steps.scalers["generator"].get_scale(), model.optimizer_steps.scalers["discriminator"].get_scale()
    assert g_scale == 2.0**16 / 2**skipped  # G's scale backed off once per skipped G step ...
    assert d_scale > g_scale  # ... and D's scale did not follow G's overflows
    state = torch.load(tmp_path / "last.ckpt", weights_only=True)
    assert state["MixedPrecision"]["scale"] == g_scale
    assert state["discriminator_grad_scaler"]["scale"] == d_scale
