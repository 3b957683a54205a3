"""Where a run's files go and what ``fit`` prints, as a user runs it: ``--trainer.default_root_dir`` moves the whole
run, ``logger: false`` writes under it too, nothing lands in the working directory, and the console carries the
collapse alarm but not Lightning's lines a user cannot act on."""

import logging
from pathlib import Path

import pytest
import torch
import yaml

from conftest import ROOT, run_cli
from gan_lightning.runtime import console
from gan_lightning.runtime.resume import find_last_checkpoint
from gan_lightning.runtime.run_paths import resolve_run_paths, under_root_dir

TINY = ["--model.generator.init_args.hidden_dims=[32,32]", "--model.discriminator.init_args.hidden_dims=[32,32]",
        "--data.init_args.num_samples=2000", "--trainer.log_every_n_steps=2"]
#: Lightning lines that ``fit`` must not print (gan_lightning.runtime.console.LIGHTNING_NOISE).
NOISE = ("Tip:", "litlogger", "litmodels", "TPU available")


# ---------------------------------------------------------------------- the path rule
def test_relative_logger_and_checkpoint_paths_are_relative_to_default_root_dir():
    cfg = {
        "default_root_dir": "out/runs",
        "logger": [{"class_path": "TensorBoardLogger", "init_args": {"save_dir": ".", "name": "ring8"}},
                   {"class_path": "CSVLogger", "init_args": {"save_dir": "/abs/logs"}},
                   {"class_path": "WandbLogger", "init_args": {"save_dir": "s3://bucket/logs"}}],
        "callbacks": [{"class_path": "GANCheckpoint", "init_args": {"dirpath": "ckpts"}},
                      {"class_path": "GANCheckpoint", "init_args": {"dirpath": None}},
                      {"class_path": "SampleGridCallback", "init_args": {"dirname": "samples"}}],
    }
    resolve_run_paths(cfg)
    assert [lg["init_args"]["save_dir"] for lg in cfg["logger"]] == ["out/runs", "/abs/logs", "s3://bucket/logs"]
    assert cfg["callbacks"][0]["init_args"]["dirpath"] == "out/runs/ckpts"
    assert cfg["callbacks"][1]["init_args"]["dirpath"] is None
    assert cfg["callbacks"][2]["init_args"] == {"dirname": "samples"}
    # without default_root_dir (Lightning's default: the working directory) nothing moves
    assert under_root_dir({"default_root_dir": None}, "runs") == Path("runs")


def test_ckpt_path_last_searches_under_default_root_dir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    last = tmp_path / "elsewhere/ring8/version_3/checkpoints/last.ckpt"
    last.parent.mkdir(parents=True)
    last.write_bytes(b"")
    logger = {"class_path": "TensorBoardLogger", "init_args": {"save_dir": ".", "name": "ring8"}}
    found, _ = find_last_checkpoint({"trainer": {"default_root_dir": "elsewhere", "logger": logger}})
    assert found == Path("elsewhere/ring8/version_3/checkpoints/last.ckpt")
    found, _ = find_last_checkpoint({"trainer": {"default_root_dir": None, "logger": logger}})
    assert found is None


def test_cli_builds_the_run_under_default_root_dir_and_saves_the_paths_as_given(tmp_path, monkeypatch):
    from lightning.pytorch.cli import SaveConfigCallback

    from gan_lightning.commands.cli import GANLightningCLI

    monkeypatch.chdir(tmp_path)
    args = ["--config", str(ROOT / "experiments/ring8.yaml"), "--trainer.default_root_dir", "X"]
    cli = GANLightningCLI(args=args, run=False)
    assert Path(cli.trainer.default_root_dir) == Path("X")
    assert Path(cli.trainer.logger.log_dir) == Path("X/ring8/version_0")
    saved = [cb.config for cb in cli.trainer.callbacks if isinstance(cb, SaveConfigCallback)]
    assert saved and saved[0].trainer.logger.init_args.save_dir == "."  # config.yaml: resolved again on resume
    assert cli.config.trainer.logger.init_args.save_dir == "."


def test_lightning_noise_is_dropped_and_other_lightning_lines_pass(caplog):
    from lightning.pytorch.utilities import rank_zero_info

    caplog.set_level(logging.INFO)
    with console.lightning_noise_filtered():
        rank_zero_info("💡 Tip: For seamless cloud logging and experiment tracking, try installing [litlogger](...)")
        rank_zero_info("TPU available: False, using: 0 TPU cores")
        rank_zero_info("GPU available: False, used: False")
    rank_zero_info("💡 Tip: outside fit, Lightning's own behaviour is left alone")
    messages = [r.getMessage() for r in caplog.records]
    assert "GPU available: False, used: False" in messages
    assert not any("litlogger" in m or "TPU available" in m for m in messages)
    assert any("outside fit" in m for m in messages)


# ---------------------------------------------------------------------- as a user runs it
def _files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


