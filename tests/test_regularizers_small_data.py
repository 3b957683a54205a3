"""LeCam, bCR, zCR, top-k training and the nearest-neighbour entropy regularizer."""

import math

import pytest
import torch
from torch import nn

from conftest import quiet_trainer, tiny_gan, tiny_ring
from gan_lightning import GANModule
from gan_lightning.errors import ConfigurationError
from gan_lightning.regularizers import (
    BalancedConsistencyRegularizer,
    FlipAndTranslate,
    LatentConsistencyRegularizer,
    LeCamRegularizer,
    NearestNeighbourEntropyRegularizer,
    RegularizerContext,
    kozachenko_leonenko_entropy,
    nearest_neighbour_log_distances,
)
from gan_lightning.tricks.augment import DiffAugment
from gan_lightning.tricks.top_k import TopK


class LinearCritic(nn.Module):
    """D(x) = <w, x> + b."""

    def __init__(self, w: torch.Tensor, b: float = 0.0):
        super().__init__()
        self.w = nn.Parameter(w.clone())
        self.b = nn.Parameter(torch.tensor(b))

    def forward(self, x):
        return (x.flatten(1) * self.w.flatten()).sum(1) + self.b


class LinearGenerator(nn.Module):
    """G(z) = z @ A + c, reshaped to ``shape``."""

    def __init__(self, a: torch.Tensor, c: torch.Tensor, shape):
        super().__init__()
        self.a, self.c, self.shape = nn.Parameter(a.clone()), nn.Parameter(c.clone()), shape

    def forward(self, z):
        return (z @ self.a + self.c).view(-1, *self.shape)


class FlipAll(nn.Module):
    """A deterministic transform: every image flipped horizontally."""

    def forward(self, x):
        return x.flip(-1)


def _ctx(critic, real, fake, z=None, generator=None, **kwargs):
    z = z if z is not None else torch.zeros(len(real), 1)
    return RegularizerContext(critic, generator or nn.Identity(), real, fake, z, **kwargs)


def _precision(kind):
    return {"precision": kind}


def _trains(model, datamodule, kind, steps=3):
    trainer = quiet_trainer(max_steps=steps, **_precision(kind))
    trainer.fit(model, datamodule)
    assert trainer.global_step == steps
    assert all(torch.isfinite(p).all() for p in model.parameters())
    return trainer


def _digits_gan(**kwargs):
    from gan_lightning.networks import DCGANDiscriminator, DCGANGenerator

    torch.manual_seed(0)
    return GANModule(DCGANGenerator(latent_dim=8, image_size=8, channels=1, width=8),
                     DCGANDiscriminator(image_size=8, channels=1, width=8), **kwargs)


def _digits():
    from gan_lightning.data import DigitsDataModule

    return DigitsDataModule(image_size=8, batch_size=32)


# ---------------------------------------------------------------------------------------------- LeCam
def _debiased_ema(means, decay=0.99):
    """The zero-debiased EMA, from its definition: sum_i (1-b) b^(t-i) m_i / (1 - b^t)."""
    t = len(means)
    return sum((1 - decay) * decay ** (t - 1 - i) * m for i, m in enumerate(means)) / (1 - decay**t)


def test_lecam_penalty_equals_the_hand_computed_value_and_anchors_follow_their_ema():
    critic = LinearCritic(torch.zeros(2))
    reg = LeCamRegularizer(one_sided=False)
    assert (reg.weight, reg.decay) == (0.3, 0.99)
    real, fake = torch.tensor([1.0, 2.0, 3.0]), torch.tensor([-1.0, 0.0, -2.0])
    ctx = _ctx(critic, torch.zeros(3, 2), torch.zeros(3, 2), real_scores=real, fake_scores=fake)
    # After one batch the anchors are its means: alpha_R = 2, alpha_F = -1.
    expected = ((real + 1) ** 2).mean() + ((2 - fake) ** 2).mean()
    assert reg.penalty(ctx).item() == pytest.approx(expected.item(), rel=1e-6)
    assert [a.item() for a in reg.anchors()] == pytest.approx([2.0, -1.0], rel=1e-6)

    real2, fake2 = torch.tensor([-3.0, 0.0]), torch.tensor([5.0, 1.0])
    alpha_r, alpha_f = _debiased_ema([2.0, -1.5]), _debiased_ema([-1.0, 3.0])
    two_sided = ((real2 - alpha_f) ** 2).mean() + ((alpha_r - fake2) ** 2).mean()
    value = reg(_ctx(critic, torch.zeros(2, 2), torch.zeros(2, 2), real_scores=real2, fake_scores=fake2))
    assert value.item() == pytest.approx(0.3 * two_sided.item(), rel=1e-5)
    assert [a.item() for a in reg.anchors()] == pytest.approx([alpha_r, alpha_f], rel=1e-5)

    # The authors' one-sided form only counts D(x) above alpha_F and D(G(z)) below alpha_R.
    one_sided = LeCamRegularizer()
    one_sided.load_state_dict(reg.state_dict())
    real3, fake3 = torch.tensor([-10.0, 4.0]), torch.tensor([10.0, -4.0])
    a_r, a_f = _debiased_ema([2.0, -1.5, -3.0]), _debiased_ema([-1.0, 3.0, 3.0])
    expected = (torch.relu(real3 - a_f) ** 2).mean() + (torch.relu(a_r - fake3) ** 2).mean()
    got = one_sided.penalty(_ctx(critic, torch.zeros(2, 2), torch.zeros(2, 2), real_scores=real3, fake_scores=fake3))
    assert got.item() == pytest.approx(expected.item(), rel=1e-5)
    assert expected.item() < (((real3 - a_f) ** 2).mean() + ((a_r - fake3) ** 2).mean()).item()


