"""Monitoring callbacks: fixed-noise sample grids, timelapse GIF, loss curves, D/G balance diagnostics."""

from __future__ import annotations

import inspect
import runpy
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import ROOT, quiet_trainer, tiny_gan, tiny_ring
from lightning.pytorch import seed_everything
from lightning.pytorch.loggers import Logger, TensorBoardLogger
from PIL import Image

from gan_lightning import GANModule, HingeLoss, LeastSquaresLoss, NonSaturatingLoss, RelativisticAverageLoss, WassersteinGPLoss
from gan_lightning.callbacks import (
    BalanceDiagnosticsCallback,
    LossCurvesCallback,
    SampleGridCallback,
    TimelapseCallback,
    make_timelapse,
    plot_loss_curves_from_tensorboard,
)
from gan_lightning.data import DigitsDataModule
from gan_lightning.networks import DCGANDiscriminator, DCGANGenerator


def monitoring_callbacks(every: int, seed: int = 1234) -> list:
    return [
        SampleGridCallback(every_n_steps=every, seed=seed),
        TimelapseCallback(),
        LossCurvesCallback(),
        BalanceDiagnosticsCallback(),
    ]


def record_eval_inputs(module: GANModule, n: int) -> list[torch.Tensor]:
    """Batches of ``n`` latents the generator sees in eval mode (the sample callback's, not training's)."""
    seen: list[torch.Tensor] = []

    def record(m, args):
        if not m.training and args[0].shape[0] == n:
            seen.append(args[0].clone())

    module.generator.register_forward_pre_hook(record)
    return seen


def image_info(path: Path) -> tuple[tuple[int, int], int]:
    """(size, number of frames) of an image file, closing it."""
    with Image.open(path) as img:
        return img.size, getattr(img, "n_frames", 1)


def read_events(logdir: Path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(logdir), size_guidance={"scalars": 0, "images": 0, "tensors": 0})
    acc.Reload()
    return acc


class ImageRecordingLogger(Logger):
    """A non-TensorBoard logger with ``log_image``: what the sample callback must also work with."""

    def __init__(self, save_dir: Path):
        super().__init__()
        self._save_dir = str(save_dir)
        self.images: list[tuple[str, torch.Tensor, int]] = []

    name = property(lambda self: "recording")
    version = property(lambda self: 0)
    save_dir = property(lambda self: self._save_dir)

    def log_metrics(self, metrics, step=None):
        pass  # scalars are not what this logger is for

    def log_hyperparams(self, params, *args, **kwargs):
        pass

    def log_image(self, key, images, step=None):
        self.images += [(key, img, step) for img in images]


# ---------------------------------------------------------------------------------------------- sample grids
def test_image_grids_use_the_same_noise_and_have_the_right_shape_and_range(tmp_path):
    torch.manual_seed(0)
    gan = GANModule(
        DCGANGenerator(latent_dim=8, image_size=8, channels=1, width=8), DCGANDiscriminator(image_size=8, channels=1, width=8)
    )
    seen = record_eval_inputs(gan, 16)
    logger = ImageRecordingLogger(tmp_path)
    samples = SampleGridCallback(every_n_steps=3, num_samples=16, nrow=4)
    trainer = quiet_trainer(max_steps=6, logger=logger, callbacks=[samples], log_every_n_steps=3)
    trainer.fit(gan, DigitsDataModule(image_size=8, batch_size=32))

    expected = gan.sample_latent(16, torch.Generator().manual_seed(1234))
    assert len(seen) == 3  # steps 0, 3, 6 (the end of training is step 6: not drawn twice)
    for z in seen:
        torch.testing.assert_close(z, expected, rtol=0, atol=0)
    assert [step for _, _, step in logger.images] == [0, 3, 6]
    side = 4 * 8 + 5 * 2  # 4 images of 8 px and 5 paddings of 2 px
    for key, image, _ in logger.images:
        assert key == "samples" and image.shape == (3, side, side)
        assert image.min() >= 0 and image.max() <= 1 and image.std() > 0
    files = sorted((tmp_path / "samples").glob("*.png"))
    assert [f.name for f in files] == ["step_000000.png", "step_000003.png", "step_000006.png"]
    with Image.open(files[-1]) as png:
        assert png.size == (side, side)
        pixels = torch.from_numpy(np.array(png.convert("RGB"))).permute(2, 0, 1).float() / 255
    # The PNG is the logged image (up to 8-bit rounding).
    assert (pixels - logger.images[-1][1]).abs().max() <= 1 / 255 + 1e-6


