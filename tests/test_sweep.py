"""``python -m gan_lightning sweep`` / ``sweep-report``: the layout of a local sweep, a report that says what the runs
logged, resume after SIGKILL with bit-identical final weights, and one clear line for bad input before anything runs.

Every sweep here is the ring8 experiment shrunk (16-unit MLPs, 30 generator steps, a checkpoint and an evaluation
every 10 steps) over ``model.loss`` = nonsaturating, hinge and seeds 0-1.
"""

from __future__ import annotations

import json
import math
import os
import signal
import statistics
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from conftest import ROOT
from gan_lightning.commands import sweep as sweep_cmd
from gan_lightning.commands.sweep_report import read_records, sweep_report
from gan_lightning.errors import ConfigurationError

MAX_STEPS = 30
GRID = "model.loss=nonsaturating,hinge"
RUNS = [f"loss={loss}/seed_{seed}" for loss in ("nonsaturating", "hinge") for seed in (0, 1)]
#: the test callback that kills the whole sweep (process group) once, at step 22 of this run, after this file exists
KILLED_RUN, KILL_STEP, FINISHED_FIRST = "loss=nonsaturating/seed_1", 22, "loss=nonsaturating/seed_0/run_record.json"


def _config(path: Path) -> Path:
    cfg = yaml.safe_load((ROOT / "experiments" / "ring8.yaml").read_text())
    cfg["trainer"].update(max_steps=MAX_STEPS, log_every_n_steps=5, enable_progress_bar=False, enable_model_summary=False)
    cfg["trainer"]["callbacks"] = [
        {"class_path": "gan_lightning.callbacks.GANCheckpoint", "init_args": {"every_n_train_steps": 10, "save_last": True}},
        {"class_path": "gan_lightning.callbacks.GANEvaluation", "init_args": {"every_n_steps": 10, "num_samples": 500}},
        {"class_path": "gl_testing.KillSweepOnce",
         "init_args": {"step": KILL_STEP, "run": KILLED_RUN, "wait_for": FINISHED_FIRST}},
    ]
    cfg["model"]["generator"]["init_args"]["hidden_dims"] = [16, 16]
    cfg["model"]["discriminator"]["init_args"].update(hidden_dims=[16, 16], dropout=0.2)  # draws from the global RNG
    for opt in ("generator_optimizer", "discriminator_optimizer"):
        cfg["model"][opt]["init_args"].update(lr=0.003, betas=[0.5, 0.999])
    cfg["data"]["init_args"].update(num_samples=640, batch_size=32)
    path.write_text(yaml.safe_dump(cfg))
    return path


def _sweep(cwd: Path, *extra: str, timeout: int = 900) -> subprocess.CompletedProcess:
    """The sweep command as a user types it, in its own process group (so a test can kill the group)."""
    env = dict(os.environ, PYTHONPATH=str(ROOT / "tests") + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run(
        [sys.executable, "-m", "gan_lightning", "sweep", "--config", "tiny_ring8.yaml", "--seeds", "0-1",
         "--grid", GRID, "--jobs", "2", "--root", "runs", *extra],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, start_new_session=True,
    )


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """An uninterrupted 2 x 2-seed sweep (its kill callback disabled by a pre-existing marker)."""
    cwd = tmp_path_factory.mktemp("reference")
    _config(cwd / "tiny_ring8.yaml")
    (cwd / "runs" / "tiny_ring8").mkdir(parents=True)
    (cwd / "runs" / "tiny_ring8" / "killed_once").write_text("")
    result = _sweep(cwd)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return cwd / "runs" / "tiny_ring8"


def _final_weights(run_dir: Path) -> dict:
    return torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True, map_location="cpu")


def _last_scalar(run_dir: Path, tag: str) -> float:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    acc.Reload()
    events = sorted(acc.Scalars(tag), key=lambda e: (e.step, e.wall_time))
    return events[-1].value