def test_lecam_runs_the_discriminator_only_when_not_given_scores_and_its_gradient_reaches_d():
    critic = LinearCritic(torch.tensor([1.0, -1.0]))
    real, fake = torch.randn(5, 2), torch.randn(5, 2)
    reg = LeCamRegularizer(one_sided=False)
    reg.penalty(_ctx(critic, real, fake)).backward()
    assert critic.w.grad is not None and critic.w.grad.abs().sum() > 0
    with pytest.raises(ConfigurationError, match="decay"):
        LeCamRegularizer(decay=1.0)


class _RecordScores:
    """Collect D's scores of every discriminator update (the module's last_step_outputs, n_critic = 1)."""

    def __init__(self):
        self.real, self.fake = [], []

    def __call__(self, module):
        outputs = module.last_step_outputs
        self.real.append(outputs.real_scores.float().mean().item())
        self.fake.append(outputs.fake_scores.float().mean().item())


def test_lecam_anchors_in_training_follow_the_ema_of_the_updates_scores_and_are_in_the_state_dict():
    from lightning.pytorch import Callback

    record = _RecordScores()

    class Recorder(Callback):
        def on_train_batch_end(self, trainer, pl_module, *args):
            record(pl_module)

    model = tiny_gan(regularizers=[LeCamRegularizer()])
    quiet_trainer(max_steps=4, callbacks=[Recorder()]).fit(model, tiny_ring())
    reg = model.regularizers[0]
    assert {"regularizer_states.0.real_average", "regularizer_states.0.fake_average",
            "regularizer_states.0.average_weight"} <= set(model.state_dict())
    alpha_r, alpha_f = reg.anchors()
    assert alpha_r.item() == pytest.approx(_debiased_ema(record.real), rel=1e-5, abs=1e-6)
    assert alpha_f.item() == pytest.approx(_debiased_ema(record.fake), rel=1e-5, abs=1e-6)


def test_lecam_anchors_survive_a_checkpoint_round_trip_and_resume_is_bit_identical(tmp_path):
    from lightning.pytorch import seed_everything
    from lightning.pytorch.callbacks import ModelCheckpoint

    def fit(ckpt_path=None, callbacks=()):
        seed_everything(0)
        model = tiny_gan(regularizers=[LeCamRegularizer()])
        trainer = quiet_trainer(max_steps=6, deterministic=True, callbacks=list(callbacks), enable_checkpointing=bool(callbacks))
        trainer.fit(model, tiny_ring(num_samples=64), ckpt_path=ckpt_path)  # 2 steps per epoch: step 3 is mid-epoch
        return model

    straight = fit(callbacks=[ModelCheckpoint(tmp_path, every_n_train_steps=3, save_top_k=-1, filename="{step}")])
    path = tmp_path / "step=3.ckpt"
    state = torch.load(path, weights_only=True)["state_dict"]
    fresh = tiny_gan(regularizers=[LeCamRegularizer()])
    assert fresh.regularizers[0].average_weight.item() == 0
    fresh.load_state_dict(state)
    assert fresh.regularizers[0].average_weight.item() == pytest.approx(1 - 0.99**3)
    assert torch.equal(fresh.regularizers[0].real_average, state["regularizer_states.0.real_average"])

    resumed = fit(ckpt_path=path)
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name


