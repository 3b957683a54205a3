"""The bad inputs listed in the README's table, each with the message the user sees."""

import errno

import pytest
import torch
from PIL import Image

from gan_lightning import GANCheckpoint
from gan_lightning.commands.cli import main
from gan_lightning.errors import CheckpointError

from conftest import ROOT, quiet_trainer, run_cli, tiny_gan, tiny_ring


def _error_of(argv, capsys, code=2):
    rc = main(argv)
    err = capsys.readouterr().err
    assert rc == code, err
    assert "Traceback" not in err
    return err


def test_wrong_config_key(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as info:
        main(["fit", "--model.n_critc=2"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "n_critc" in err and "Traceback" not in err


def test_corrupt_image_in_folder_through_the_cli(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    for i in range(16):
        Image.new("RGB", (16, 16), (i * 10, 0, 0)).save(imgs / f"{i:02d}.png")
    (imgs / "07.png").write_bytes(b"garbage")
    err = _error_of(
        ["fit", "--config", str(ROOT / "experiments/lsgan_folder.yaml"), "--data.init_args.root", str(imgs),
         "--data.init_args.image_size=16", "--model.generator.init_args.image_size=16",
         "--model.discriminator.init_args.image_size=16", "--model.generator.init_args.width=4",
         "--model.discriminator.init_args.width=4", "--data.init_args.batch_size=16", "--data.init_args.num_workers=0",
         "--trainer.max_steps=2", "--trainer.logger=false"],
        capsys,
    )
    assert "Cannot read image" in err and "07.png" in err


def test_checkpoint_from_another_architecture_is_refused(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    first = run_cli("fit", "--config", str(ROOT / "experiments/ring8.yaml"), "--trainer.max_steps=2",
                    "--trainer.logger.init_args.save_dir", str(tmp_path / "runs"), "--data.init_args.num_samples=400",
                    cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-2000:]
    ckpt = tmp_path / "runs/ring8/version_0/checkpoints/last.ckpt"
    err = _error_of(["fit", "--config", str(ROOT / "experiments/default.yaml"), "--ckpt_path", str(ckpt)], capsys)
    assert "differ from the run's" in err and "MLPGenerator" in err and "DCGANGenerator" in err


def test_unwritable_output_directory(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a_file").write_text("not a directory")
    err = _error_of(["fit", "--trainer.max_steps=1", "--trainer.logger.init_args.save_dir", str(tmp_path / "a_file" / "runs")], capsys)
    assert "Cannot write to" in err and "a_file" in err
    err = _error_of(["sample", "--ckpt_path", str(tmp_path / "x.ckpt")], capsys)
    assert "does not exist" in err


def test_disk_full_during_save_keeps_the_previous_checkpoint(tmp_path):
    from lightning.pytorch import Trainer

    ckpt = GANCheckpoint(dirpath=tmp_path, every_n_train_steps=2, save_last=True, save_top_k=0)
    real_save = Trainer.save_checkpoint
    calls = []

    def full_disk(self, filepath, weights_only=False, storage_options=None):
        calls.append(filepath)
        if len(calls) == 2:
            with open(filepath, "wb") as f:
                f.write(b"partial")
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(self, filepath, weights_only, storage_options)

    Trainer.save_checkpoint = full_disk
    try:
        with pytest.raises(CheckpointError, match=r"No space left on device.*last.ckpt' is intact.*--ckpt_path last"):
            quiet_trainer(max_steps=6, callbacks=[ckpt], enable_checkpointing=True).fit(tiny_gan(), tiny_ring())
    finally:
        Trainer.save_checkpoint = real_save
    assert not list(tmp_path.glob("*.tmp"))
    assert torch.load(tmp_path / "last.ckpt", weights_only=True)["global_step"] == 2
