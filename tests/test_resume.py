"""Exact resume: a run killed at an arbitrary point and resumed with --ckpt_path last is the same run, and so is
a run stopped by max_steps and continued with a larger max_steps."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from lightning.pytorch.callbacks import Callback

from conftest import ROOT
from gan_lightning.callbacks import GANCheckpoint
from gan_lightning.runtime.checkpointing import training_stops_after_this_step


def _config(tmp_path: Path, kill_at=None, every=4, keep_all=False, draws=False, **model_overrides) -> Path:
    cfg = yaml.safe_load((ROOT / "experiments" / "ring8.yaml").read_text())
    cfg["trainer"]["max_steps"] = 25
    cfg["trainer"]["log_every_n_steps"] = 5
    cfg["trainer"]["logger"]["init_args"]["save_dir"] = str(tmp_path / "runs")
    checkpoint = {"every_n_train_steps": every, "save_last": True, "save_top_k": -1 if keep_all else 1}
    cfg["trainer"]["callbacks"] = [{"class_path": "gan_lightning.callbacks.GANCheckpoint", "init_args": checkpoint}]
    if kill_at is not None:
        cfg["trainer"]["callbacks"].append({"class_path": "gl_testing.KillAtStep", "init_args": {"step": kill_at}})
    if draws:
        cfg["trainer"]["callbacks"].append({"class_path": "gl_testing.DrawsRandomNumbers"})
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


def _assert_same_run(a: dict, b: dict, step: int = 25) -> None:
    assert a["global_step"] == b["global_step"] == step
    assert a["state_dict"].keys() == b["state_dict"].keys()
    for key in a["state_dict"]:
        assert torch.equal(a["state_dict"][key], b["state_dict"][key]), key
    for opt_a, opt_b in zip(a["optimizer_states"], b["optimizer_states"]):
        for pid, st in opt_a["state"].items():
            for name, value in st.items():
                assert torch.equal(torch.as_tensor(value), torch.as_tensor(opt_b["state"][pid][name])), (pid, name)
    for rank_a, rank_b in zip(a["rng_states"], b["rng_states"], strict=True):  # the next step draws the same noise
        assert rank_a.keys() == rank_b.keys()
        for name, value in rank_a.items():
            other = rank_b[name]
            same = torch.equal(value, other) if isinstance(value, torch.Tensor) else value == other
            assert same, f"rng_states: {name}"


def _position(ckpt: dict) -> dict:
    """Where a checkpoint says training is: step, epoch, and the training loader's place in its epoch."""
    return {
        "global_step": ckpt["global_step"],
        "epoch": ckpt["epoch"],
        "loader": ckpt["loops"]["fit_loop"]["state_dict"]["combined_loader"],
    }


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


@pytest.mark.slow  # six CLI subprocesses (~55 s of CPU); .ci/run runs it
def test_stop_at_max_steps_then_train_longer_is_bit_identical(tmp_path):
    """README: raise --trainer.max_steps on resume to train longer. Stopped at an epoch boundary, continued to the
    middle of an epoch, continued to the end: every checkpoint is the one a run straight to the end writes at that
    step, loop state and RNG states included, so the continued runs draw the same data, latents and dropout masks."""
    straight_dir, extended_dir = tmp_path / "straight", tmp_path / "extended"
    straight_dir.mkdir()
    extended_dir.mkdir()
    straight = _fit(straight_dir, "--config", str(_config(straight_dir, every=2, keep_all=True, draws=True)))
    assert straight.returncode == 0, straight.stderr[-3000:]
    straight_ckpts = straight_dir / "runs/ring8/version_0/checkpoints"

    config = str(_config(extended_dir, every=4, draws=True))  # no stop below falls on a checkpoint interval
    ckpt_dir = extended_dir / "runs/ring8/version_0/checkpoints"
    resume: tuple[str, ...] = ()
    # 10 generator steps per epoch: 10 ends epoch 0, 14 is in the middle of epoch 1, 25 in the middle of epoch 2
    for stop, epoch, consumed in ((10, 0, 10), (14, 1, 4), (25, 2, 5)):
        run = _fit(extended_dir, "--config", config, f"--trainer.max_steps={stop}", *resume)
        assert run.returncode == 0, run.stderr[-3000:]
        resume = ("--ckpt_path", "last")
        at_stop = torch.load(ckpt_dir / "last.ckpt", weights_only=True)
        passing = next(straight_ckpts.glob(f"*step={stop}.ckpt"), straight_ckpts / "last.ckpt")  # 25: its last
        passing = torch.load(passing, weights_only=True)
        _assert_same_run(passing, at_stop, step=stop)
        expected = {"global_step": stop, "epoch": epoch, "loader": [{"epoch": epoch, "consumed": consumed}]}
        assert _position(at_stop) == _position(passing) == expected
        assert at_stop["loops"] == passing["loops"], f"loop state after stopping at step {stop}"
    assert not (extended_dir / "runs/ring8/version_1").exists(), "the longer runs must continue in their own directory"


class _StopAt(Callback):
    """Request a stop (as early stopping or the collapse monitor do) after generator step ``step``."""

    def __init__(self, step: int):
        self.step = step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step == self.step:
            trainer.should_stop = True


class _RecordStops(Callback):
    def __init__(self):
        self.steps, self.stops = [], []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.steps.append(trainer.global_step)
        self.stops.append(training_stops_after_this_step(trainer))


