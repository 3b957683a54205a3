"""Conditional GANs: labels flow from the data to D, fake labels are uniform, sampling and grids take labels."""

import pytest
import torch
from PIL import Image

from gan_lightning import GANModule
from gan_lightning.callbacks import SampleGridCallback
from gan_lightning.errors import ConfigurationError
from gan_lightning.metrics import GeneratorEvaluator, MixtureReference
from gan_lightning.networks import DCGANDiscriminator, DCGANGenerator, MLPDiscriminator, MLPGenerator

from conftest import ROOT, quiet_trainer, run_cli, tiny_ring


def _conditional_ring_gan(**kwargs):
    torch.manual_seed(0)
    return GANModule(
        MLPGenerator(latent_dim=2, output_dim=2, hidden_dims=[16, 16], num_classes=8),
        MLPDiscriminator(input_dim=2, hidden_dims=[16, 16], num_classes=8),
        **kwargs,
    )


def test_real_labels_reach_the_discriminator_and_fake_labels_are_uniform():
    model = _conditional_ring_gan()
    calls = []
    forward = model.discriminator.forward

    def recording(x, labels=None):
        calls.append((x.detach().clone(), None if labels is None else labels.clone()))
        return forward(x, labels)

    model.discriminator.forward = recording
    datamodule = tiny_ring()
    quiet_trainer(max_steps=4).fit(model, datamodule)
    assert model.num_classes == 8 and all(labels is not None for _, labels in calls)
    modes = datamodule.train_dataset.tensors[0].new_tensor(
        [[torch.cos(torch.tensor(2 * torch.pi * k / 8)), torch.sin(torch.tensor(2 * torch.pi * k / 8))] for k in range(8)]
    )
    real_x, real_y = calls[0]  # the first D call of a step scores the real batch: its labels are the data's
    nearest = torch.cdist(real_x, modes).argmin(1)
    assert torch.equal(nearest, real_y)
    fake_labels = torch.cat([model.sample_labels(4000)])
    counts = torch.bincount(fake_labels, minlength=8).float() / 4000
    assert counts.min() > 0.1 and counts.max() < 0.15


def test_generate_depends_on_labels_and_refuses_labels_for_unconditional_gans():
    model = _conditional_ring_gan()
    zeros, sevens = torch.zeros(32, dtype=torch.long), torch.full((32,), 7, dtype=torch.long)
    assert not torch.allclose(model.generate(32, seed=0, labels=zeros), model.generate(32, seed=0, labels=sevens))
    torch.testing.assert_close(model.generate(32, seed=0, labels=zeros), model.generate(32, seed=0, labels=zeros))
    plain = GANModule(MLPGenerator(latent_dim=2, hidden_dims=[8]), MLPDiscriminator(hidden_dims=[8]))
    with pytest.raises(ConfigurationError, match="not conditional"):
        plain.generate(4, labels=zeros[:4])


def test_mismatched_or_missing_labels_are_clear_errors():
    with pytest.raises(ConfigurationError, match="num_classes"):
        GANModule(MLPGenerator(latent_dim=2, hidden_dims=[8], num_classes=8), MLPDiscriminator(hidden_dims=[8]))
    model = _conditional_ring_gan()
    with pytest.raises(ConfigurationError, match="labels"):
        model._unpack(torch.randn(8, 2))