def _fit(cwd: Path, *args: str):
    return run_cli("fit", *args, cwd=cwd)


@pytest.mark.slow
def test_default_root_dir_moves_the_whole_run_and_fit_prints_no_noise(tmp_path):
    work, root = tmp_path / "work", tmp_path / "X"
    work.mkdir()
    ring8 = str(ROOT / "experiments/ring8.yaml")
    fit = _fit(work, "--config", ring8, "--trainer.max_steps=10", "--trainer.default_root_dir", str(root), *TINY)
    assert fit.returncode == 0, fit.stderr[-3000:]
    assert list(work.iterdir()) == []  # nothing in the working directory
    run = root / "ring8/version_0"
    files = _files(root)
    assert {"ring8/version_0/checkpoints/last.ckpt", "ring8/version_0/config.yaml", "ring8/version_0/loss_curves.png",
            "ring8/version_0/timelapse.gif", "ring8/version_0/samples/step_000010.png",
            "ring8/version_0/evaluation/step_000000010.json"} <= files, files
    assert list(run.glob("events.out.tfevents*"))
    saved = yaml.safe_load((run / "config.yaml").read_text())["trainer"]
    assert saved["logger"]["init_args"]["save_dir"] == "." and saved["default_root_dir"] == str(root)  # as given
    printed = fit.stdout + fit.stderr
    assert not [line for line in printed.splitlines() if any(n in line for n in NOISE)], printed
    assert "GPU available" in printed and "`Trainer.fit` stopped: `max_steps=10` reached." in printed  # kept

    more = _fit(work, "--config", ring8, "--trainer.max_steps=12", "--trainer.default_root_dir", str(root), *TINY,
                "--ckpt_path", "last")
    assert more.returncode == 0, more.stderr[-3000:]
    assert f"--ckpt_path last: resuming from {run / 'checkpoints/last.ckpt'}" in more.stderr
    assert "exists and is not empty" not in more.stderr  # expected on resume: not printed
    assert torch.load(run / "checkpoints/last.ckpt", weights_only=True)["global_step"] == 12
    assert list(work.iterdir()) == [] and [p.name for p in (root / "ring8").iterdir()] == ["version_0"]


@pytest.mark.slow
def test_logger_false_run_writes_everything_under_default_root_dir_and_resumes_from_its_config(tmp_path):
    # the shipped experiments set default_root_dir: runs, relative to the working directory
    fit = _fit(tmp_path, "--config", str(ROOT / "experiments/ring8.yaml"), "--trainer.max_steps=10",
               "--trainer.logger=false", *TINY)
    assert fit.returncode == 0, fit.stderr[-3000:]
    assert [p.name for p in tmp_path.iterdir()] == ["runs"]
    files = _files(tmp_path / "runs")
    assert {"config.yaml", "checkpoints/last.ckpt", "loss_curves.png", "timelapse.gif", "samples/step_000010.png",
            "evaluation/step_000000010.json"} <= files, files

    # `fit --ckpt_path CKPT` alone reads runs/config.yaml: the relative paths resolve as they did the first time
    more = _fit(tmp_path, "--ckpt_path", "runs/checkpoints/last.ckpt", "--trainer.max_steps=12")
    assert more.returncode == 0, more.stderr[-3000:]
    assert torch.load(tmp_path / "runs/checkpoints/last.ckpt", weights_only=True)["global_step"] == 12
    assert [p.name for p in tmp_path.iterdir()] == ["runs"] and not (tmp_path / "runs/runs").exists()


@pytest.mark.slow
def test_collapse_alarm_is_printed_once_with_python_warnings_silenced(tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONWARNINGS", "ignore")
    cfg = yaml.safe_load((ROOT / "experiments/ring8.yaml").read_text())
    cfg["trainer"].update(default_root_dir=str(tmp_path / "runs"), logger=False, enable_progress_bar=False,
                          enable_model_summary=False, max_steps=15)
    # thresholds that every check crosses: the first check after warm-up is "collapsed"
    cfg["trainer"]["callbacks"] = [{"class_path": "gan_lightning.callbacks.ModeCollapseMonitor", "init_args": {
        "every_n_steps": 5, "num_samples": 200, "warmup_steps": 0, "patience": 1, "grad_batch_size": 0,
        "diversity_threshold": 100.0, "coverage_threshold": 1.0}}]
    config = tmp_path / "collapse.yaml"
    config.write_text(yaml.safe_dump(cfg))
    fit = _fit(tmp_path, "--config", str(config), *TINY)
    assert fit.returncode == 0, fit.stderr[-3000:]
    alarms = [line for line in fit.stderr.splitlines() if "ModeCollapseMonitor:" in line]
    assert len(alarms) == 1, fit.stderr  # checks at 5, 10 and 15: one change, one line
    assert alarms[0].startswith("ModeCollapseMonitor: generator step 5: status healthy -> collapsed.")
    assert "Remedies available" in alarms[0]
