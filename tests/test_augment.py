"""Discriminator augmentation: DiffAugment and ADA (transforms, adaptive p, the module's wiring, state, DDP, precision)."""

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from gan_lightning import ADA, DiffAugment, GANModule, build_augmentation
from gan_lightning.errors import ConfigurationError
from gan_lightning.tricks.augment import _POLICIES

from conftest import ROOT, quiet_trainer, tiny_gan, tiny_ring

# Every transform group on its own, and the full pipelines.
TRANSFORMS = {
    "diffaugment-color": lambda p=1.0: DiffAugment("color", p=p),
    "diffaugment-translation": lambda p=1.0: DiffAugment("translation", p=p),
    "diffaugment-cutout": lambda p=1.0: DiffAugment("cutout", p=p),
    "diffaugment": lambda p=1.0: DiffAugment(p=p),
    "ada-blit": lambda p=1.0: ADA(p=p, target=None, transforms="b"),
    "ada-geometric": lambda p=1.0: ADA(p=p, target=None, transforms="g"),
    "ada-colour": lambda p=1.0: ADA(p=p, target=None, transforms="c"),
    "ada-bgc": lambda p=1.0: ADA(p=p, target=None),
}


def _images(n=16, channels=3, size=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, channels, size, size, generator=g) * 2 - 1


# ---------------------------------------------------------------------------------------------- each transform
@pytest.mark.parametrize("name", TRANSFORMS)
@pytest.mark.parametrize("channels", [1, 3])
def test_shape_dtype_range_and_that_it_augments(name, channels):
    x = _images(channels=channels)
    torch.manual_seed(0)
    y = TRANSFORMS[name]()(x)
    assert y.shape == x.shape and y.dtype == x.dtype and torch.isfinite(y).all()
    changed = (y != x).flatten(1).any(dim=1)
    assert changed.float().mean() > 0.5  # p = 1: (almost) every sample is transformed
    lo, hi = x.flatten(1).amin(1), x.flatten(1).amax(1)
    lo, hi = torch.minimum(lo, torch.zeros(())).view(-1, 1), torch.maximum(hi, torch.zeros(())).view(-1, 1)
    if name in ("diffaugment-translation", "diffaugment-cutout"):
        # pixels move or are zeroed: every output value is an input value of that sample and channel, or 0
        for out_img, in_img in zip(y.flatten(2), x.flatten(2)):
            for out_c, in_c in zip(out_img, in_img):
                assert torch.isin(out_c, torch.cat([in_c, torch.zeros(1)])).all()
    elif name in ("ada-blit", "ada-geometric"):
        # bilinear resampling with reflection padding: convex combinations of the sample's own pixels
        assert ((y.flatten(1) >= lo - 1e-5) & (y.flatten(1) <= hi + 1e-5)).all()
    else:
        assert y.abs().max() < 20  # colour transforms of [-1, 1] images stay in a bounded range


@pytest.mark.parametrize("name", TRANSFORMS)
def test_identity_at_p_zero_is_bit_identical(name):
    x = _images()
    assert torch.equal(TRANSFORMS[name](p=0.0)(x), x)


def test_ada_starts_as_the_identity_and_leaves_unchosen_samples_untouched():
    x = _images(n=256)
    assert torch.equal(ADA()(x), x)  # adaptive ADA starts at p = 0
    torch.manual_seed(0)
    y = ADA(p=0.1, target=None)(x)
    same = (y == x).flatten(1).all(dim=1)
    # untouched: no transform chosen, or only identity draws (flip/luma flip 1/2, no quarter turn 1/4, both integer
    # shifts rounding to 0 1/16): 0.95 * 0.925 * (1 - 0.1 * 15 / 16) * 0.95 * 0.9^8 = 0.32
    assert 0.22 < same.float().mean() < 0.42


