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
