"""The command line as a user runs it."""

from pathlib import Path

import pytest
import torch
from PIL import Image

from gan_lightning.commands.cli import main

from conftest import ROOT, run_cli

EXPERIMENTS = sorted((ROOT / "experiments").glob("*.yaml"))


def test_experiments_exist():
    names = {p.stem for p in EXPERIMENTS}
    assert {"default", "dcgan_mnist", "wgan_gp_cifar10", "lsgan_folder", "ring8", "grid25", "sngan_cifar10", "cdcgan_digits",
            "wgan_gp_resnet_cifar10", "ring8_all_modes", "grid25_all_modes"} <= names


@pytest.mark.parametrize("config", EXPERIMENTS, ids=lambda p: p.stem)
def test_every_experiment_parses(config, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", str(config), "--print_config"])
    assert exit_info.value.code in (0, None)
    out = capsys.readouterr().out
    assert "class_path: gan_lightning" in out and "max_steps:" in out


def test_fit_without_config_uses_the_default_experiment(capsys):
    with pytest.raises(SystemExit):
        main(["fit", "--print_config", "--model.loss=hinge", "--trainer.max_steps=7"])
    out = capsys.readouterr().out
    assert "DigitsDataModule" in out and "loss: hinge" in out and "max_steps: 7" in out


def _error_of(argv, capsys):
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err
    return err


def test_unknown_loss_is_a_clear_error(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    err = _error_of(["fit", "--model.loss=hingee", "--trainer.max_steps=1"], capsys)
    assert "Unknown adversarial loss 'hingee'" in err and "hinge" in err


def test_impossible_image_size_is_a_clear_error(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    err = _error_of(["fit", "--model.generator.init_args.image_size=48", "--trainer.max_steps=1"], capsys)
    assert "image_size=48" in err and "power of two" in err


def test_empty_image_folder_is_a_clear_error(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "imgs").mkdir()
    err = _error_of(
        ["fit", "--config", str(ROOT / "experiments/lsgan_folder.yaml"), "--data.init_args.root", str(tmp_path / "imgs"),
         "--trainer.max_steps=1", "--trainer.logger=false"],
        capsys,
    )
    assert "No images found" in err


def test_corrupt_image_in_a_loader_worker_is_the_same_one_line_error(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    for i in range(7):
        Image.new("RGB", (12, 12), color=(30 * i, 0, 0)).save(imgs / f"{i}.png")
    (imgs / "broken.png").write_bytes(b"\x89PNG not really")
    size = ["--data.init_args.image_size=16", "--model.generator.init_args.image_size=16",
            "--model.discriminator.init_args.image_size=16", "--model.generator.init_args.width=8",
            "--model.discriminator.init_args.width=8", "--data.init_args.batch_size=4"]
    err = _error_of(
        ["fit", "--config", str(ROOT / "experiments/lsgan_folder.yaml"), "--data.init_args.root", str(imgs), *size,
         "--data.init_args.num_workers=2", "--data.init_args.cache=off", "--trainer.max_steps=4", "--trainer.logger=false"],
        capsys,
    )
    error = err[err.index("error: "):]
    assert error.startswith(f"error: Cannot read image {str(imgs / 'broken.png')!r} (")
    assert error.rstrip("\n").endswith("Delete or replace the file and restart.") and error.count("\n") == 1, error
    assert "worker" not in err


def test_missing_dataset_with_download_off_is_a_clear_error(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    err = _error_of(
        ["fit", "--config", str(ROOT / "experiments/dcgan_mnist.yaml"), "--data.init_args.root", str(tmp_path),
         "--data.init_args.download=false", "--data.init_args.num_workers=0", "--trainer.max_steps=1",
         "--trainer.logger=false"],
        capsys,
    )
    assert "MNIST was not found under" in err and "download=true" in err


def test_sample_with_missing_checkpoint_is_a_clear_error(tmp_path, capsys):
    err = _error_of(["sample", "--ckpt_path", str(tmp_path / "nope.ckpt")], capsys)
    assert "does not exist" in err


def test_ring8_end_to_end_fit_then_sample(tmp_path):
    fit = run_cli(
        "fit", "--config", str(ROOT / "experiments/ring8.yaml"),
        "--trainer.max_steps=40", "--trainer.logger.init_args.save_dir", str(tmp_path / "runs"),
        "--model.generator.init_args.hidden_dims=[32,32]", "--model.discriminator.init_args.hidden_dims=[32,32]",
        "--data.init_args.num_samples=2000",
        cwd=tmp_path,
    )
    assert fit.returncode == 0, fit.stderr[-3000:]
    # the progress in generator steps, as plain lines since the output is not a terminal
    assert fit.stdout.splitlines()[-1].startswith("generator step 40/40 (100%) |") and "\r" not in fit.stdout
    ckpt = tmp_path / "runs/ring8/version_0/checkpoints/last.ckpt"
    assert torch.load(ckpt, weights_only=True)["global_step"] == 40
    assert list((tmp_path / "runs/ring8/version_0").glob("events.out.tfevents*"))

    out = tmp_path / "points.pt"
    sample = run_cli("sample", "--ckpt_path", str(ckpt), "--num_samples", "123", "--output", str(out), "--seed", "5", cwd=tmp_path)
    assert sample.returncode == 0, sample.stderr[-3000:]
    points = torch.load(out, weights_only=True)
    assert points.shape == (123, 2) and torch.isfinite(points).all()
    again = run_cli("sample", "--ckpt_path", str(ckpt), "--num_samples", "123", "--output", str(tmp_path / "b.pt"), "--seed", "5", cwd=tmp_path)
    assert again.returncode == 0 and torch.equal(points, torch.load(tmp_path / "b.pt", weights_only=True))
    png = run_cli("sample", "--ckpt_path", str(ckpt), "--num_samples", "200", "--output", str(tmp_path / "p.png"), cwd=tmp_path)
    assert png.returncode == 0 and (tmp_path / "p.png").stat().st_size > 1000


def test_image_folder_end_to_end_fit_then_sample(tmp_path):
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    g = torch.Generator().manual_seed(0)
    for i in range(40):
        arr = (torch.rand(24, 24, 3, generator=g) * 255).to(torch.uint8).numpy()
        Image.fromarray(arr).save(imgs / f"{i:03d}.png")
    size = ["--data.init_args.image_size=16", "--model.generator.init_args.image_size=16",
            "--model.discriminator.init_args.image_size=16", "--model.generator.init_args.width=8",
            "--model.discriminator.init_args.width=8", "--data.init_args.batch_size=8", "--data.init_args.num_workers=0"]
    fit = run_cli(
        "fit", "--config", str(ROOT / "experiments/lsgan_folder.yaml"), "--data.init_args.root", str(imgs), *size,
        "--trainer.max_steps=12", "--trainer.logger.init_args.save_dir", str(tmp_path / "runs"),
        cwd=tmp_path,
    )
    assert fit.returncode == 0, fit.stderr[-3000:]
    ckpt = tmp_path / "runs/lsgan_folder/version_0/checkpoints/last.ckpt"
    assert torch.load(ckpt, weights_only=True)["global_step"] == 12

    sample = run_cli("sample", "--ckpt_path", str(ckpt), "--num_samples", "10", "--output", str(tmp_path / "s.pt"), cwd=tmp_path)
    assert sample.returncode == 0, sample.stderr[-3000:]
    images = torch.load(tmp_path / "s.pt", weights_only=True)
    assert images.shape == (10, 3, 16, 16) and images.min() >= -1 and images.max() <= 1
    grid = run_cli("sample", "--ckpt_path", str(ckpt), "--num_samples", "16", "--output", str(tmp_path / "g.png"), cwd=tmp_path)
    assert grid.returncode == 0
    with Image.open(tmp_path / "g.png") as im:
        assert im.size == (4 * 16 + 5 * 2, 4 * 16 + 5 * 2)


def test_console_script_help(tmp_path):
    result = run_cli("--help", cwd=tmp_path)
    assert result.returncode == 0 and "sample" in result.stdout
    result = run_cli("sample", "--help", cwd=tmp_path)
    assert result.returncode == 0 and "--ckpt_path" in result.stdout and "--num_samples" in result.stdout


@pytest.mark.parametrize("mode,shape", [("L", (20, 24)), ("RGB", (40, 40, 3))], ids=["grayscale", "rgb"])
def test_small_images_experiment_trains_on_any_folder(mode, shape, tmp_path, monkeypatch, capsys):
    """The start-here experiment, as its header says to run it, on a grayscale and on an RGB folder of odd sizes."""
    import json

    import numpy as np

    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(0)
    (tmp_path / "imgs").mkdir()
    for i in range(40):
        Image.fromarray(rng.integers(0, 255, shape, dtype=np.uint8), mode).save(tmp_path / "imgs" / f"{i}.png")
    code = main([
        "fit", "--config", str(ROOT / "experiments/small_images_32.yaml"), "--data.init_args.root", "imgs",
        "--trainer.max_steps=3", "--data.init_args.batch_size=16", "--data.init_args.num_workers=0",
        "--model.generator.init_args.width=8", "--model.discriminator.init_args.width=8",
        # offline: score with the digits classifier's features instead of InceptionV3 (the last callback's options)
        "--trainer.callbacks.feature_extractor=digits", "--trainer.callbacks.num_samples=32",
    ])
    assert code in (0, None), capsys.readouterr().err
    run = tmp_path / "runs" / "small_images_32" / "version_0"
    assert (run / "checkpoints" / "last.ckpt").is_file()
    scores = json.loads((run / "evaluation" / "step_000000003.json").read_text())["scores"]
    assert set(scores) >= {"fid", "kid"} and all(np.isfinite(v) for v in scores.values())
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["hyper_parameters"]["augment"] == "ada" and "augment.p" in ckpt["state_dict"]