@pytest.mark.parametrize("name", TRANSFORMS)
def test_determinism_given_the_seed(name):
    x = _images()
    aug = TRANSFORMS[name](p=0.7)
    torch.manual_seed(5)
    a = aug(x)
    torch.manual_seed(5)
    b = aug(x)
    torch.manual_seed(6)
    c = aug(x)
    assert torch.equal(a, b) and not torch.equal(a, c)


class _ConvG(nn.Module):
    def __init__(self, channels=3, size=8):
        super().__init__()
        self.latent_dim, self.channels, self.size = 4, channels, size
        self.net = nn.Linear(4, channels * size * size)

    def forward(self, z):
        return torch.tanh(self.net(z)).view(-1, self.channels, self.size, self.size)


class _ConvD(nn.Module):
    def __init__(self, channels=3, size=8):
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(channels, 4, 3, padding=1), nn.LeakyReLU(0.2), nn.Flatten(), nn.Linear(4 * size * size, 1))

    def forward(self, x):
        return self.net(x).view(-1)


@pytest.mark.parametrize("name", TRANSFORMS)
def test_gradients_flow_from_d_back_into_g_through_the_augmentation(name):
    torch.manual_seed(0)
    generator, discriminator = _ConvG(), _ConvD()
    z = torch.randn(16, 4)
    torch.manual_seed(1)
    discriminator(TRANSFORMS[name]()(generator(z))).sum().backward()
    through = torch.cat([p.grad.flatten() for p in generator.parameters()])
    generator.zero_grad()
    discriminator(generator(z)).sum().backward()
    plain = torch.cat([p.grad.flatten() for p in generator.parameters()])
    assert torch.isfinite(through).all() and through.abs().sum() > 0
    assert not torch.allclose(through, plain)  # the gradient went through the transform, not around it


def test_diffaugment_strengths_are_the_papers():
    """Translation up to 1/8 of the size (zero padded), cutout of 1/2 of the size, brightness +-0.5."""
    torch.manual_seed(0)
    ones = torch.ones(2000, 1, 32, 32)
    aug = DiffAugment()
    (translation,), (cutout,) = _POLICIES["translation"], _POLICIES["cutout"]
    shifted = translation(ones, aug)
    zero_rows = (shifted[:, 0] == 0).all(dim=2).sum(dim=1)
    zero_cols = (shifted[:, 0] == 0).all(dim=1).sum(dim=1)
    assert zero_rows.max() == 4 and zero_cols.max() == 4 and set(zero_rows.tolist()) == set(range(5))
    holes = (cutout(ones, aug) == 0).sum(dim=(1, 2, 3))
    assert holes.max() == 16 * 16 and holes.min() >= 8 * 8  # a 16x16 square, at worst a quarter of it inside
    brightness = _POLICIES["color"][0](torch.zeros(2000, 1, 4, 4), aug)[:, 0, 0, 0]
    assert -0.5 <= brightness.min() < -0.49 and 0.49 < brightness.max() < 0.5


def test_ada_colour_keeps_gray_gray_and_flips_luma():
    """Every colour transform acts around the luma axis: an RGB image with R = G = B stays gray."""
    torch.manual_seed(0)
    gray = _images(n=64, channels=1).expand(-1, 3, -1, -1)
    y = ADA(p=1.0, target=None, transforms="c")(gray)
    assert (y[:, 0] - y[:, 1]).abs().max() < 1e-5 and (y[:, 1] - y[:, 2]).abs().max() < 1e-5
    # grayscale images get a per-sample affine map l -> a * l + b, whose sign a is flipped half the time
    x = _images(n=400, channels=1)
    out = ADA(p=1.0, target=None, transforms="c")(x)
    centred_in, centred_out = x - x.mean(dim=(1, 2, 3), keepdim=True), out - out.mean(dim=(1, 2, 3), keepdim=True)
    slope = (centred_in * centred_out).sum(dim=(1, 2, 3)) / centred_in.pow(2).sum(dim=(1, 2, 3))
    assert torch.allclose(centred_out, slope.view(-1, 1, 1, 1) * centred_in, atol=1e-4)
    assert 0.4 < (slope < 0).float().mean() < 0.6


