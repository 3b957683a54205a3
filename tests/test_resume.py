"""Exact resume: a run killed at an arbitrary point and resumed with --ckpt_path last is the same run."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from conftest import ROOT


def _config(tmp_path: Path, kill_at=None, every=4, **model_overrides) -> Path:
    cfg = yaml.safe_load((ROOT / "experiments" / "ring8.yaml").read_text())
    cfg["trainer"]["max_steps"] = 25
    cfg["trainer"]["log_every_n_steps"] = 5
    cfg["trainer"]["logger"]["init_args"]["save_dir"] = str(tmp_path / "runs")
    cfg["trainer"]["callbacks"] = [
        {"class_path": "gan_lightning.callbacks.GANCheckpoint", "init_args": {"every_n_train_steps": every, "save_last": True}},
    ]
    if kill_at is not None:
        cfg["trainer"]["callbacks"].append({"class_path": "gl_testing.KillAtStep", "init_args": {"step": kill_at}})
    cfg["trainer"]["enable_progress_bar"] = False
    cfg["model"]["generator"]["init_args"]["hidden_dims"] = [32, 32]
    cfg["model"]["discriminator"]["init_args"]["hidden_dims"] = [32, 32]
    cfg["model"]["discriminator"]["init_args"]["dropout"] = 0.2  # draws from the global RNG every step
    cfg["model"]["n_critic"] = 2
    cfg["model"].update(model_overrides)
    cfg["data"]["init_args"].update(num_samples=640, batch_size=32)  # 20 batches = 10 generator steps per epoch
    path = tmp_path / f"config_{kill_at}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _fit(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT / "tests") + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-m", "gan_lightning", "fit", *args], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)


def _assert_same_run(a: dict, b: dict) -> None:
    assert a["global_step"] == b["global_step"] == 25
    assert a["state_dict"].keys() == b["state_dict"].keys()
    for key in a["state_dict"]:
        assert torch.equal(a["state_dict"][key], b["state_dict"][key]), key
    for opt_a, opt_b in zip(a["optimizer_states"], b["optimizer_states"]):
        for pid, st in opt_a["state"].items():
            for name, value in st.items():
                assert torch.equal(torch.as_tensor(value), torch.as_tensor(opt_b["state"][pid][name])), (pid, name)


@pytest.mark.parametrize(
    "every,kill_at,resumed_from",
    [(4, 14, 12), (5, 11, 10)],
    ids=["mid-epoch", "epoch-boundary"],  # 10 generator steps per epoch
)
def test_sigkill_then_resume_last_is_bit_identical(tmp_path, every, kill_at, resumed_from):
    straight_dir, crash_dir = tmp_path / "straight", tmp_path / "crash"
    straight_dir.mkdir()
    crash_dir.mkdir()
    straight = _fit(straight_dir, "--config", str(_config(straight_dir, None, every)))
    assert straight.returncode == 0, straight.stderr[-3000:]
    reference = torch.load(straight_dir / "runs/ring8/version_0/checkpoints/last.ckpt", weights_only=True)

    crashed = _fit(crash_dir, "--config", str(_config(crash_dir, kill_at, every)))
    assert crashed.returncode == -9, crashed.stderr[-3000:]  # SIGKILL: no cleanup, no final save
    ckpt_dir = crash_dir / "runs/ring8/version_0/checkpoints"
    assert torch.load(ckpt_dir / "last.ckpt", weights_only=True)["global_step"] == resumed_from

    resumed = _fit(crash_dir, "--config", str(_config(crash_dir, None, every)), "--ckpt_path", "last")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming from" in resumed.stderr
    assert not (crash_dir / "runs/ring8/version_1").exists(), "the resumed run must log into its own directory"
    _assert_same_run(reference, torch.load(ckpt_dir / "last.ckpt", weights_only=True))


def test_a_kill_during_a_save_leaves_the_previous_checkpoint_intact(tmp_path):
    from lightning.pytorch import Trainer

    from conftest import quiet_trainer, tiny_gan, tiny_ring
    from gan_lightning import GANCheckpoint

    class CrashingSave(Exception):
        pass

    ckpt = GANCheckpoint(dirpath=tmp_path, every_n_train_steps=2, save_last=True, save_top_k=0)
    real_save = Trainer.save_checkpoint
    calls = []

    def save_then_die(self, filepath, weights_only=False, storage_options=None):
        calls.append(filepath)
        if len(calls) == 2:  # the second save dies half-way through writing
            with open(filepath, "wb") as f:
                f.write(b"half a checkpoint")
            raise CrashingSave
        return real_save(self, filepath, weights_only, storage_options)

    Trainer.save_checkpoint = save_then_die
    try:
        with pytest.raises(CrashingSave):
            quiet_trainer(max_steps=6, callbacks=[ckpt], enable_checkpointing=True).fit(tiny_gan(), tiny_ring())
    finally:
        Trainer.save_checkpoint = real_save
    assert calls[1].endswith(".tmp")
    assert torch.load(tmp_path / "last.ckpt", weights_only=True)["global_step"] == 2


def test_resume_refuses_changed_model_options(tmp_path):
    first = _fit(tmp_path, "--config", str(_config(tmp_path, None)), "--trainer.max_steps=4")
    assert first.returncode == 0, first.stderr[-3000:]
    changed = _fit(tmp_path, "--config", str(_config(tmp_path, None)), "--ckpt_path", "last", "--model.n_critic=3")
    assert changed.returncode == 2
    assert "model.n_critic: 2 in the checkpoint, 3 now" in changed.stderr and "Traceback" not in changed.stderr
    data = _fit(tmp_path, "--config", str(_config(tmp_path, None)), "--ckpt_path", "last", "--data.init_args.batch_size=64")
    assert data.returncode == 2 and "batch_size: 32 in the checkpoint, 64 now" in data.stderr


def test_resume_from_a_checkpoint_path_alone_uses_the_runs_config(tmp_path):
    first = _fit(tmp_path, "--config", str(_config(tmp_path, None)), "--trainer.max_steps=4")
    assert first.returncode == 0, first.stderr[-3000:]
    ckpt = tmp_path / "runs/ring8/version_0/checkpoints/last.ckpt"
    more = _fit(tmp_path, "--ckpt_path", str(ckpt), "--trainer.max_steps=8")
    assert more.returncode == 0, more.stderr[-3000:]
    assert torch.load(ckpt, weights_only=True)["global_step"] == 8


def test_resume_last_without_any_checkpoint_says_it_starts_fresh(tmp_path):
    run = _fit(tmp_path, "--config", str(_config(tmp_path, None)), "--ckpt_path", "last", "--trainer.max_steps=2")
    assert run.returncode == 0, run.stderr[-3000:]
    assert "no last.ckpt" in run.stderr and "starting a new run" in run.stderr


def test_missing_checkpoint_path_is_a_clear_error(tmp_path):
    run = _fit(tmp_path, "--config", str(_config(tmp_path, None)), "--ckpt_path", str(tmp_path / "nope.ckpt"))
    assert run.returncode == 2 and "does not exist" in run.stderr and "Traceback" not in run.stderr