def test_a_mode_collapse_rollback_restores_the_lecam_anchors():
    from gan_lightning.collapse.monitor import ModeCollapseMonitor

    model = tiny_gan(regularizers=[LeCamRegularizer()])
    trainer = quiet_trainer(max_steps=3)
    trainer.fit(model, tiny_ring())
    reg = model.regularizers[0]
    monitor = ModeCollapseMonitor(action="warn", keep_healthy_state=True)
    monitor.rollback.keep(trainer, model, step=3)
    kept = torch.stack(reg.anchors()).clone()
    reg.update(torch.full((4,), 50.0), torch.full((4,), -50.0))
    assert not torch.equal(torch.stack(reg.anchors()), kept)
    monitor.restore_healthy_state(trainer, model)
    assert torch.equal(torch.stack(reg.anchors()), kept)


# ---------------------------------------------------------------------------------------------- bCR
def test_bcr_is_zero_for_an_invariant_discriminator():
    real, fake = torch.randn(6, 1, 8, 8), torch.randn(6, 1, 8, 8)
    constant = LinearCritic(torch.zeros(64), b=0.7)  # ignores its input
    assert BalancedConsistencyRegularizer().penalty(_ctx(constant, real, fake)).item() == 0.0
    pixel_sum = LinearCritic(torch.ones(64))  # invariant to flips
    reg = BalancedConsistencyRegularizer(transform=FlipAll())
    assert reg.penalty(_ctx(pixel_sum, real, fake)).item() == pytest.approx(0.0, abs=1e-10)
    # ... but not to the default flip + translation, which pushes pixels out of the image.
    assert BalancedConsistencyRegularizer().penalty(_ctx(pixel_sum, real, fake)).item() > 0


def test_bcr_equals_the_hand_computed_value_and_reuses_the_updates_scores():
    w = torch.arange(16.0).view(1, 4, 4) / 16
    critic = LinearCritic(w)
    real, fake = torch.randn(5, 1, 4, 4), torch.randn(5, 1, 4, 4)
    reg = BalancedConsistencyRegularizer(real_weight=10.0, fake_weight=3.0, transform=FlipAll())
    expected = 10 * ((critic(real) - critic(real.flip(-1))) ** 2).mean() + 3 * ((critic(fake) - critic(fake.flip(-1))) ** 2).mean()
    assert reg(_ctx(critic, real, fake)).item() == pytest.approx(expected.item(), rel=1e-5)
    calls = []
    critic.register_forward_hook(lambda *args: calls.append(1))
    reg(_ctx(critic, real, fake, real_scores=critic(real), fake_scores=critic(fake)))
    assert len(calls) == 4  # the two given scores + one forward per transformed batch, none on x again
    with pytest.raises(ConfigurationError, match="image batches"):
        reg(_ctx(LinearCritic(torch.ones(2)), torch.randn(4, 2), torch.randn(4, 2)))


def test_flip_and_translate_flips_and_shifts_each_sample_by_at_most_an_eighth():
    torch.manual_seed(0)
    x = torch.arange(64.0).view(1, 1, 8, 8).repeat(200, 1, 1, 1) + 1
    out = FlipAndTranslate()(x)
    assert out.shape == x.shape
    flipped = sum(bool(torch.isin(x[0, 0, 0, 0], out[i]).item()) is False for i in range(200))
    assert 0 < flipped < 200
    # Every output is a (possibly flipped) copy shifted by at most 1 pixel (1/8 of 8), zero padded.
    for i in range(0, 200, 17):
        ok = False
        for source in (x[i], x[i].flip(-1)):
            for dy in (-1, 0, 1):
                for dx in (-1, 0, 1):
                    moved = torch.zeros_like(source)
                    ys, xs = slice(max(0, -dy), 8 - max(0, dy)), slice(max(0, -dx), 8 - max(0, dx))
                    moved[:, ys, xs] = source[:, max(0, dy): 8 + min(0, dy), max(0, dx): 8 + min(0, dx)]
                    ok |= torch.equal(moved, out[i])
        assert ok


