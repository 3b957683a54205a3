"""The update schedule, step semantics and intervals of GANModule."""

import csv
from pathlib import Path

import pytest
import torch
from lightning.pytorch.loggers import CSVLogger

from gan_lightning import GANCheckpoint
from gan_lightning.errors import ConfigurationError
from gan_lightning.networks import DCGANDiscriminator, DCGANGenerator

from conftest import quiet_trainer, tiny_gan, tiny_ring


def _flat(module):
    return torch.cat([p.detach().flatten().clone() for p in module.parameters()])


def _grads(module):
    return [None if p.grad is None else p.grad.clone() for p in module.parameters()]


def _same_grads(a, b):
    return all((x is None and y is None) or (x is not None and y is not None and torch.equal(x, y)) for x, y in zip(a, b))


class Recorder:
    """Watches every optimizer step: which network stepped, and what changed on the other one."""

    def __init__(self, model):
        self.model, self.events, self._before = model, [], None

    def attach(self, opt, name):
        opt.register_step_pre_hook(lambda *_: self._pre(name))
        opt.register_step_post_hook(lambda *_: self._post(name))

    def _pre(self, name):
        m = self.model
        self._before = (_flat(m.generator), _flat(m.discriminator), _grads(m.generator), _grads(m.discriminator))

    def _post(self, name):
        m = self.model
        g0, d0, gg0, dg0 = self._before
        g1, d1 = _flat(m.generator), _flat(m.discriminator)
        other_params_same = torch.equal(g0, g1) if name == "D" else torch.equal(d0, d1)
        other_grads_same = _same_grads(gg0, _grads(m.generator)) if name == "D" else _same_grads(dg0, _grads(m.discriminator))
        own_changed = not torch.equal(d0, d1) if name == "D" else not torch.equal(g0, g1)
        self.events.append((name, other_params_same, own_changed, other_grads_same))


@pytest.mark.parametrize("n_critic", [1, 3])
def test_n_critic_schedule_and_frozen_networks(n_critic):
    model = tiny_gan(n_critic=n_critic, loss="wgan")
    recorder = Recorder(model)

    orig = model.configure_optimizers

    def configure():
        g, d = orig()
        recorder.attach(g, "G")
        recorder.attach(d, "D")
        return [g, d]

    model.configure_optimizers = configure
    max_steps = 4
    trainer = quiet_trainer(max_steps=max_steps)
    trainer.fit(model, tiny_ring())
    names = [e[0] for e in recorder.events]
    assert names == (["D"] * n_critic + ["G"]) * max_steps
    assert trainer.global_step == max_steps
    for name, other_same, own_changed, other_grads_same in recorder.events:
        assert other_same, f"the frozen network changed during a {name} update"
        assert other_grads_same, f"the frozen network received gradients during a {name} update"
        assert own_changed, f"the {name} update did not change its network"


def test_weight_clipping_holds_after_every_critic_step():
    model = tiny_gan(loss="wgan", n_critic=2, discriminator_optimizer=lambda p: torch.optim.SGD(p, lr=1.0))
    seen = []
    orig_after = model.loss.after_discriminator_step

    def after(d):
        orig_after(d)
        seen.append(max(p.abs().max().item() for p in d.parameters()))

    model.loss.after_discriminator_step = after
    quiet_trainer(max_steps=3).fit(model, tiny_ring())
    assert len(seen) == 6 and max(seen) <= 0.01 + 1e-7


@pytest.mark.parametrize("n_critic", [1, 2, 5])
def test_max_steps_counts_generator_updates(n_critic):
    model = tiny_gan(n_critic=n_critic)
    g_steps = []
    model.generator.register_forward_hook(lambda m, i, o: g_steps.append(torch.is_grad_enabled()))
    # 640 samples / 32 = 20 batches per epoch, so n_critic=5 crosses epoch boundaries
    trainer = quiet_trainer(max_steps=7)
    trainer.fit(model, tiny_ring())
    assert trainer.global_step == 7
    # generator forwards with grad enabled are exactly the generator updates
    assert sum(g_steps) == 7


def test_an_epoch_is_the_generator_steps_its_data_can_feed():
    # 640 samples, batch 32, n_critic=3: 6 generator steps of 96 samples per epoch, the rest dropped
    model = tiny_gan(n_critic=3)
    trainer = quiet_trainer(max_epochs=2)
    trainer.fit(model, tiny_ring())
    assert trainer.global_step == 12