def test_ada_blits_are_pixel_permutations():
    """x-flips and 90-degree rotations land on pixel centres: the same pixels, rearranged."""
    torch.manual_seed(0)
    x = torch.arange(64.0).view(1, 1, 8, 8).expand(32, 1, 8, 8).contiguous()
    y = ADA(p=1.0, target=None, transforms="b", xint_max=0.0)(x)
    assert torch.allclose(y.flatten(1).sort(dim=1).values, x.flatten(1), atol=1e-4)
    corners = {tuple(img[0, [0, 0, -1, -1], [0, -1, 0, -1]].round().tolist()) for img in y}
    assert len(corners) == 8  # all 8 symmetries of the square (flip x 4 rotations) occur


def test_errors_are_clear():
    with pytest.raises(ConfigurationError, match="unknown policy 'colour'"):
        DiffAugment("colour")
    with pytest.raises(ConfigurationError, match="b \\(blit\\), g \\(geometric\\), c \\(colour\\)"):
        ADA(transforms="bgx")
    with pytest.raises(ConfigurationError, match="Unknown augmentation 'rotate'"):
        build_augmentation("rotate")
    with pytest.raises(ConfigurationError, match="grayscale or RGB"):
        ADA(p=1.0)(torch.zeros(2, 2, 8, 8))
    assert isinstance(build_augmentation("ADA"), ADA) and isinstance(build_augmentation("gan_lightning.DiffAugment"), DiffAugment)
    assert build_augmentation(None) is None and build_augmentation("none") is None
    with pytest.raises(ConfigurationError, match=r"augments image batches \(N, C, H, W\).*shape \(32, 2\)"):
        quiet_trainer(max_steps=1).fit(tiny_gan(augment="diffaugment"), tiny_ring())


# ---------------------------------------------------------------------------------------------- adaptive p
def _observe(ada, value, n=32, times=1):
    for _ in range(times):
        ada.observe(torch.full((n, 1), float(value)))


def test_adaptive_p_moves_at_the_papers_speed_and_stays_in_0_1():
    ada = ADA(interval=4, speed_images=500_000)
    step = 32 * 4 / 500_000  # p moves by (images per interval) / 500k: 0 -> 1 in 500k images
    _observe(ada, 1.0, times=3)
    assert ada.p.item() == 0.0 and ada.image_count.item() == 96  # no adjustment before `interval` updates
    _observe(ada, 1.0)
    assert ada.last_rt.item() == 1.0 and math.isclose(ada.p.item(), step, rel_tol=1e-6)
    _observe(ada, 1.0, times=4 * 9)
    assert math.isclose(ada.p.item(), 10 * step, rel_tol=1e-5)
    _observe(ada, -1.0, times=4 * 4)
    assert math.isclose(ada.p.item(), 6 * step, rel_tol=1e-5)
    _observe(ada, -1.0, times=4 * 100)
    assert ada.p.item() == 0.0  # clamped
    fast = ADA(p=0.9, speed_images=100)
    _observe(fast, 1.0, times=8)
    assert fast.p.item() == 1.0


def test_adaptive_p_follows_the_sign_of_r_minus_target():
    ada = ADA(p=0.5, speed_images=1280)
    scores = torch.cat([torch.ones(26), -torch.ones(6)])  # r = (26 - 6) / 32 = 0.625 > 0.6: up
    for _ in range(4):
        ada.observe(scores)
    assert math.isclose(ada.p.item(), 0.6, rel_tol=1e-6) and math.isclose(ada.last_rt.item(), 0.625)
    scores = torch.cat([torch.ones(25), -torch.ones(7)])  # r = 0.5625 < 0.6: down
    for _ in range(4):
        ada.observe(scores)
    assert math.isclose(ada.p.item(), 0.5, rel_tol=1e-6)
    fixed = ADA(p=0.3, target=None)
    _observe(fixed, 1.0, times=40)
    assert fixed.p.item() == pytest.approx(0.3) and fixed.image_count.item() == 0


