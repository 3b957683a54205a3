import math

import pytest
import torch

from gan_lightning import GANCheckpoint
from gan_lightning.losses import NonSaturatingLoss
from gan_lightning.runtime.nonfinite import NonFiniteError

from conftest import quiet_trainer, tiny_gan, tiny_ring


class NaNAfter(NonSaturatingLoss):
    """A loss that goes NaN on chosen discriminator calls (1-based)."""

    def __init__(self, bad_calls):
        super().__init__()
        self.bad_calls, self.calls = set(bad_calls), 0

    def discriminator_loss(self, real_scores, fake_scores):
        self.calls += 1
        loss = super().discriminator_loss(real_scores, fake_scores)
        return loss * math.nan if self.calls in self.bad_calls else loss


def test_stop_policy_names_network_term_and_step_and_never_checkpoints_nan(tmp_path):
    model = tiny_gan(loss=NaNAfter(range(7, 10_000)))
    ckpt = GANCheckpoint(dirpath=tmp_path, every_n_train_steps=1, save_top_k=-1, filename="{step}")
    trainer = quiet_trainer(max_steps=20, log_every_n_steps=5, callbacks=[ckpt], enable_checkpointing=True)
    with pytest.raises(NonFiniteError, match=r"discriminator adversarial loss \(first at generator step 7\)"):
        trainer.fit(model, tiny_ring())
    saved = sorted(p.name for p in tmp_path.glob("*.ckpt"))
    assert saved == [f"step={i}.ckpt" for i in range(1, 7)]  # steps 1-6 (the NaN appeared in step 7's D update)
    for name in saved:
        state = torch.load(tmp_path / name, weights_only=True)["state_dict"]
        assert all(torch.isfinite(v).all() for v in state.values())


def test_stop_policy_checks_only_every_n_steps(tmp_path):
    model = tiny_gan(loss=NaNAfter([3]))
    with pytest.raises(NonFiniteError, match="detected at generator step 10"):
        quiet_trainer(max_steps=20, log_every_n_steps=10).fit(model, tiny_ring())


def test_skip_policy_skips_and_counts_and_keeps_weights_finite():
    model = tiny_gan(loss=NaNAfter([2, 3, 5]), nonfinite="skip")
    trainer = quiet_trainer(max_steps=8)
    trainer.fit(model, tiny_ring())
    assert model.nonfinite.skipped == {"discriminator": 3, "generator": 0}
    assert trainer.global_step == 8
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_skip_policy_gives_up_after_many_skipped_generator_updates():
    class GNaN(NonSaturatingLoss):
        def generator_loss(self, fake_scores, real_scores=None):
            return super().generator_loss(fake_scores) * math.nan

    model = tiny_gan(loss=GNaN(), nonfinite="skip")
    model.nonfinite.max_consecutive_skips = 3
    with pytest.raises(NonFiniteError, match="3 generator updates in a row"):
        quiet_trainer(max_steps=10).fit(model, tiny_ring())
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_skip_policy_leaves_an_overflowing_penalty_to_the_grad_scaler():
    """Under 16-mixed a penalty overflows while the loss scale is too high; skipping the update would keep the
    scale (and the overflow) for ever, so the GradScaler must see it, skip the step and lower the scale."""
    from lightning.pytorch.plugins import MixedPrecision

    from gan_lightning.regularizers import GradientPenalty

    model = tiny_gan(regularizers=[GradientPenalty()], nonfinite="skip")
    before = [p.detach().clone() for p in model.discriminator.parameters()]
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**40)
    trainer = quiet_trainer(max_steps=40, plugins=[MixedPrecision("16-mixed", "cpu", scaler=scaler)])
    trainer.fit(model, tiny_ring())
    assert model.nonfinite.skipped["discriminator"] == 0
    assert model.optimizer_steps.scalers["discriminator"].get_scale() < 2.0**30  # the scaler backed off
    assert any(not torch.equal(a, b) for a, b in zip(before, model.discriminator.parameters()))  # and D trained