def test_ema_generator_is_used_and_raw_one_on_request(tmp_path):
    gan = tiny_gan(ema_decay=0.9)
    ema_seen = []
    gan.generator_ema.register_forward_pre_hook(lambda m, args: ema_seen.append(m.training))
    raw_seen = record_eval_inputs(gan, 1000)
    trainer = quiet_trainer(max_steps=4, default_root_dir=tmp_path, callbacks=[SampleGridCallback(every_n_steps=4, also_raw=True)])
    trainer.fit(gan, tiny_ring())
    assert ema_seen == [False, False]  # steps 0 and 4, in eval mode
    assert len(raw_seen) == 2
    assert gan.generator_ema.training  # train mode restored
    assert len(list((tmp_path / "samples").glob("step_*.png"))) == 2
    assert len(list((tmp_path / "samples" / "raw").glob("step_*.png"))) == 2


def test_fixed_noise_survives_checkpoint_and_resume(tmp_path):
    first = SampleGridCallback(every_n_steps=5, seed=1)
    gan = tiny_gan()
    trainer = quiet_trainer(max_steps=5, default_root_dir=tmp_path / "a", callbacks=[first, LossCurvesCallback(every_n_steps=1)])
    trainer.fit(gan, tiny_ring())
    ckpt = tmp_path / "step5.ckpt"
    trainer.save_checkpoint(ckpt)
    state = torch.load(ckpt, weights_only=True)  # tensors only: loads without unpickling objects
    saved = [v for k, v in state["callbacks"].items() if k.startswith("SampleGridCallback")]
    assert len(saved) == 1
    torch.testing.assert_close(saved[0]["fixed_latents"], first.fixed_latents, rtol=0, atol=0)

    resumed_gan = tiny_gan()
    seen = record_eval_inputs(resumed_gan, 1000)
    second = SampleGridCallback(every_n_steps=5, seed=1)
    curves = LossCurvesCallback(every_n_steps=1)
    trainer = quiet_trainer(max_steps=10, default_root_dir=tmp_path / "b", callbacks=[second, curves])
    trainer.fit(resumed_gan, tiny_ring(), ckpt_path=ckpt)
    assert len(seen) == 1  # step 10 only: no step-0 grid on resume
    torch.testing.assert_close(seen[0], first.fixed_latents, rtol=0, atol=0)
    assert [f.name for f in sorted((tmp_path / "b" / "samples").glob("*.png"))] == ["step_000010.png"]
    steps, losses = curves.history()
    assert steps == list(range(1, 11)) and losses.shape == (10, 2)  # history from before the resume is kept


def test_scatter_plot_for_points_data(tmp_path):
    logger = ImageRecordingLogger(tmp_path)
    trainer = quiet_trainer(max_steps=2, logger=logger, callbacks=[SampleGridCallback(every_n_steps=2)])
    trainer.fit(tiny_gan(), tiny_ring())
    assert len(logger.images) == 2
    image = logger.images[0][1]
    assert image.shape == (3, 400, 400) and image.min() >= 0 and image.max() <= 1
    # Red generated points over grey real ones: both colours are present.
    red = (image[0] > 0.7) & (image[1] < 0.4) & (image[2] < 0.4)
    grey = (image[0] - 0.75).abs().lt(0.05) & (image[0] - image[2]).abs().lt(0.02)
    assert red.sum() > 50 and grey.sum() > 50


# ---------------------------------------------------------------------------------------------- whole runs
@pytest.fixture(scope="module")
def tensorboard_run(tmp_path_factory):
    """A short run with every monitoring callback and a TensorBoard logger."""
    root = tmp_path_factory.mktemp("tb")
    seed_everything(0)
    gan = tiny_gan()
    trainer = quiet_trainer(
        max_steps=12,
        log_every_n_steps=4,
        logger=TensorBoardLogger(root, name="run", default_hp_metric=False),
        callbacks=monitoring_callbacks(every=4),
    )
    trainer.fit(gan, tiny_ring())
    return trainer, gan, Path(trainer.log_dir)


def test_tensorboard_run_has_scalars_images_layout_and_hparams(tensorboard_run):
    from tensorboard.plugins.hparams import plugin_data_pb2

    _, _, run_dir = tensorboard_run
    acc = read_events(run_dir)
    scalars = acc.Tags()["scalars"]
    for tag in ("d_loss", "g_loss", "d_real", "d_fake", "balance/d_acc_real", "balance/d_acc_fake",
                "grad_norm/generator", "grad_norm/discriminator", "grad_norm/g_over_d"):
        assert tag in scalars, tag
        assert [e.step for e in acc.Scalars(tag)] == [4, 8, 12], tag  # x-axis = generator steps
    for tag in ("balance/d_acc_real", "balance/d_acc_fake"):
        assert all(0 <= e.value <= 1 for e in acc.Scalars(tag))
    assert [e.step for e in acc.Images("samples")] == [0, 4, 8, 12]
    assert "custom_scalars__config__" in acc.Tags()["tensors"]
    hparams = acc.PluginTagToContent("hparams")
    experiment = plugin_data_pb2.HParamsPluginData.FromString(hparams["_hparams_/experiment"]).experiment
    assert {m.name.tag for m in experiment.metric_infos} == {"hparams/final_d_loss", "hparams/final_g_loss"}
    assert {h.name for h in experiment.hparam_infos} >= {"loss", "n_critic", "latent_dim"}


