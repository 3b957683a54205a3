"""EMA of the generator, gradient clipping, learning-rate schedules, weight decay and unrolled GANs."""

import copy
from functools import partial

import pytest
import torch
from lightning.pytorch import Callback
from lightning.pytorch.plugins import MixedPrecision

from gan_lightning import GANCheckpoint
from gan_lightning.tricks.ema import update_ema
from gan_lightning.errors import ConfigurationError
from gan_lightning.losses import NonSaturatingLoss
from gan_lightning.tricks.unrolled import unrolled_scorer

from conftest import quiet_trainer, tiny_gan, tiny_ring


# ---------------------------------------------------------------- EMA
def test_update_ema_matches_the_closed_form():
    ema, net = torch.nn.Linear(3, 2), torch.nn.Linear(3, 2)
    with torch.no_grad():
        for p in ema.parameters():
            p.zero_()
    for _ in range(5):
        update_ema(ema, net, decay=0.9, step=10, start_step=0)
    for e, p in zip(ema.parameters(), net.parameters()):  # constant target: ema_k = (1 - d^k) p
        torch.testing.assert_close(e, (1 - 0.9**5) * p.detach())
    update_ema(ema, net, decay=0.9, step=0, start_step=3)  # before the start step: a copy
    for e, p in zip(ema.parameters(), net.parameters()):
        torch.testing.assert_close(e, p.detach())


class _RecordGenerator(Callback):
    def __init__(self):
        self.params = []

    def on_train_batch_end(self, trainer, pl_module, *args):
        self.params.append([p.detach().clone() for p in pl_module.generator.parameters()])


def test_ema_in_training_follows_the_recursion_and_copies_batchnorm_buffers():
    model = tiny_gan(ema_decay=0.8, ema_start_step=3)
    initial = [p.detach().clone() for p in model.generator.parameters()]
    record = _RecordGenerator()
    quiet_trainer(max_steps=8, callbacks=[record]).fit(model, tiny_ring())
    expected = initial
    for step, params in enumerate(record.params, start=1):  # global_step after the update
        expected = params if step < 3 else [0.8 * e + 0.2 * p for e, p in zip(expected, params)]
    for e, got in zip(expected, model.generator_ema.parameters()):
        torch.testing.assert_close(got, e)
    assert not any(p.requires_grad for p in model.generator_ema.parameters())
    for b_ema, b in zip(model.generator_ema.buffers(), model.generator.buffers()):  # BatchNorm statistics
        assert torch.equal(b_ema, b)


def test_ema_is_checkpointed_and_used_by_sampling(tmp_path):
    from gan_lightning.commands.sample import load_gan

    model = tiny_gan(ema_decay=0.9)
    trainer = quiet_trainer(max_steps=6, callbacks=[GANCheckpoint(dirpath=tmp_path, save_last=True)], enable_checkpointing=True)
    trainer.fit(model, tiny_ring())
    state = torch.load(tmp_path / "last.ckpt", weights_only=True)["state_dict"]
    assert any(k.startswith("generator_ema.") for k in state)
    model.generator_ema.load_state_dict({k[len("generator_ema."):]: v for k, v in state.items() if k.startswith("generator_ema.")})
    ema_samples = model.generate(16, seed=0)
    assert not torch.allclose(ema_samples, model.generate(16, seed=0, use_ema=False))
    model.generator_ema.eval()
    torch.testing.assert_close(ema_samples, model.generator_ema(model.sample_latent(16, torch.Generator().manual_seed(0))))


def test_bad_ema_options_are_refused():
    with pytest.raises(ConfigurationError, match="ema_decay"):
        tiny_gan(ema_decay=1.5)


# ---------------------------------------------------------------- clipping
class _GradNorms(Callback):
    """Norm of each optimizer's gradients as the optimizer itself sees them (after unscaling and clipping)."""

    def __init__(self):
        self.norms = {0: [], 1: []}

    def on_train_start(self, trainer, pl_module):
        for i, opt in enumerate(trainer.optimizers):
            opt.register_step_post_hook(partial(self._record, i))  # grads as the step used them

    def _record(self, i, optimizer, args, kwargs):
        grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        self.norms[i].append(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads])).item())