def _constant_loader(image, n=256, batch_size=32):
    """``n`` copies of one image, for module-level tests whose expected values follow from the image."""
    return DataLoader(TensorDataset(image.expand(n, *image.shape).clone()), batch_size=batch_size, shuffle=False)


class _ConstantG(nn.Module):
    """Always the same image (a parameter, so G has gradients)."""

    def __init__(self, image):
        super().__init__()
        self.latent_dim = 2
        self.image = nn.Parameter(image.clone())

    def forward(self, z):
        return self.image.expand(z.shape[0], *self.image.shape) + 0 * z.sum(dim=1).view(-1, 1, 1, 1)


class _MeanCritic(nn.Module):
    """A stand-in discriminator: sign * 10 * mean pixel; records what it sees."""

    def __init__(self, sign=1.0):
        super().__init__()
        self.sign = sign
        self.weight = nn.Parameter(torch.tensor(10.0))
        self.seen = []

    def forward(self, x):
        self.seen.append(x.detach().clone())
        return self.sign * self.weight * x.flatten(1).mean(dim=1)


def _frozen(params):
    return torch.optim.SGD(params, lr=0.0)


@pytest.mark.parametrize("sign", [1.0, -1.0], ids=["d-separates", "d-confused"])
def test_adaptive_p_in_training_moves_up_when_d_separates_real_from_fake_and_down_otherwise(sign):
    real, fake = torch.full((1, 8, 8), 0.5), torch.full((1, 8, 8), -0.5)
    speed = 4000
    model = GANModule(
        _ConstantG(fake), _MeanCritic(sign), augment=ADA(p=0.5, speed_images=speed, transforms="bg"),
        generator_optimizer=_frozen, discriminator_optimizer=_frozen,
    )
    trainer = quiet_trainer(max_steps=8, log_every_n_steps=1)
    trainer.fit(model, train_dataloaders=_constant_loader(real))
    # geometric transforms keep a constant image constant: r_t = sign exactly; 2 adjustments of 32 * 4 images
    expected = 0.5 + sign * 2 * 32 * 4 / speed
    assert model.augment.p.item() == pytest.approx(expected, rel=1e-6)
    assert model.augment.last_rt.item() == sign
    assert trainer.callback_metrics["augment_p"].item() == pytest.approx(expected, rel=1e-6)  # logged


@pytest.mark.parametrize("augment", ["diffaugment", "ada-fixed"])
def test_real_and_fake_batches_come_from_the_same_augmentation_distribution(augment):
    """G outputs exactly the real image: what D sees for real and for fake must then be equal in distribution."""
    torch.manual_seed(0)
    image = _images(n=1, channels=3, size=8)[0]
    aug = DiffAugment() if augment == "diffaugment" else ADA(p=1.0, target=None)
    critic = _MeanCritic()
    model = GANModule(_ConstantG(image), critic, augment=aug, generator_optimizer=_frozen, discriminator_optimizer=_frozen)
    quiet_trainer(max_steps=6).fit(model, train_dataloaders=_constant_loader(image, n=6 * 256, batch_size=256))
    # per generator step, D sees: real (D update), fake (D update), fake (G update)
    d_real, d_fake, g_fake = (torch.cat(critic.seen[i::3]) for i in range(3))
    assert not torch.equal(d_real, d_fake)  # independent draws, not one shared transform
    for seen in (d_real, d_fake, g_fake):
        assert (seen != image).flatten(1).any(dim=1).float().mean() > 0.9  # augmented in every update
    stats = lambda s: torch.stack([s.mean(dim=(1, 2, 3)), s.std(dim=(1, 2, 3)), (s == 0).float().mean(dim=(1, 2, 3))], 1)  # noqa: E731
    ref = stats(d_real)
    for other in (stats(d_fake), stats(g_fake)):
        standard_error = (ref.var(dim=0) / len(ref) + other.var(dim=0) / len(other)).sqrt()
        assert ((ref.mean(dim=0) - other.mean(dim=0)).abs() <= 4 * standard_error + 1e-6).all()