def test_gradient_norms_are_of_the_right_network(tensorboard_run):
    # After the last iteration, .grad holds the last G step's gradients (G) and the last D step's (D: it is
    # frozen during the G step): the values logged at the last step must be their norms.
    _, gan, run_dir = tensorboard_run
    acc = read_events(run_dir)

    def norm(module):
        return torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in module.parameters() if p.grad is not None])).item()

    g, d = norm(gan.generator), norm(gan.discriminator)
    assert g != pytest.approx(d, rel=1e-3)
    assert acc.Scalars("grad_norm/generator")[-1].value == pytest.approx(g, rel=1e-5)
    assert acc.Scalars("grad_norm/discriminator")[-1].value == pytest.approx(d, rel=1e-5)
    assert acc.Scalars("grad_norm/g_over_d")[-1].value == pytest.approx(g / d, rel=1e-5)


def test_run_directory_holds_pngs_gif_and_loss_plot(tensorboard_run, tmp_path):
    _, _, run_dir = tensorboard_run
    grids = sorted((run_dir / "samples").glob("step_*.png"))
    assert len(grids) == 4
    (gif_w, gif_h), frames = image_info(run_dir / "timelapse.gif")
    (grid_w, grid_h), _ = image_info(grids[0])
    assert frames == len(grids)
    assert gif_w == grid_w and gif_h > grid_h  # the step counter's banner on top
    assert image_info(run_dir / "loss_curves.png")[0][0] > 500

    # On demand: the function and the script make the same number of frames.
    assert image_info(make_timelapse(run_dir / "samples", tmp_path / "again.gif"))[1] == len(grids)
    script = runpy.run_path(str(ROOT / "scripts" / "make_timelapse.py"))  # its CLI, in this process (no re-import)
    script["main"](["--samples_dir", str(run_dir / "samples"), "--output", str(tmp_path / "script.gif"), "--frame_ms", "50"])
    assert image_info(tmp_path / "script.gif")[1] == len(grids)
    plot = plot_loss_curves_from_tensorboard(run_dir, tmp_path / "from_tb.png")
    assert image_info(plot)[0] == image_info(run_dir / "loss_curves.png")[0]


def test_training_is_bit_identical_with_and_without_callbacks_and_without_logger(tensorboard_run, tmp_path):
    _, monitored, _ = tensorboard_run
    seed_everything(0)
    plain = tiny_gan()
    quiet_trainer(max_steps=12, log_every_n_steps=4).fit(plain, tiny_ring())

    seed_everything(0)
    no_logger = tiny_gan()
    trainer = quiet_trainer(max_steps=12, log_every_n_steps=4, logger=False, default_root_dir=tmp_path, callbacks=monitoring_callbacks(every=4))
    trainer.fit(no_logger, tiny_ring())
    assert (tmp_path / "timelapse.gif").is_file() and (tmp_path / "loss_curves.png").is_file()

    for other in (monitored, no_logger):
        for (name, a), (_, b) in zip(plain.state_dict().items(), other.state_dict().items()):
            assert torch.equal(a, b), name


# ---------------------------------------------------------------------------------------------- distribution
def test_collectives_only_where_every_rank_runs(tmp_path, monkeypatch):
    """Callback code may reach the strategy's collectives only from ``setup`` (every rank runs it)."""
    trainer = quiet_trainer(max_steps=4, log_every_n_steps=2, logger=TensorBoardLogger(tmp_path), callbacks=monitoring_callbacks(every=2))
    callers: list[str] = []
    own_files = {str(Path(m.__file__)) for m in map(sys.modules.get, [
        "gan_lightning.callbacks.samples", "gan_lightning.callbacks.timelapse", "gan_lightning.callbacks.loss_curves",
        "gan_lightning.callbacks.diagnostics", "gan_lightning.callbacks._run_dir"])}

    def spy(name, original):
        def wrapped(*args, **kwargs):
            for frame in inspect.stack()[1:]:
                if frame.filename in own_files:
                    callers.append(frame.function)
            return original(*args, **kwargs)
        return wrapped

    for name in ("broadcast", "barrier", "all_gather", "reduce", "reduce_boolean_decision"):
        monkeypatch.setattr(trainer.strategy, name, spy(name, getattr(trainer.strategy, name)))
    trainer.fit(tiny_gan(), tiny_ring())
    assert callers and set(callers) <= {"setup", "resolve_run_dir"}