def _precision(kind):
    if kind == "16-mixed":
        return {"plugins": [MixedPrecision("16-mixed", "cpu", scaler=torch.amp.GradScaler("cpu"))]}
    return {"precision": kind}


@pytest.mark.parametrize("kind", ["32-true", "16-mixed"])
def test_gradient_clipping_bounds_the_unscaled_norm_of_each_network(kind):
    norms = {}
    for clip in (None, 1e-3):
        record = _GradNorms()
        model = tiny_gan(generator_grad_clip=clip, discriminator_grad_clip=clip and clip * 2, n_critic=2)
        quiet_trainer(max_steps=5, callbacks=[record], **_precision(kind)).fit(model, tiny_ring())
        norms[clip] = record.norms
    assert max(norms[None][0]) > 1e-2 and max(norms[None][1]) > 2e-2  # unclipped, the bound would fail
    assert len(norms[1e-3][0]) >= 1 and len(norms[1e-3][1]) >= 2
    assert max(norms[1e-3][0]) <= 1e-3 * 1.001  # G
    assert max(norms[1e-3][1]) <= 2e-3 * 1.001  # D


# ---------------------------------------------------------------- schedules and weight decay
def _linear_decay(total):
    return partial(torch.optim.lr_scheduler.LinearLR, start_factor=1.0, end_factor=0.0, total_iters=total)


def test_schedules_step_once_per_generator_step_and_resume(tmp_path):
    def model():
        return tiny_gan(generator_scheduler=_linear_decay(10), discriminator_scheduler=_linear_decay(10), n_critic=3)

    straight = model()
    quiet_trainer(max_steps=8).fit(straight, tiny_ring())
    lrs = [opt.param_groups[0]["lr"] for opt in straight.trainer.optimizers]
    assert lrs == pytest.approx([2e-4 * (1 - 8 / 10)] * 2)  # n_critic 3 does not make D's schedule run faster

    first = model()
    quiet_trainer(max_steps=4, callbacks=[GANCheckpoint(dirpath=tmp_path, save_last=True)], enable_checkpointing=True).fit(first, tiny_ring())
    resumed = model()
    trainer = quiet_trainer(max_steps=8)
    trainer.fit(resumed, tiny_ring(), ckpt_path=str(tmp_path / "last.ckpt"))
    assert [opt.param_groups[0]["lr"] for opt in trainer.optimizers] == pytest.approx(lrs)


def test_weight_decay_reaches_the_injected_optimizer():
    model = tiny_gan(discriminator_optimizer=partial(torch.optim.AdamW, lr=1e-4, weight_decay=0.05))
    quiet_trainer(max_steps=1).fit(model, tiny_ring())
    opt_d = model.trainer.optimizers[1]
    assert isinstance(opt_d, torch.optim.AdamW) and opt_d.param_groups[0]["weight_decay"] == 0.05


# ---------------------------------------------------------------- unrolled GAN
def _critic():
    torch.manual_seed(1)
    net = torch.nn.Sequential(torch.nn.Linear(2, 8, bias=False), torch.nn.BatchNorm1d(8), torch.nn.LeakyReLU(0.2), torch.nn.Linear(8, 1))
    torch.nn.utils.parametrizations.spectral_norm(net[0])
    return net


def _adam_with_state(net):
    opt = torch.optim.Adam(net.parameters(), lr=1e-2, betas=(0.5, 0.999))
    loss = NonSaturatingLoss().discriminator_loss(net(torch.randn(16, 2)).squeeze(1), net(torch.randn(16, 2)).squeeze(1))
    loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
    return opt