# ---------------------------------------------------------------------------------------------- zCR
def test_zcr_is_zero_for_a_constant_generator_also_through_an_augmentation():
    g = LinearGenerator(torch.zeros(3, 64), torch.randn(64), (1, 8, 8))
    critic = LinearCritic(torch.randn(1, 8, 8))
    z = torch.randn(6, 3)
    fake = g(z)
    reg = LatentConsistencyRegularizer()
    for augment in (None, DiffAugment()):
        ctx = _ctx(critic, torch.randn(6, 1, 8, 8), fake, z=z, generator=g, augment=augment)
        assert reg.penalty(ctx).item() == pytest.approx(0.0, abs=1e-8)  # same augmentation draw for both
    g_ctx = _ctx(critic, torch.randn(6, 1, 8, 8), fake, z=z, generator=g, phase="generator")
    assert reg.penalty(g_ctx).item() == 0.0


def test_zcr_terms_equal_the_hand_computed_values():
    a, c = torch.randn(3, 4), torch.randn(4)
    g = LinearGenerator(a, c, (4,))
    critic = LinearCritic(torch.tensor([1.0, -2.0, 0.5, 3.0]))
    z = torch.randn(7, 3)
    reg = LatentConsistencyRegularizer()
    assert (reg.dis_weight, reg.gen_weight, reg.sigma, reg.phase) == (5.0, 0.5, 0.03, "both")
    torch.manual_seed(1)
    dz = 0.03 * torch.randn_like(z)
    d_expected = 5 * ((critic(g(z)) - critic(g(z + dz))) ** 2).mean()
    g_expected = -0.5 * ((g(z) - g(z + dz)) ** 2).mean()
    d_ctx = _ctx(critic, torch.randn(7, 4), g(z).detach(), z=z, generator=g)
    fake = g(z)
    g_ctx = _ctx(critic, torch.randn(7, 4), fake, z=z, generator=g, phase="generator")
    torch.manual_seed(1)
    d_value = reg.penalty(d_ctx)
    torch.manual_seed(1)
    g_value = reg.penalty(g_ctx)
    assert d_value.item() == pytest.approx(d_expected.item(), rel=1e-5)
    assert g_value.item() == pytest.approx(g_expected.item(), rel=1e-5)
    g_value.backward()  # the G term reaches G (both G(z) and G(z + dz)) ...
    assert g.a.grad is not None and g.a.grad.abs().sum() > 0
    g.a.grad = None
    reg.penalty(d_ctx).backward()
    assert g.a.grad is None and critic.w.grad.abs().sum() > 0  # ... the D term only D


def test_zcr_runs_in_both_updates_of_the_module():
    phases = []

    class Recording(LatentConsistencyRegularizer):
        def penalty(self, ctx):
            phases.append(ctx.phase)
            return super().penalty(ctx)

    model = tiny_gan(regularizers=[Recording()], n_critic=2)
    quiet_trainer(max_steps=2).fit(model, tiny_ring())
    assert phases == ["discriminator", "discriminator", "generator"] * 2


# ---------------------------------------------------------------------------------------------- top-k
def test_top_k_selects_exactly_the_k_highest_scores():
    torch.manual_seed(0)
    scores = torch.randn(32, 1)
    for k in (1, 5, 16, 31):
        chosen = TopK.select(scores, scores, k)
        assert chosen.shape == (k, 1)
        assert sorted(chosen.flatten().tolist()) == sorted(scores.flatten().tolist())[-k:]
    assert TopK.select(scores, scores, 32) is scores


def test_top_k_schedule_is_the_papers():
    top_k = TopK()
    assert (top_k.gamma, top_k.min_fraction) == (0.99, 0.5)
    assert [top_k.k(64, epoch, 0) for epoch in (0, 1, 2, 10, 68, 69, 500)] == [
        64, int(64 * 0.99), int(64 * 0.99**2), int(64 * 0.99**10), 32, 32, 32]
    by_steps = TopK(gamma=0.5, min_fraction=0.25, decay_every_steps=10)
    assert [by_steps.k(32, 0, step) for step in (0, 9, 10, 19, 20, 30, 1000)] == [32, 32, 16, 16, 8, 8, 8]
    with pytest.raises(ConfigurationError, match="gamma"):
        TopK(gamma=0.0)


def test_top_k_in_the_module_trains_g_on_k_fakes_per_epoch_schedule():
    sizes = []
    model = tiny_gan(top_k=TopK(gamma=0.5, min_fraction=0.25))
    original = model.loss.generator_loss
    model.loss.generator_loss = lambda fake_scores, real_scores=None: (sizes.append(fake_scores.shape[0]), original(fake_scores, real_scores))[1]
    quiet_trainer(max_steps=8).fit(model, tiny_ring(num_samples=64))  # 2 generator steps per epoch
    assert sizes == [32, 32, 16, 16, 8, 8, 8, 8]