def test_other_ranks_write_nothing(tmp_path, monkeypatch):
    from lightning.pytorch import Trainer

    monkeypatch.setattr(Trainer, "is_global_zero", property(lambda self: False))
    logger = ImageRecordingLogger(tmp_path)
    trainer = quiet_trainer(max_steps=4, log_every_n_steps=2, logger=logger, callbacks=monitoring_callbacks(every=2))
    trainer.fit(tiny_gan(), tiny_ring())
    assert logger.images == [] and list(tmp_path.rglob("*.png")) == [] and list(tmp_path.rglob("*.gif")) == []


def test_ddp_two_processes_write_one_set_of_files(tmp_path):
    script = ROOT / "tests" / "scripts" / "monitoring_ddp.py"
    out = subprocess.run([sys.executable, str(script), str(tmp_path)], capture_output=True, text=True, timeout=240, cwd=tmp_path)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    runs = list((tmp_path / "logs" / "ddp").iterdir())
    assert [r.name for r in runs] == ["version_0"]
    run = runs[0]
    assert sorted(f.name for f in (run / "samples").iterdir()) == ["step_000000.png", "step_000010.png", "step_000020.png"]
    assert len(list(run.glob("events.out.tfevents.*"))) == 1
    assert image_info(run / "timelapse.gif")[1] == 3
    assert (run / "loss_curves.png").is_file()
    assert sorted(p.name for p in tmp_path.rglob("*.gif")) == ["timelapse.gif"]
    assert len(list(tmp_path.rglob("loss_curves.png"))) == 1
    acc = read_events(run)
    assert [e.step for e in acc.Scalars("grad_norm/generator")] == [10, 20]
    assert [e.step for e in acc.Images("samples")] == [0, 10, 20]


# ---------------------------------------------------------------------------------------------- accuracy rules
@pytest.mark.parametrize(
    "loss, real, fake, expected",
    [
        (NonSaturatingLoss(), [2.0, -1.0], [-3.0, 0.5], (0.5, 0.5)),  # logits: threshold 0
        (HingeLoss(), [0.2, 3.0], [-0.1, -2.0], (1.0, 1.0)),  # threshold 0
        (LeastSquaresLoss(a=-1.0, b=1.0, c=0.0), [0.1, -0.2], [-0.5, 0.3], (0.5, 0.5)),  # (a + b) / 2 = 0
        (LeastSquaresLoss(), [0.6, 0.4], [0.4, 0.45], (0.5, 1.0)),  # (0 + 1) / 2 = 0.5
        (RelativisticAverageLoss(), [1.0, 3.0], [2.5, 0.5], (0.5, 0.5)),  # vs the other side's mean (1.5, 2.0)
        (WassersteinGPLoss(), [1.0], [0.0], None),  # no accuracy for a critic
    ],
)
def test_discriminator_accuracy_rules(loss, real, fake, expected):
    result = loss.discriminator_accuracy(torch.tensor(real), torch.tensor(fake))
    if expected is None:
        assert result is None
    else:
        assert tuple(round(v.item(), 4) for v in result) == expected


def test_wasserstein_estimate_is_logged_for_critics(tmp_path):
    gan = tiny_gan(loss="wgan-gp", n_critic=2)
    trainer = quiet_trainer(max_steps=4, log_every_n_steps=2, logger=TensorBoardLogger(tmp_path), callbacks=[BalanceDiagnosticsCallback()])
    trainer.fit(gan, tiny_ring())
    acc = read_events(Path(trainer.log_dir))
    assert [e.step for e in acc.Scalars("balance/wasserstein_estimate")] == [2, 4]
    assert "balance/d_acc_real" not in acc.Tags()["scalars"]
    last = gan.last_step_outputs
    assert acc.Scalars("balance/wasserstein_estimate")[-1].value == pytest.approx(
        (last.real_scores.mean() - last.fake_scores.mean()).item(), rel=1e-5
    )


def test_diagnostics_interval_independent_of_the_logging_interval(tmp_path):
    trainer = quiet_trainer(max_steps=6, log_every_n_steps=4, logger=TensorBoardLogger(tmp_path), callbacks=[BalanceDiagnosticsCallback(every_n_steps=3)])
    trainer.fit(tiny_gan(), tiny_ring())
    acc = read_events(Path(trainer.log_dir))
    assert [e.step for e in acc.Scalars("d_loss")] == [4]
    for tag in ("balance/d_acc_real", "grad_norm/generator", "grad_norm/discriminator", "grad_norm/g_over_d"):
        assert [e.step for e in acc.Scalars(tag)] == [3, 6], tag