# ---------------------------------------------------------------------------------------------- state
def test_state_is_in_the_state_dict_and_a_mode_collapse_rollback_restores_it():
    from gan_lightning.collapse.monitor import ModeCollapseMonitor

    image = torch.full((1, 8, 8), 0.5)
    model = GANModule(_ConstantG(-image), _MeanCritic(), augment=ADA(p=0.25, speed_images=1000, transforms="bg"),
                      generator_optimizer=_frozen, discriminator_optimizer=_frozen)
    trainer = quiet_trainer(max_steps=6)
    trainer.fit(model, train_dataloaders=_constant_loader(image))  # 6 updates: one adjustment, 2 updates into the next
    ada = model.augment
    assert {"augment.p", "augment.sign_sum", "augment.score_count", "augment.image_count", "augment.updates"} <= set(model.state_dict())
    monitor = ModeCollapseMonitor(action="warn", keep_healthy_state=True)
    monitor.rollback.keep(trainer, model, step=6)  # the healthy snapshot a rollback returns to
    kept = (ada.p.item(), ada.sign_sum.item(), ada._updates)
    assert kept == (pytest.approx(0.25 + 32 * 4 / 1000), 64, 6)
    _observe(ada, -1.0, times=7)
    assert ada.p.item() != kept[0]
    monitor.restore_healthy_state(trainer, model)
    assert (ada.p.item(), ada.sign_sum.item(), ada._updates) == kept
    _observe(ada, 1.0, times=2)  # the interval continues where the snapshot was: 8 updates -> an adjustment
    assert ada.p.item() == pytest.approx(0.25 + 2 * 32 * 4 / 1000) and ada.image_count.item() == 0


def _resume_config(tmp_path: Path, kill_at=None) -> Path:
    cfg = yaml.safe_load((ROOT / "gan_lightning" / "default_experiment.yaml").read_text())
    cfg["trainer"].update(max_steps=21, log_every_n_steps=5, enable_progress_bar=False)
    cfg["trainer"]["logger"]["init_args"]["save_dir"] = str(tmp_path / "runs")
    cfg["trainer"]["callbacks"] = [
        {"class_path": "gan_lightning.callbacks.GANCheckpoint", "init_args": {"every_n_train_steps": 5, "save_last": True}},
    ]
    if kill_at is not None:
        cfg["trainer"]["callbacks"].append({"class_path": "gl_testing.KillAtStep", "init_args": {"step": kill_at}})
    for net in ("generator", "discriminator"):
        cfg["model"][net]["init_args"].update(image_size=8, width=8)
    cfg["model"]["discriminator"]["init_args"]["dropout"] = 0.2  # draws from the global RNG every step
    cfg["model"]["augment"] = {"class_path": "gan_lightning.tricks.ada.ADA", "init_args": {"p": 0.5, "speed_images": 2000}}
    cfg["data"]["init_args"].update(image_size=8, batch_size=32)
    path = tmp_path / f"config_{kill_at}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _fit(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT / "tests") + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-m", "gan_lightning", "fit", *args], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)