def test_checkpoint_and_logging_intervals_count_generator_steps(tmp_path):
    model = tiny_gan(n_critic=2)
    ckpt = GANCheckpoint(dirpath=tmp_path / "ckpt", every_n_train_steps=5, save_top_k=-1, save_last=True,
                         filename="{step}")
    logger = CSVLogger(tmp_path, name="log")
    trainer = quiet_trainer(max_steps=12, log_every_n_steps=5, logger=logger, callbacks=[ckpt], enable_checkpointing=True)
    trainer.fit(model, tiny_ring())
    files = sorted(p.name for p in (tmp_path / "ckpt").iterdir())
    assert files == ["last.ckpt", "step=10.ckpt", "step=5.ckpt"]
    assert torch.load(tmp_path / "ckpt" / "step=5.ckpt", weights_only=True)["global_step"] == 5
    assert torch.load(tmp_path / "ckpt" / "last.ckpt", weights_only=True)["global_step"] == 12
    rows = list(csv.DictReader(open(Path(logger.log_dir) / "metrics.csv")))
    logged = sorted({int(r["step"]) for r in rows if r.get("d_loss")})
    assert logged == [5, 10]
    assert {"d_loss", "g_loss", "d_real", "d_fake"} <= set(rows[0])


def test_logged_d_outputs_are_probabilities_for_bce_and_raw_for_critics(tmp_path):
    for loss, bounded in (("nonsaturating", True), ("wgan", False)):
        logger = CSVLogger(tmp_path, name=loss)
        model = tiny_gan(loss=loss, discriminator_optimizer=lambda p: torch.optim.SGD(p, lr=0.5))
        quiet_trainer(max_steps=6, log_every_n_steps=1, logger=logger).fit(model, tiny_ring())
        rows = list(csv.DictReader(open(Path(logger.log_dir) / "metrics.csv")))
        vals = [float(r[k]) for r in rows for k in ("d_real", "d_fake") if r.get(k)]
        assert len(vals) == 12
        if bounded:
            assert all(0.0 <= v <= 1.0 for v in vals)


def test_generate_is_seeded_and_in_data_space():
    model = tiny_gan()
    a, b = model.generate(10, seed=3), model.generate(10, seed=3)
    assert a.shape == (10, 2) and torch.equal(a, b)
    assert not torch.equal(a, model.generate(10, seed=4))


def test_latent_distributions():
    model = tiny_gan(latent_distribution="uniform")
    z = model.sample_latent(1000)
    assert z.shape == (1000, 2) and z.min() >= -1 and z.max() <= 1
    with pytest.raises(ConfigurationError):
        tiny_gan(latent_distribution="cauchy")


def test_shape_mismatch_between_generator_and_data_is_explained():
    from gan_lightning.data import DigitsDataModule

    model = tiny_gan(
        generator=DCGANGenerator(latent_dim=8, image_size=16, channels=1, width=4),
        discriminator=DCGANDiscriminator(image_size=16, channels=1, width=4),
    )
    with pytest.raises(ConfigurationError, match=r"generator makes samples of shape \(1, 16, 16\).*\(1, 32, 32\)"):
        quiet_trainer(max_steps=1).fit(model, DigitsDataModule(image_size=32, batch_size=16))


def test_unknown_latent_size_is_explained():
    with pytest.raises(ConfigurationError, match="latent"):
        tiny_gan(generator=torch.nn.Linear(2, 2))


def test_checkpoint_hparams_load_with_weights_only(tmp_path):
    model = tiny_gan()
    ckpt = GANCheckpoint(dirpath=tmp_path, save_last=True)
    quiet_trainer(max_steps=2, callbacks=[ckpt], enable_checkpointing=True).fit(model, tiny_ring())
    state = torch.load(tmp_path / "last.ckpt", weights_only=True)
    assert state["global_step"] == 2
    assert "generator" not in state["hyper_parameters"]  # objects are kept out of hparams


def test_lean_dispatch_still_calls_the_implemented_hooks_and_steps_aside_for_backward_hooks():
    from lightning.pytorch import Callback

    calls = []

    class StepHook(Callback):
        def on_before_optimizer_step(self, trainer, pl_module, optimizer):
            calls.append(("callback", optimizer is trainer.optimizers[0]))

    model = tiny_gan(generator_grad_clip=1.0, n_critic=2)
    model.on_before_optimizer_step = (lambda orig: (lambda opt: (calls.append(("module", None)), orig(opt))[1]))(model.on_before_optimizer_step)
    quiet_trainer(max_steps=2, callbacks=[StepHook()]).fit(model, tiny_ring())
    assert model.optimizer_steps.fast_callbacks is not None  # 32-bit, one device, no profiler: the direct path
    # per step: D, D, G; each time the callback first, then the module (as Lightning orders them)
    assert calls == [("callback", False), ("module", None), ("callback", False), ("module", None), ("callback", True), ("module", None)] * 2

    class BackwardHook(Callback):
        def on_after_backward(self, trainer, pl_module):
            calls.append("after_backward")

    calls.clear()
    model = tiny_gan()
    quiet_trainer(max_steps=2, callbacks=[BackwardHook()]).fit(model, tiny_ring())
    assert model.optimizer_steps.fast_callbacks is None and calls.count("after_backward") == 4  # Lightning's path: every hook runs