def test_local_sweep_layout_and_report_match_the_runs(reference):
    sweep_dir = reference
    assert sorted(p.name for p in sweep_dir.iterdir() if p.is_dir()) == ["hparams", "loss=hinge", "loss=nonsaturating"]
    for run in RUNS:
        run_dir = sweep_dir / run
        assert sorted(p.name for p in (run_dir.parent).iterdir()) == ["planned_config.yaml", "seed_0", "seed_1"]
        config = yaml.safe_load((run_dir / "config.yaml").read_text())  # the resolved config, saved by fit
        assert config["seed_everything"] == int(run[-1])
        assert config["model"]["loss"] == run.split("/")[0].removeprefix("loss=")
        assert config["trainer"]["logger"]["init_args"]["version"] == run.split("/")[1]
        record = json.loads((run_dir / "run_record.json").read_text())
        assert record["global_step"] == MAX_STEPS and record["attempts"] == 1
        assert _final_weights(run_dir)["global_step"] == MAX_STEPS
        assert sorted(read_records(run_dir)) == [10, 20, 30]
        assert list(run_dir.glob("events.out.tfevents.*")) and not (run_dir / "error.txt").exists()
    # the seed reached the runs: two seeds of one combination end with different weights
    a, b = (_final_weights(sweep_dir / f"loss=hinge/seed_{s}")["state_dict"] for s in (0, 1))
    assert any(not torch.equal(a[k], b[k]) for k in a)

    report = json.loads((sweep_dir / "report.json").read_text())
    assert report["metrics"][:3] == ["modes_captured", "high_quality_percent", "reverse_kl"]
    for combo in report["combinations"]:
        assert (combo["runs"], combo["finished"], combo["failed"]) == (2, 2, 0)
        for metric in ("modes_captured", "high_quality_percent"):
            # the run's own final evaluation record, read back independently
            values = [json.loads((sweep_dir / combo["name"] / f"seed_{s}" / "evaluation" / f"step_{MAX_STEPS:09d}.json")
                                 .read_text())["scores"][metric] for s in (0, 1)]
            summary = combo["metrics"][metric]
            assert summary["per_seed"] == {"0": values[0], "1": values[1]}
            assert summary["mean"] == pytest.approx(statistics.fmean(values), abs=1e-12)
            assert summary["se"] == pytest.approx(statistics.stdev(values) / math.sqrt(2), abs=1e-12)
    md = (sweep_dir / "report.md").read_text()
    assert "| loss=hinge | 2/2 |" in md and "| loss=nonsaturating | 1 | finished |" in md
    csv_rows = (sweep_dir / "report.csv").read_text().splitlines()
    assert csv_rows[0].startswith("combination,model.loss,metric,") and len(csv_rows) == 1 + 2 * len(report["metrics"])
    assert (sweep_dir / "hparams" / "loss=hinge" / "seed_1").is_dir()

    # TensorBoard scalars: the report's final value is the last one in the run's event files
    sweep_report(str(sweep_dir), scalars=["d_loss"], plot=False, hparams=False)
    report = json.loads((sweep_dir / "report.json").read_text())
    for run in report["runs"]:
        assert run["metrics"]["d_loss"] == _last_scalar(sweep_dir / run["dir"], "d_loss")


@pytest.mark.slow
def test_sigkilled_sweep_resumes_to_the_same_weights(reference, tmp_path):
    _config(tmp_path / "tiny_ring8.yaml")
    sweep_dir = tmp_path / "runs" / "tiny_ring8"

    killed = _sweep(tmp_path)  # the callback SIGKILLs the whole process group at step 22 of KILLED_RUN
    assert killed.returncode == -signal.SIGKILL, killed.stdout[-3000:] + killed.stderr[-3000:]
    finished, interrupted = sweep_dir / FINISHED_FIRST.rsplit("/", 1)[0], sweep_dir / KILLED_RUN
    assert (finished / "run_record.json").is_file() and not (interrupted / "run_record.json").exists()
    assert _final_weights(interrupted)["global_step"] == 20  # its last checkpoint before the kill
    assert not list(sweep_dir.glob("loss=hinge/*/run_record.json"))
    untouched = {p: (p.stat().st_mtime_ns, p.stat().st_size) for p in finished.rglob("*")}

    again = _sweep(tmp_path)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert "4 runs; 1 already finished" in again.stdout
    assert f"start  {KILLED_RUN} (resuming from last.ckpt)" in again.stdout
    assert f"start  {FINISHED_FIRST.split('/run_record')[0]}" not in again.stdout
    # the finished run was not run again: not one of its files changed or appeared
    assert {p: (p.stat().st_mtime_ns, p.stat().st_size) for p in finished.rglob("*")} == untouched
    log = (interrupted / "stderr.log").read_text()
    assert "sweep: new run" in log and "sweep: resuming from checkpoints/last.ckpt" in log
    assert "--ckpt_path last: resuming from" in log
    assert json.loads((interrupted / "run_record.json").read_text())["attempts"] == 2

    for run in RUNS:  # every run ends exactly where the uninterrupted sweep's run ends
        mine, theirs = _final_weights(sweep_dir / run), _final_weights(reference / run)
        assert mine["global_step"] == theirs["global_step"] == MAX_STEPS
        assert mine["state_dict"].keys() == theirs["state_dict"].keys()
        for key, value in theirs["state_dict"].items():
            assert torch.equal(mine["state_dict"][key], value), (run, key)
    report = json.loads((sweep_dir / "report.json").read_text())
    assert [c["finished"] for c in report["combinations"]] == [2, 2]