# ---------------------------------------------------------------------------------------------- entropy
def test_entropy_estimate_matches_a_gaussian_and_grows_when_samples_spread():
    torch.manual_seed(0)
    x = torch.randn(4000, 2)
    assert kozachenko_leonenko_entropy(x).item() == pytest.approx(math.log(2 * math.pi * math.e), abs=0.05)
    assert kozachenko_leonenko_entropy(3 * x).item() == pytest.approx(kozachenko_leonenko_entropy(x).item() + 2 * math.log(3), abs=1e-3)
    reg = NearestNeighbourEntropyRegularizer()
    small = torch.randn(16, 1, 4, 4)
    ctx = lambda s: _ctx(nn.Identity(), s, s)  # noqa: E731
    assert reg.penalty(ctx(2 * small)).item() == pytest.approx(reg.penalty(ctx(small)).item() - math.log(2), abs=1e-5)


def test_entropy_penalty_equals_minus_mean_log_nearest_distance_and_its_gradient_pushes_samples_apart():
    points = torch.tensor([[0.0, 0.0], [0.1, 0.0], [3.0, 0.0], [3.0, 2.0]], requires_grad=True)
    # nearest distances: 0.1, 0.1, 2, 2
    expected = -(2 * math.log(0.1) + 2 * math.log(2.0)) / 4
    reg = NearestNeighbourEntropyRegularizer(weight=2.0)
    value = reg(_ctx(nn.Identity(), points, points))
    assert value.item() == pytest.approx(2 * expected, rel=1e-5)
    value.backward()
    stepped = points.detach() - 0.001 * points.grad
    before, after = nearest_neighbour_log_distances(points.detach()), nearest_neighbour_log_distances(stepped)
    assert (after > before).all()  # every sample moved away from its nearest neighbour
    assert points.grad[0, 0] > 0 > points.grad[1, 0]  # the close pair: pushed apart along x
    duplicates = torch.zeros(4, 3, requires_grad=True)
    reg(_ctx(nn.Identity(), duplicates, duplicates)).backward()
    assert torch.isfinite(duplicates.grad).all()


# ---------------------------------------------------------------------------------------------- training
@pytest.mark.parametrize("kind", ["32-true", "bf16-mixed"])
@pytest.mark.parametrize("name", ["lecam", "zcr", "entropy", "top_k"])
def test_trains_on_ring8(kind, name):
    options = {
        "lecam": {"regularizers": [LeCamRegularizer()]},
        "zcr": {"regularizers": [LatentConsistencyRegularizer()]},
        "entropy": {"regularizers": [NearestNeighbourEntropyRegularizer()]},
        "top_k": {"top_k": TopK(decay_every_steps=1)},
    }[name]
    model = tiny_gan(**options)
    _trains(model, tiny_ring(), kind)
    if name == "lecam":
        assert model.regularizers[0].average_weight.item() == pytest.approx(1 - 0.99**3)


@pytest.mark.parametrize("kind", ["32-true", "bf16-mixed"])
@pytest.mark.parametrize("augment", [None, "diffaugment"])
def test_image_regularizers_train_on_digits_with_and_without_augmentation(kind, augment):
    regs = [BalancedConsistencyRegularizer(), LatentConsistencyRegularizer(), LeCamRegularizer(), NearestNeighbourEntropyRegularizer()]
    model = _digits_gan(regularizers=regs, augment=augment, top_k=TopK())
    _trains(model, _digits(), kind)
    assert model.regularizers[2].average_weight.item() > 0


def test_top_k_refuses_multi_column_losses():
    from gan_lightning.networks import MLPDiscriminator
    from gan_lightning.variants.gman import MultiDiscriminator

    with pytest.raises(ConfigurationError, match="top_k"):
        tiny_gan(discriminator=MultiDiscriminator([MLPDiscriminator(input_dim=2, hidden_dims=[8]) for _ in range(2)]),
                 loss="gman", top_k=TopK())