@pytest.mark.parametrize(
    "limits,last_step",
    [
        (dict(max_steps=7), 7),  # mid-epoch: 20 generator steps per epoch
        (dict(max_steps=20), 20),  # at the end of an epoch
        (dict(max_epochs=2), 40),
        (dict(max_steps=30, stop_at=4), 4),
        (dict(max_steps=30, stop_at=4, min_steps=9, min_epochs=0), 9),  # Lightning trains on until min_steps
        (dict(max_steps=50, stop_at=4, min_steps=9), 20),  # min_steps alone implies min_epochs=1 in Lightning
    ],
    ids=["max_steps-mid-epoch", "max_steps-epoch-end", "max_epochs", "should_stop", "should_stop-min_steps",
         "should_stop-min_epochs"],
)
def test_the_final_state_is_saved_at_the_step_where_lightning_stops(tmp_path, limits, last_step):
    """GANCheckpoint's stop test is true at exactly the step after which Lightning ends fit, and last.ckpt is saved
    there, with the epoch still open (a save at on_train_end would record it as processed)."""
    from conftest import quiet_trainer, tiny_gan, tiny_ring

    stop_at = limits.pop("stop_at", None)
    record = _RecordStops()
    callbacks = ([_StopAt(stop_at)] if stop_at is not None else []) + [record]
    checkpoint = GANCheckpoint(dirpath=tmp_path, every_n_train_steps=1000, save_last=True, save_top_k=0)
    quiet_trainer(callbacks=[*callbacks, checkpoint], enable_checkpointing=True, **limits).fit(tiny_gan(), tiny_ring())
    assert record.steps[-1] == last_step
    assert [step for step, stop in zip(record.steps, record.stops) if stop] == [last_step]
    ckpt = torch.load(tmp_path / "last.ckpt", weights_only=True)
    assert ckpt["global_step"] == last_step
    # saved at the end of the step, before Lightning closes the epoch: the same state as a save passing that step
    epoch = ckpt["loops"]["fit_loop"]["epoch_progress"]["current"]
    assert (epoch["started"], epoch["processed"]) == ((last_step - 1) // 20 + 1, (last_step - 1) // 20)


def test_canary_lightning_loop_internals_used_to_start_the_epoch_after_a_resume_at_epoch_end():
    """resume.start_next_epoch_after_resume_at_epoch_end relies on these; each message names what changed."""
    from conftest import quiet_trainer

    fit_loop = quiet_trainer(max_steps=5).fit_loop
    assert hasattr(fit_loop, "epoch_progress"), "Lightning's FitLoop.epoch_progress was removed"
    state = fit_loop.state_dict()
    assert "epoch_progress" in state, "Lightning's fit loop state has no 'epoch_progress' any more"
    current = state["epoch_progress"].get("current", {})
    for counter in ("ready", "started", "processed", "completed"):
        assert counter in current, f"Lightning's FitLoop.epoch_progress.current has no '{counter}' any more"
    for part in ("total", "current"):  # an epoch started and not processed: a checkpoint written mid-epoch
        state["epoch_progress"][part].update(ready=1, started=1, processed=0, completed=0)
    fit_loop.load_state_dict(state)
    fit_loop.update_restart_stage()
    assert hasattr(fit_loop, "restarted_mid_epoch"), "Lightning's FitLoop.restarted_mid_epoch was removed"
    assert fit_loop.restarted_mid_epoch, "Lightning's FitLoop.restarted_mid_epoch no longer reports a mid-epoch restart"
    reset = getattr(fit_loop, "reset_restart_stage", None)
    assert callable(reset), "Lightning's FitLoop.reset_restart_stage was removed"
    reset()
    assert not fit_loop.restarted_mid_epoch, "Lightning's FitLoop.reset_restart_stage() no longer clears _restart_stage"
    assert (fit_loop.epoch_progress.current.ready, fit_loop.epoch_progress.current.processed) == (1, 0)


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


@pytest.mark.slow  # two CLI fits (~16 s); .ci/run runs it
def test_a_copied_run_directory_resumes_into_its_own_last_ckpt(tmp_path):
    """Lightning forgets ``last_model_path`` when the checkpoint folder moved and would write ``last-v1.ckpt``; the
    next ``--ckpt_path last`` would then resume the stale ``last.ckpt``."""
    first = _fit(tmp_path, "--config", str(_config(tmp_path, None)), "--trainer.max_steps=4")
    assert first.returncode == 0, first.stderr[-3000:]
    import shutil

    shutil.copytree(tmp_path / "runs", tmp_path / "copy")  # e.g. a run directory moved to other storage
    more = _fit(tmp_path, "--config", str(_config(tmp_path, None)), f"--trainer.logger.init_args.save_dir={tmp_path / 'copy'}",
                "--ckpt_path", "last", "--trainer.max_steps=8")
    assert more.returncode == 0, more.stderr[-3000:]
    checkpoints = tmp_path / "copy/ring8/version_0/checkpoints"
    assert f"resuming from {checkpoints / 'last.ckpt'}" in more.stderr
    assert not list(checkpoints.glob("last-v*.ckpt"))
    assert torch.load(checkpoints / "last.ckpt", weights_only=True)["global_step"] == 8
    assert torch.load(tmp_path / "runs/ring8/version_0/checkpoints/last.ckpt", weights_only=True)["global_step"] == 4


def test_the_places_searched_for_last_ckpt_are_listed_once(tmp_path):
    from gan_lightning.runtime.resume import find_last_checkpoint

    run_dir = tmp_path / "sweep" / "loss=hinge" / "seed_0"  # a sweep run: logger version dir = default_root_dir
    logger = {"class_path": "lightning.pytorch.loggers.TensorBoardLogger",
              "init_args": {"save_dir": str(tmp_path / "sweep"), "name": "loss=hinge", "version": "seed_0"}}
    newest, searched = find_last_checkpoint({"trainer": {"default_root_dir": str(run_dir), "logger": logger, "callbacks": []}})
    assert newest is None and searched.count(run_dir / "checkpoints" / "last.ckpt") == 1
    assert len(searched) == len(set(searched))