@pytest.mark.slow
def test_a_failed_run_is_listed_with_its_error_and_not_averaged(tmp_path):
    _config(tmp_path / "tiny_ring8.yaml")
    env = dict(os.environ, PYTHONPATH=str(ROOT / "tests") + os.pathsep + os.environ.get("PYTHONPATH", ""))
    # n_critic=100 parses, but a generator step would need 3,200 of the 640 samples: fit stops with a clear error
    result = subprocess.run(
        [sys.executable, "-m", "gan_lightning", "sweep", "--config", "tiny_ring8.yaml", "--seeds", "0",
         "--grid", "model.n_critic=1,100", "--jobs", "2"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900,
    )
    assert result.returncode == 2 and "1 of 2 runs failed (n_critic=100/seed_0)" in result.stderr, result.stderr[-3000:]
    error = (tmp_path / "runs/tiny_ring8/n_critic=100/seed_0/error.txt").read_text().strip()
    assert error.startswith("error: The dataset has 640 samples") and error.endswith("(exit code 2)")
    report = json.loads((tmp_path / "runs/tiny_ring8/report.json").read_text())
    failed = next(c for c in report["combinations"] if c["name"] == "n_critic=100")
    assert (failed["finished"], failed["failed"]) == (0, 1) and failed["metrics"]["modes_captured"]["n"] == 0
    assert f"- `n_critic=100/seed_0`: {error}" in (tmp_path / "runs/tiny_ring8/report.md").read_text()


# ------------------------------------------------------------------------------------------------------ bad input
@pytest.mark.parametrize(
    "seeds,expected",
    [("0-4", [0, 1, 2, 3, 4]), ("0,2,5", [0, 2, 5]), ("3", [3]), ("5-7,1", [1, 5, 6, 7]), ("2,2", [2])],
)
def test_seed_syntax(seeds, expected):
    assert sweep_cmd.parse_seeds(seeds) == expected


@pytest.mark.parametrize(
    "seeds,message",
    [("4-0", "the range '4-0' is empty"), ("", "--seeds is empty"), ("0-", "is not a seed or a range"),
     ("a", "is not a seed or a range"), ("-1", "is not a seed or a range")],
)
def test_bad_seeds_are_one_clear_line(seeds, message):
    with pytest.raises(ConfigurationError, match=message):
        sweep_cmd.parse_seeds(seeds)


def test_grid_combinations_are_named_readably_and_safely():
    grid = sweep_cmd.parse_grid([
        "model.loss=nonsaturating,gan_lightning.losses.HingeLoss",
        "model.generator.init_args.hidden_dims=[32,32],[64]",
        "model.generator_optimizer.init_args.lr=0.001",
        "model.discriminator_optimizer.init_args.lr=0.001",
    ])
    names = [name for name, _ in sweep_cmd.combinations(grid)]
    assert names[0] == "loss=nonsaturating,hidden_dims=32_32,generator_optimizer.lr=0.001,discriminator_optimizer.lr=0.001"
    assert names[3] == "loss=HingeLoss,hidden_dims=64,generator_optimizer.lr=0.001,discriminator_optimizer.lr=0.001"
    assert len(set(names)) == 4 and not any("/" in n or " " in n for n in names)
    assert sweep_cmd.combinations([]) == [("base", {})]
    for bad, message in [("model.loss", "write KEY=VALUE1,VALUE2"), ("model.loss=a,,b", "a value is empty"),
                         ("model.loss=a,a", "listed twice"), ("--model.loss=", "a value is empty")]:
        with pytest.raises(ConfigurationError, match=message):
            sweep_cmd.parse_grid([bad])


def test_bad_input_fails_before_anything_is_launched(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PYTHONPATH", str(ROOT / "tests") + os.pathsep + os.environ.get("PYTHONPATH", ""))
    config = str(_config(tmp_path / "tiny_ring8.yaml"))
    (tmp_path / "broken.yaml").write_text("model:\n  loss: [hinge\n")
    cases = [
        (dict(grid=["model.no_such_option=1,2"]), "--grid model.no_such_option: fit has no option model.no_such_option"),
        (dict(grid=["model.loss=hinge,no_such_loss"]), "--grid combination loss=no_such_loss: Unknown adversarial loss"),
        (dict(grid=["model.n_critic=1,two"]), 'combination n_critic=two: Parser key "model.n_critic"'),
        (dict(seeds="3-1"), "--seeds '3-1': the range '3-1' is empty"),
        (dict(config=str(tmp_path / "broken.yaml")), "broken.yaml does not parse as a fit config"),
        (dict(config=str(tmp_path / "missing.yaml")), "missing.yaml: no such file"),
        (dict(fit_options=["--seed_everything=3"]), "--seed_everything after '--': the sweep sets it"),
    ]
    for kwargs, message in cases:
        kwargs = {"config": config, "seeds": "0-1", **kwargs}
        with pytest.raises(ConfigurationError) as err:
            sweep_cmd.sweep(**kwargs)
        assert message in str(err.value) and "\n" not in str(err.value)
    assert not (tmp_path / "runs").exists()


def test_bad_input_on_the_command_line_is_one_error_line(tmp_path):
    _config(tmp_path / "tiny_ring8.yaml")
    env = dict(os.environ, PYTHONPATH=str(ROOT / "tests") + os.pathsep + os.environ.get("PYTHONPATH", ""))
    result = subprocess.run(
        [sys.executable, "-m", "gan_lightning", "sweep", "--config", "tiny_ring8.yaml", "--seeds", "0-1",
         "--grid", "model.lossy=hinge"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert errors == [next(line for line in result.stderr.splitlines() if "model.lossy" in line)]
    assert "fit has no option model.lossy" in errors[0] and "Traceback" not in result.stderr
    assert not (tmp_path / "runs").exists()


def test_a_planned_combination_keeps_its_configuration(reference, monkeypatch):
    """Running the sweep again with other options for the same runs is refused (it would not be the same runs)."""
    monkeypatch.chdir(reference.parent.parent)
    monkeypatch.setenv("PYTHONPATH", str(ROOT / "tests") + os.pathsep + os.environ.get("PYTHONPATH", ""))
    with pytest.raises(ConfigurationError, match="was planned with another configuration") as err:
        sweep_cmd.sweep(config="tiny_ring8.yaml", seeds="0-1", grid=[GRID], jobs=2, fit_options=["--model.n_critic=3"])
    assert "(model.n_critic: 1 when planned, 3 now)" in str(err.value)


def test_runs_train_what_was_planned_even_if_the_experiment_file_is_edited(tmp_path, monkeypatch):
    """Runs that start after the experiment file was edited still train the planned configuration."""
    monkeypatch.chdir(tmp_path)
    config = _config(tmp_path / "tiny_ring8.yaml")
    started: list[dict] = []
    monkeypatch.setattr(sweep_cmd, "run_local", lambda sweep_dir, runs, jobs: started.extend(runs) or {})
    sweep_dir = sweep_cmd.sweep(config="tiny_ring8.yaml", seeds="0-1", grid=["model.n_critic=1,2"], report=False)
    assert [r["dir"] for r in started] == ["n_critic=1/seed_0", "n_critic=1/seed_1", "n_critic=2/seed_0", "n_critic=2/seed_1"]

    edited = yaml.safe_load(config.read_text())
    edited["model"]["loss"] = "hinge"
    edited["trainer"]["max_steps"] = 7
    config.write_text(yaml.safe_dump(edited))  # e.g. the next experiment being prepared while the sweep runs
    for run in started:
        assert run["fit_args"][:2] == ["--config", str(sweep_dir.resolve() / run["combination"] / "planned_config.yaml")]
        fit = sweep_cmd.resolve_fit_config(run["fit_args"])  # what `fit` parses when the run starts now
        assert fit["model"]["loss"] == "nonsaturating" and fit["trainer"]["max_steps"] == MAX_STEPS
        assert fit["model"]["n_critic"] == int(run["combination"][-1]) and fit["seed_everything"] == run["seed"]
    plan = json.loads((sweep_dir / "sweep_plan.json").read_text())
    assert [c["config_file"] for c in plan["combinations"]] == ["n_critic=1/planned_config.yaml", "n_critic=2/planned_config.yaml"]
    assert all("_snapshot" not in c for c in plan["combinations"])
    # resuming with the edited file is refused as before (the combination would not be the same runs)
    with pytest.raises(ConfigurationError, match="was planned with another configuration"):
        sweep_cmd.sweep(config="tiny_ring8.yaml", seeds="0-1", grid=["model.n_critic=1,2"], report=False)
    # with the plan moved away the sweep is planned anew, and its runs read the edited configuration
    (sweep_dir / "sweep_plan.json").rename(tmp_path / "old_plan.json")
    sweep_cmd.sweep(config="tiny_ring8.yaml", seeds="0", grid=["model.n_critic=1"], report=False)
    assert sweep_cmd.resolve_fit_config(started[-1]["fit_args"])["model"]["loss"] == "hinge"


def test_report_of_a_directory_without_plan_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigurationError, match="has no sweep_plan.json"):
        sweep_report(str(tmp_path))


def test_error_line_of_a_failed_attempt(tmp_path):
    log = tmp_path / "stderr.log"
    log.write_text(
        f"{sweep_cmd.ATTEMPT_HEADER} new run, t0, local\nerror: an old error\n"
        f"{sweep_cmd.ATTEMPT_HEADER} resuming, t1, local\nSeed set to 0\nTraceback (most recent call last):\n"
        '  File "x.py", line 1, in <module>\nRuntimeError: CUDA out of memory\n  (more detail)\n'
    )
    assert sweep_cmd.error_line(log, 1) == "RuntimeError: CUDA out of memory (exit code 1)"
    log.write_text(f"{sweep_cmd.ATTEMPT_HEADER} new run\nwarning: x\nerror: Unknown mixture 'ring9'\n")
    assert sweep_cmd.error_line(log, 2) == "error: Unknown mixture 'ring9' (exit code 2)"
    assert sweep_cmd.error_line(log, -9) == "killed by SIGKILL (exit code -9)"


def test_local_jobs_share_the_gpus_and_slurm_arrays_list_the_runs_to_do():
    gpus = ["0", "1", "2", "3"]
    assert [sweep_cmd._slot_devices(s, 2, gpus) for s in range(2)] == ["0,1", "2,3"]  # two runs, two GPUs each
    assert [sweep_cmd._slot_devices(s, 4, gpus) for s in range(4)] == gpus  # one run per GPU
    assert [sweep_cmd._slot_devices(s, 6, gpus) for s in range(6)] == ["0", "1", "2", "3", "0", "1"]
    assert sweep_cmd._array_spec([7, 0, 1, 2, 5, 8]) == "0-2,5,7-8"


def test_a_grid_key_may_depend_on_the_class_an_earlier_key_chooses(tmp_path):
    grid = sweep_cmd.parse_grid(["model.loss=gan_lightning.losses.WassersteinGPLoss", "model.loss.init_args.gp_weight=1,10"])
    plan = sweep_cmd.plan_sweep(str(_config(tmp_path / "tiny_ring8.yaml")), [3], grid, [], tmp_path / "runs" / "wgan")
    assert [c["name"] for c in plan["combinations"]] == ["loss=WassersteinGPLoss,gp_weight=1", "loss=WassersteinGPLoss,gp_weight=10"]
    assert plan["combinations"][1]["identity"]["model.loss.init_args.gp_weight"] == 10
    run = plan["runs"][1]
    assert run["dir"] == "loss=WassersteinGPLoss,gp_weight=10/seed_3" and "--seed_everything=3" in run["fit_args"]
    assert not (tmp_path / "runs").exists()  # planning writes nothing