# ---------------------------------------------------------------------------------------------- DDP and crash resume
@pytest.mark.slow
def test_two_process_ddp_averages_the_lecam_means_so_both_ranks_share_the_anchors(tmp_path):
    """Rank 0's D scores everything about +3, rank 1's about -3: alone, their anchors would be near +3 and -3."""
    import subprocess
    import sys

    from conftest import ROOT

    proc = subprocess.run([sys.executable, str(ROOT / "tests/scripts/lecam_ddp.py"), "--out", str(tmp_path)],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    for key in ranks[0]:
        assert torch.equal(ranks[0][key], ranks[1][key]), key
    weight = ranks[0]["regularizer_states.0.average_weight"].item()
    assert weight == pytest.approx(1 - 0.99**4, rel=1e-5)
    for name in ("real", "fake"):
        assert abs(ranks[0][f"regularizer_states.0.{name}_average"].item() / weight) < 0.5


@pytest.mark.slow
def test_sigkill_then_resume_with_ada_and_lecam_is_bit_identical(tmp_path):
    import os
    import subprocess
    import sys

    import yaml

    from conftest import ROOT

    def config(run_dir, kill_at=None):
        cfg = yaml.safe_load((ROOT / "gan_lightning" / "default_experiment.yaml").read_text())
        cfg["trainer"].update(max_steps=13, log_every_n_steps=5, enable_progress_bar=False)
        cfg["trainer"]["logger"]["init_args"]["save_dir"] = str(run_dir / "runs")
        cfg["trainer"]["callbacks"] = [
            {"class_path": "gan_lightning.callbacks.GANCheckpoint", "init_args": {"every_n_train_steps": 5, "save_last": True}}]
        if kill_at is not None:
            cfg["trainer"]["callbacks"].append({"class_path": "gl_testing.KillAtStep", "init_args": {"step": kill_at}})
        for net in ("generator", "discriminator"):
            cfg["model"][net]["init_args"].update(image_size=8, width=8)
        cfg["model"]["augment"] = {"class_path": "gan_lightning.tricks.ada.ADA", "init_args": {"p": 0.5, "speed_images": 2000}}
        cfg["model"]["regularizers"] = [{"class_path": "gan_lightning.regularizers.LeCamRegularizer"}]
        cfg["data"]["init_args"].update(image_size=8, batch_size=32)
        path = run_dir / f"config_{kill_at}.yaml"
        path.write_text(yaml.safe_dump(cfg))
        return path

    def fit(run_dir, *args):
        env = dict(os.environ, PYTHONPATH=str(ROOT / "tests") + os.pathsep + os.environ.get("PYTHONPATH", ""))
        return subprocess.run([sys.executable, "-m", "gan_lightning", "fit", *args], cwd=run_dir, env=env,
                              capture_output=True, text=True, timeout=300)

    straight_dir, crash_dir = tmp_path / "straight", tmp_path / "crash"
    straight_dir.mkdir()
    crash_dir.mkdir()
    assert fit(straight_dir, "--config", str(config(straight_dir))).returncode == 0
    reference = torch.load(straight_dir / "runs/default/version_0/checkpoints/last.ckpt", weights_only=True)["state_dict"]
    crashed = fit(crash_dir, "--config", str(config(crash_dir, kill_at=8)))
    assert crashed.returncode == -9, crashed.stderr[-3000:]
    last = crash_dir / "runs/default/version_0/checkpoints/last.ckpt"
    assert torch.load(last, weights_only=True)["state_dict"]["regularizer_states.0.average_weight"].item() > 0
    resumed = fit(crash_dir, "--config", str(config(crash_dir)), "--ckpt_path", "last")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    final = torch.load(last, weights_only=True)["state_dict"]
    assert reference["regularizer_states.0.average_weight"].item() == pytest.approx(1 - 0.99**13, rel=1e-5)
    for key, value in reference.items():
        assert torch.equal(final[key], value), key


def test_zcr_extra_generator_passes_leave_batchnorm_statistics_alone():
    torch.manual_seed(0)
    g = nn.Sequential(nn.Linear(3, 16), nn.BatchNorm1d(16), nn.Linear(16, 16), nn.Unflatten(1, (1, 4, 4)))
    critic = LinearCritic(torch.randn(1, 4, 4))
    z = torch.randn(8, 3)
    reg = LatentConsistencyRegularizer()
    fake = g(z)  # the update's own pass: the one BatchNorm update per step that training without zCR makes too
    before = {k: v.clone() for k, v in g.state_dict().items() if "running" in k or "num_batches" in k}
    for phase, augment in (("discriminator", None), ("discriminator", DiffAugment(policy="color")), ("generator", None)):
        value = reg.penalty(_ctx(critic, torch.randn(8, 1, 4, 4), fake, z=z, generator=g, augment=augment, phase=phase))
        assert torch.isfinite(value) and value.abs() > 0
        if phase == "generator":
            value.backward()
            assert g[0].weight.grad.abs().sum() > 0  # the G term still reaches G
        for key, old in before.items():
            assert torch.equal(g.state_dict()[key], old), (phase, augment, key)