@pytest.mark.slow  # four CLI subprocesses (~50 s of CPU); .ci/run runs it
def test_sigkill_then_resume_with_ada_is_bit_identical(tmp_path):
    straight_dir, crash_dir = tmp_path / "straight", tmp_path / "crash"
    straight_dir.mkdir()
    crash_dir.mkdir()
    straight = _fit(straight_dir, "--config", str(_resume_config(straight_dir)))
    assert straight.returncode == 0, straight.stderr[-3000:]
    reference = torch.load(straight_dir / "runs/default/version_0/checkpoints/last.ckpt", weights_only=True)

    crashed = _fit(crash_dir, "--config", str(_resume_config(crash_dir, kill_at=13)))
    assert crashed.returncode == -9, crashed.stderr[-3000:]
    last = crash_dir / "runs/default/version_0/checkpoints/last.ckpt"
    saved = torch.load(last, weights_only=True)
    assert saved["global_step"] == 10 and saved["state_dict"]["augment.image_count"].item() == 2 * 32  # mid-interval
    resumed = _fit(crash_dir, "--config", str(_resume_config(crash_dir)), "--ckpt_path", "last")
    assert resumed.returncode == 0, resumed.stderr[-3000:]

    final = torch.load(last, weights_only=True)
    assert final["global_step"] == reference["global_step"] == 21
    p = reference["state_dict"]["augment.p"].item()
    assert p != 0.5 and 0 < p < 1  # p moved (5 adjustments of 0.064)
    for key, value in reference["state_dict"].items():
        assert torch.equal(final["state_dict"][key], value), key
    for opt_a, opt_b in zip(reference["optimizer_states"], final["optimizer_states"]):
        for pid, st in opt_a["state"].items():
            for name, value in st.items():
                assert torch.equal(torch.as_tensor(value), torch.as_tensor(opt_b["state"][pid][name])), (pid, name)


@pytest.mark.slow  # two processes (~20 s of CPU); .ci/run runs it
def test_two_process_ddp_averages_the_heuristic_so_both_ranks_share_p(tmp_path):
    """Rank 0's D calls every real image real, rank 1's calls it fake: alone they would move p in opposite ways."""
    proc = subprocess.run([sys.executable, str(ROOT / "tests/scripts/ada_ddp.py"), "--out", str(tmp_path)],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    for key in ranks[0]:
        assert torch.equal(ranks[0][key], ranks[1][key]), key
    # global r_t = 0 < 0.6 at each of the 2 adjustments, each over 2 ranks x 4 updates x 16 images
    assert ranks[0]["augment.p"].item() == pytest.approx(0.5 - 2 * (2 * 4 * 16) / 1000, rel=1e-6)
    assert ranks[0]["augment.last_rt"].item() == 0.0


# ---------------------------------------------------------------------------------------------- never for users
def test_samples_users_draw_are_never_augmented(tmp_path, monkeypatch):
    """Training with sample grids and an evaluation every step, then `sample` and `evaluate`: only the updates augment."""
    from gan_lightning.commands.cli import main
    from gan_lightning.commands.sample import load_gan

    from test_evaluation import TinyFeatures

    calls = []
    original = ADA.forward
    monkeypatch.setattr(ADA, "forward", lambda self, x: (calls.append(x.shape[0]), original(self, x))[1])
    monkeypatch.chdir(tmp_path)
    extractor = tmp_path / "features.pt"
    from gan_lightning.metrics import save_module_file

    save_module_file(TinyFeatures(), extractor)  # class path test_evaluation.TinyFeatures, trusted below
    monkeypatch.setenv("GAN_LIGHTNING_TRUSTED_MODULES", "test_evaluation")
    cfg = yaml.safe_load((ROOT / "gan_lightning" / "default_experiment.yaml").read_text())
    cfg["trainer"]["max_steps"] = 3
    cfg["trainer"]["logger"]["init_args"]["save_dir"] = str(tmp_path / "runs")
    cfg["trainer"]["callbacks"] = [cb for cb in cfg["trainer"]["callbacks"] if "ProgressBar" not in cb["class_path"]] + [
        {"class_path": "gan_lightning.callbacks.SampleGridCallback", "init_args": {"every_n_steps": 1, "dirname": "grids"}},
        {"class_path": "gan_lightning.callbacks.GANEvaluation", "init_args": {
            "every_n_steps": 1, "num_samples": 40, "num_real": 40, "metrics": ["fid"], "feature_extractor": str(extractor)}},
    ]
    for net in ("generator", "discriminator"):
        cfg["model"][net]["init_args"].update(image_size=8, width=8)
    cfg["model"].update(n_critic=2, augment={"class_path": "gan_lightning.tricks.ada.ADA", "init_args": {"p": 1.0, "target": None}})
    cfg["data"]["init_args"].update(image_size=8, batch_size=32)
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(cfg))
    assert main(["fit", "--config", str(tmp_path / "config.yaml")]) == 0
    assert len(calls) == 3 * (2 * 2 + 1)  # per generator step: real + fake in 2 D updates, fake in the G update
    run = tmp_path / "runs/default/version_0"
    assert len(list((run / "grids").glob("*.png"))) >= 3 and list(run.rglob("*.json"))  # grids and records were made

    ckpt = run / "checkpoints" / "last.ckpt"
    calls.clear()
    assert main(["sample", "--ckpt_path", str(ckpt), "--output", str(tmp_path / "s.pt"), "--num_samples", "8"]) == 0
    assert main(["evaluate", "--ckpt_path", str(ckpt), "--num_samples", "32", "--num_real", "32", "--metrics", "[fid]",
                 "--feature_extractor", str(extractor), "--cache_dir", str(tmp_path / "cache")]) == 0
    model = load_gan(str(ckpt))
    assert isinstance(model.augment, ADA) and model.augment.p.item() == 1.0  # the checkpoint has the augmentation ...
    drawn = torch.load(tmp_path / "s.pt", weights_only=True)
    model.generator.eval()
    with torch.no_grad():
        direct = model.generator(model.sample_latent(8, torch.Generator().manual_seed(0)))
    assert torch.equal(drawn, direct) and calls == []  # ... and sampling/evaluating never used it