def test_sample_grid_has_one_row_per_class(tmp_path):
    torch.manual_seed(0)
    model = GANModule(
        DCGANGenerator(latent_dim=8, image_size=8, channels=1, width=4, num_classes=10),
        DCGANDiscriminator(image_size=8, channels=1, width=4, num_classes=10),
    )
    from gan_lightning.data import DigitsDataModule

    grid = SampleGridCallback(every_n_steps=100, nrow=3)
    trainer = quiet_trainer(max_steps=1, callbacks=[grid], default_root_dir=tmp_path)
    trainer.fit(model, DigitsDataModule(image_size=8, batch_size=16))
    assert torch.equal(grid.fixed_labels, torch.arange(30) // 3)  # 10 classes x 3 per row
    with Image.open(grid.saved_files[-1]) as im:  # 3 columns, 10 rows of 8x8 images with 2-pixel padding
        assert im.size == (3 * 8 + 4 * 2, 10 * 8 + 11 * 2)


def test_evaluation_draws_uniform_labels_from_its_seed():
    seen = []

    class Conditional(torch.nn.Module):
        num_classes = 5

        def forward(self, z, labels):
            seen.append(labels)
            return z

    modes = torch.randn(5, 2)
    evaluator = GeneratorEvaluator(MixtureReference("test", modes, 0.1), num_samples=1000, seed=3)

    def sample_latent(n, generator=None):
        return torch.randn(n, 2, generator=generator)

    evaluator.generate_shard(Conditional(), sample_latent)
    first = torch.cat(seen)
    seen.clear()
    evaluator.generate_shard(Conditional(), sample_latent)
    assert torch.equal(first, torch.cat(seen)) and len(first) == 1000
    assert torch.bincount(first, minlength=5).min() > 150


def test_conditional_digits_experiment_and_sample_by_label(tmp_path):
    fit = run_cli(
        "fit", "--config", str(ROOT / "experiments/cdcgan_digits.yaml"), "--trainer.max_steps=3",
        "--trainer.logger.init_args.save_dir", str(tmp_path / "runs"), "--model.generator.init_args.width=8",
        "--model.discriminator.init_args.width=8", "--data.init_args.batch_size=16",
        cwd=tmp_path,
    )
    assert fit.returncode == 0, fit.stderr[-3000:]
    run = tmp_path / "runs/cdcgan_digits/version_0"
    ckpt = run / "checkpoints/last.ckpt"
    with Image.open(sorted((run / "samples").glob("*.png"))[-1]) as im:  # 10 rows of 8
        assert im.size == (8 * 32 + 9 * 2, 10 * 32 + 11 * 2)
    out = run_cli("sample", "--ckpt_path", str(ckpt), "--num_samples", "6", "--label", "3", "--output", str(tmp_path / "s.pt"), cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    assert torch.load(tmp_path / "s.pt", weights_only=True).shape == (6, 1, 32, 32)
    grid = run_cli("sample", "--ckpt_path", str(ckpt), "--num_samples", "15", "--output", str(tmp_path / "g.png"), cwd=tmp_path)
    assert grid.returncode == 0, grid.stderr[-3000:]
    with Image.open(tmp_path / "g.png") as im:  # rounded up to 2 per class: 10 rows of 2
        assert im.size == (2 * 32 + 3 * 2, 10 * 32 + 11 * 2)
    bad = run_cli("sample", "--ckpt_path", str(ckpt), "--label", "12", "--output", str(tmp_path / "x.pt"), cwd=tmp_path)
    assert bad.returncode == 2 and "--label must be in [0, 9]" in bad.stderr


def test_mode_seeking_pairs_share_their_class():
    """Mao et al. 2019 compare G(c, z1) with G(c, z2): the two halves of the generator batch get the same labels."""
    from gan_lightning.regularizers import ModeSeekingRegularizer

    model = _conditional_ring_gan(regularizers=[ModeSeekingRegularizer()])
    calls = []
    forward = model.generator.forward

    def recording(z, labels=None):
        calls.append(labels.clone())
        return forward(z, labels)

    model.generator.forward = recording
    quiet_trainer(max_steps=2).fit(model, tiny_ring(batch_size=32))
    batches = [labels for labels in calls if len(labels) == 32]  # (not the one-sample shape check at the start)
    generator_updates = batches[1::2]  # each step: the D update's batch, then the G update's
    assert len(generator_updates) == 2
    for labels in generator_updates:
        assert torch.equal(labels[:16], labels[16:32]) and len(labels.unique()) > 1
    assert not torch.equal(batches[0][:16], batches[0][16:32])  # D's fakes keep independent labels