def test_unrolling_leaves_the_real_discriminator_untouched_and_changes_the_generator_gradient():
    critic = _critic()
    opt = _adam_with_state(critic)
    generator = torch.nn.Linear(2, 2)
    real, z = torch.randn(16, 2) + 2, torch.randn(16, 2)
    loss = NonSaturatingLoss()
    critic.eval()  # the ordinary update, without moving BatchNorm statistics or spectral-norm vectors
    loss.generator_loss(critic(generator(z)).squeeze(1)).backward()
    plain = generator.weight.grad.clone()
    critic.train()
    critic.zero_grad(set_to_none=True)
    before = copy.deepcopy(critic.state_dict())
    opt_before = copy.deepcopy(opt.state_dict())

    def g_grad(k):
        generator.zero_grad()
        fake = generator(z)
        scorer = unrolled_scorer(critic, opt, loss, real, fake, steps=k)
        critic.eval()  # the final scoring as in the ordinary update above
        scores = scorer(fake).squeeze(1)
        critic.train()
        loss.generator_loss(scores).backward()
        return generator.weight.grad.clone()

    k0, k5 = g_grad(0), g_grad(5)
    torch.testing.assert_close(k0, plain)  # k = 0 is the ordinary generator update
    assert (k5 - k0).abs().max() > 1e-4  # k = 5 differentiates through D's updates
    after = critic.state_dict()
    assert before.keys() == after.keys()
    for key in before:  # parameters, BatchNorm statistics and spectral-norm vectors
        assert torch.equal(before[key], after[key]), key
    assert all(p.grad is None for p in critic.parameters())
    assert str(opt.state_dict()) == str(opt_before)


@pytest.mark.parametrize("make_opt", ["adam", "sgd", "adam+l2", "adamw", "sgd+l2"])
def test_one_unrolled_step_equals_the_discriminator_optimizer_step(make_opt):
    critic = _critic()
    make = {
        "adam": lambda net: torch.optim.Adam(net.parameters(), lr=1e-2, betas=(0.5, 0.999)),
        "adam+l2": lambda net: torch.optim.Adam(net.parameters(), lr=1e-2, betas=(0.5, 0.999), weight_decay=0.5),
        "adamw": lambda net: torch.optim.AdamW(net.parameters(), lr=1e-2, betas=(0.5, 0.999), weight_decay=0.5),
        "sgd": lambda net: torch.optim.SGD(net.parameters(), lr=0.1),
        "sgd+l2": lambda net: torch.optim.SGD(net.parameters(), lr=0.1, weight_decay=0.5),
    }[make_opt]
    opt = make(critic)
    if make_opt.startswith("adam"):  # a step first, so the unroll continues from existing moments
        NonSaturatingLoss().discriminator_loss(critic(torch.randn(16, 2)).squeeze(1), critic(torch.randn(16, 2)).squeeze(1)).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    real, fake, probe = torch.randn(16, 2) + 2, torch.randn(16, 2), torch.randn(8, 2)
    loss = NonSaturatingLoss()
    stepped = copy.deepcopy(critic)
    opt_copy = make(stepped)
    opt_copy.load_state_dict(opt.state_dict())
    scorer = unrolled_scorer(critic, opt, loss, real, fake, steps=1)
    loss.discriminator_loss(stepped(real).squeeze(1), stepped(fake).squeeze(1)).backward()
    opt_copy.step()
    # (no bias before BatchNorm: its gradient is ~0, where eps inside vs outside the square root differ)
    critic.eval(), stepped.eval()  # compare with running statistics and frozen spectral-norm vectors
    expected = stepped(probe)
    # the unrolled copy's buffers moved with the forward passes exactly as the stepped copy's did
    torch.testing.assert_close(scorer(probe).detach(), expected.detach(), rtol=1e-4, atol=1e-5)


def test_unrolling_refuses_optimizer_options_it_cannot_imitate():
    critic = _critic()
    real, fake = torch.randn(4, 2), torch.randn(4, 2)
    with pytest.raises(ConfigurationError, match="amsgrad"):
        unrolled_scorer(critic, torch.optim.Adam(critic.parameters(), amsgrad=True), NonSaturatingLoss(), real, fake, steps=1)


def test_unrolled_gan_trains_in_the_module():
    model = tiny_gan(unrolled_steps=3, loss="ragan")
    trainer = quiet_trainer(max_steps=3)
    trainer.fit(model, tiny_ring())
    assert trainer.global_step == 3 and all(torch.isfinite(p).all() for p in model.parameters())
    with pytest.raises(ConfigurationError, match="unrolled_steps"):
        tiny_gan(unrolled_steps=-1)