# ---------------------------------------------------------------------------------------------- precision
def _precision(kind):
    from lightning.pytorch.plugins import MixedPrecision

    if kind == "16-mixed":  # Lightning turns "16-mixed" into bf16 on CPU unless the plugin is given explicitly
        return {"plugins": [MixedPrecision("16-mixed", "cpu", scaler=torch.amp.GradScaler("cpu"))]}
    return {"precision": kind}


@pytest.mark.parametrize("kind", ["32-true", "bf16-mixed", "16-mixed"])
@pytest.mark.parametrize("augment", ["diffaugment", "ada"])
def test_trains_under_every_precision_with_r1_on_augmented_reals(kind, augment):
    from gan_lightning.data import DigitsDataModule
    from gan_lightning.networks import DCGANDiscriminator, DCGANGenerator
    from gan_lightning.regularizers import R1Penalty

    torch.manual_seed(0)
    aug = DiffAugment() if augment == "diffaugment" else ADA(p=0.5, speed_images=500)
    model = GANModule(DCGANGenerator(latent_dim=8, image_size=8, channels=1, width=8),
                      DCGANDiscriminator(image_size=8, channels=1, width=8), regularizers=[R1Penalty(gamma=1.0)], augment=aug)
    dtypes = []
    original = type(aug).forward
    aug.forward = lambda x: (dtypes.append((x.dtype, torch.is_autocast_enabled("cpu"))), original(aug, x))[1]
    quiet_trainer(max_steps=4, **_precision(kind)).fit(model, DigitsDataModule(image_size=8, batch_size=32))
    assert all(torch.isfinite(p).all() for p in model.parameters())
    if kind != "32-true":
        assert any(autocast for _, autocast in dtypes)  # the augmentation ran under autocast ...
    if augment == "ada":
        assert 0 <= model.augment.p.item() <= 1 and model.augment.p.item() != 0.5  # ... and p adapted
