"""Slurm: a 2-task CPU DDP job submitted with scripts/slurm/train.sbatch to a real (local, single-node) Slurm
cluster is preempted with SIGUSR1, requeues itself, resumes from its last.ckpt in the same run directory and ends
exactly where an uninterrupted job with the same template ends. A sweep submitted as one job array of 3 tasks
(`sweep --launcher slurm`) gets the same behaviour per task, and its report job sees every run.

Needs root and `apt-get install -y slurm-wlm munge`; skipped without them, except under CI (CI set), where a missing
Slurm is a failure. Takes about 3 minutes on 2 cores per test (most of it is Python start-up and the requeue delay).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from conftest import ROOT

pytestmark = pytest.mark.slow

SLURM_DIR = ROOT / "scripts" / "slurm"
MAX_STEPS = 600
CKPT_EVERY = 100
SWEEP_STEPS = 300  # each of the 3 array tasks (one CPU each on the 2-CPU cluster)


def _require_slurm() -> None:
    executables = ("sbatch", "scontrol", "scancel", "slurmctld", "slurmd", "munged")
    problems = [f"`{exe}` not found" for exe in executables if shutil.which(exe) is None]
    if hasattr(os, "geteuid") and os.geteuid() != 0:
        problems.append("the local Slurm cluster runs slurmd as root")
    if problems:
        reason = "Slurm test needs `apt-get install -y slurm-wlm munge` and root: " + "; ".join(problems)
        if os.environ.get("CI", "").lower() not in ("", "0", "false"):
            pytest.fail(reason)
        pytest.skip(reason)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    _require_slurm()
    cdir = tmp_path_factory.mktemp("slurm_cluster")
    script = str(SLURM_DIR / "local_cluster.sh")
    started = subprocess.run(["bash", script, "start", str(cdir)], capture_output=True, text=True, timeout=120)
    try:
        assert started.returncode == 0, f"local Slurm cluster did not start:\n{started.stdout}\n{started.stderr}"
        yield {"SLURM_CONF": str(cdir / "slurm.conf"), "dir": cdir}
    finally:
        subprocess.run(["bash", script, "stop", str(cdir)], capture_output=True, text=True, timeout=120)


def _slurm_env(cluster: dict) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    env.update(SLURM_CONF=cluster["SLURM_CONF"], PYTHON=sys.executable, ACCELERATOR="cpu")
    return env


def _config(workdir: Path) -> Path:
    cfg = yaml.safe_load((ROOT / "experiments" / "ring8.yaml").read_text())
    cfg["trainer"].update(max_steps=MAX_STEPS, log_every_n_steps=25, enable_progress_bar=False,
                          enable_model_summary=False)
    cfg["trainer"]["logger"]["init_args"]["save_dir"] = str(workdir / "runs")
    cfg["trainer"]["callbacks"] = [
        {"class_path": "gan_lightning.callbacks.GANCheckpoint",
         "init_args": {"every_n_train_steps": CKPT_EVERY, "save_last": True}},
    ]
    cfg["model"]["generator"]["init_args"]["hidden_dims"] = [32, 32]
    cfg["model"]["discriminator"]["init_args"]["hidden_dims"] = [32, 32]
    cfg["data"]["init_args"].update(num_samples=6400, batch_size=32)  # 100 steps per epoch on 2 ranks
    path = workdir / "tiny_ring8.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _submit(cluster: dict, workdir: Path, config: Path) -> str:
    out = subprocess.run(
        ["sbatch", "--parsable", "--job-name=gan-test", "--nodes=1", "--ntasks-per-node=2", "--gres=none",
         "--cpus-per-task=1", "--time=15:00", f"--chdir={workdir}", f"--output={workdir}/slurm-%j.out",
         str(SLURM_DIR / "train.sbatch"), "--config", str(config)],
        env=_slurm_env(cluster), capture_output=True, text=True, timeout=60,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout.strip().split(";")[0]


def _job(cluster: dict, job: str) -> dict:
    out = subprocess.run(["scontrol", "-o", "show", "job", job], env=_slurm_env(cluster),
                         capture_output=True, text=True, timeout=30)
    return dict(re.findall(r"(\w+)=(\S*)", out.stdout))


def _diagnostics(cluster: dict, workdir: Path, job: str) -> str:
    parts = [f"job {job}: {_job(cluster, job)}"]
    for path in [workdir / f"slurm-{job}.out", *sorted((cluster["dir"] / "log").glob("*.log"))]:
        if path.is_file():
            lines = [ln for ln in path.read_text(errors="replace").splitlines() if "Warning" not in ln]
            parts.append(f"--- {path.name} (last 40 lines)\n" + "\n".join(lines[-40:]))
    return "\n".join(parts)


def _wait(cluster: dict, workdir: Path, job: str, until, what: str, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        info = _job(cluster, job)
        if until(info):
            return info
        if info.get("JobState") in ("FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY"):
            break
        time.sleep(0.5)
    pytest.fail(f"timed out or failed waiting for {what}\n" + _diagnostics(cluster, workdir, job))


def _ckpt(path: Path) -> dict:
    return torch.load(path, weights_only=True, map_location="cpu")


def test_preempted_job_requeues_resumes_and_matches_an_uninterrupted_job(cluster, tmp_path):
    preempted_dir, straight_dir = tmp_path / "preempted", tmp_path / "straight"
    preempted_dir.mkdir()
    straight_dir.mkdir()

    # 1. The preempted job: wait for its first periodic checkpoint (training is under way), then SIGUSR1 to its
    #    tasks, which is what `#SBATCH --signal=USR1@90` does 90 s before the time limit.
    job = _submit(cluster, preempted_dir, _config(preempted_dir))
    run_dir = preempted_dir / "runs" / "ring8" / f"version_{job}"
    last = run_dir / "checkpoints" / "last.ckpt"
    deadline = time.monotonic() + 240
    while not last.is_file():
        state = _job(cluster, job).get("JobState")
        if time.monotonic() > deadline or state not in ("PENDING", "CONFIGURING", "RUNNING"):
            pytest.fail("the job wrote no checkpoint\n" + _diagnostics(cluster, preempted_dir, job))
        time.sleep(0.2)
    signal = subprocess.run(["scancel", "--signal=USR1", job], env=_slurm_env(cluster), capture_output=True, text=True)
    assert signal.returncode == 0, signal.stderr

    _wait(cluster, preempted_dir, job, lambda j: j.get("Restarts", "0") != "0", "the requeue", 120)
    info = _wait(cluster, preempted_dir, job, lambda j: j.get("JobState") == "COMPLETED", "the requeued job's end", 360)
    log = (preempted_dir / f"slurm-{job}.out").read_text(errors="replace")
    diag = "\n" + _diagnostics(cluster, preempted_dir, job)

    assert info["Restarts"] == "1", diag
    stopped = re.findall(r"SlurmRequeue: signal \d+ received; saved (\S+) at generator step (\d+)", log)
    assert len(stopped) == 1, diag
    saved_path, stop_step = Path(stopped[0][0]), int(stopped[0][1])
    assert saved_path == last and CKPT_EVERY <= stop_step < MAX_STEPS, diag
    assert f"SlurmRequeue: requeued job {job}" in log, diag
    # the second run of the batch script resumed from that checkpoint, not from scratch
    first, second = log.split("(restart 1)")
    assert "starting a new run" in first and "resuming from" not in first, diag
    assert f"--ckpt_path last: resuming from {last}" in second and "starting a new run" not in second, diag
    assert f"Restored all states from the checkpoint at {last}" in second, diag
    assert "`max_steps=600` reached" in second, diag
    # the same run directory: one version dir (the job id), two TensorBoard event files (one per run)
    assert [p.name for p in (preempted_dir / "runs" / "ring8").iterdir()] == [f"version_{job}"], diag
    assert len(list(run_dir.glob("events.out.tfevents.*"))) == 2, diag
    assert not list(preempted_dir.glob("hpc_ckpt_*.ckpt")), "Lightning's own SIGUSR1 handler ran"

    # 2. The same template, never interrupted.
    ref_job = _submit(cluster, straight_dir, _config(straight_dir))
    _wait(cluster, straight_dir, ref_job, lambda j: j.get("JobState") == "COMPLETED", "the uninterrupted job", 360)
    reference = _ckpt(straight_dir / "runs" / "ring8" / f"version_{ref_job}" / "checkpoints" / "last.ckpt")

    resumed = _ckpt(last)
    assert resumed["global_step"] == reference["global_step"] == MAX_STEPS
    assert resumed["epoch"] == reference["epoch"]
    # stopping at a generator-step boundary makes the resumed run the same run, bit for bit
    assert resumed["state_dict"].keys() == reference["state_dict"].keys()
    for key, value in reference["state_dict"].items():
        assert torch.equal(resumed["state_dict"][key], value), key


def test_sweep_job_array_task_preempted_requeues_alone_and_the_report_is_complete(cluster, tmp_path):
    """`sweep --launcher slurm`: one job array of 3 tasks on the template; one task preempted with SIGUSR1 requeues
    alone, resumes in its own run directory and ends at the same step as the others; the report job sees 3 runs."""
    config = _config(tmp_path)
    cfg = yaml.safe_load(config.read_text())
    cfg["trainer"]["max_steps"] = SWEEP_STEPS
    cfg["trainer"]["callbacks"].append(
        {"class_path": "gan_lightning.callbacks.GANEvaluation", "init_args": {"every_n_steps": 100, "num_samples": 500}})
    config.write_text(yaml.safe_dump(cfg))
    submitted = subprocess.run(
        [sys.executable, "-m", "gan_lightning", "sweep", "--config", str(config), "--seeds", "0-2", "--name", "array",
         "--launcher", "slurm", "--sbatch=--nodes=1 --ntasks-per-node=1 --gres=none --cpus-per-task=1 --time=15:00"],
        cwd=tmp_path, env=_slurm_env(cluster), capture_output=True, text=True, timeout=600,
    )
    assert submitted.returncode == 0, submitted.stdout + submitted.stderr
    sweep_dir = tmp_path / "runs" / "array"
    array, report_job = json.loads((sweep_dir / "sweep_plan.json").read_text())["slurm_jobs"]
    assert f"submitted job array {array} (3 task(s), array 0-2)" in submitted.stdout

    # preempt task 1 once it has written its first periodic checkpoint
    task = f"{array}_1"
    run_dir = sweep_dir / "base" / "seed_1"
    last = run_dir / "checkpoints" / "last.ckpt"
    deadline = time.monotonic() + 600
    while not last.is_file():
        state = _job(cluster, task).get("JobState")
        if time.monotonic() > deadline or state not in ("PENDING", "CONFIGURING", "RUNNING"):
            pytest.fail("the array task wrote no checkpoint\n" + _diagnostics(cluster, sweep_dir / "slurm", task))
        time.sleep(0.2)
    signal = subprocess.run(["scancel", "--signal=USR1", task], env=_slurm_env(cluster), capture_output=True, text=True)
    assert signal.returncode == 0, signal.stderr

    _wait(cluster, sweep_dir, task, lambda j: j.get("Restarts", "0") != "0", "the requeue of the array task", 120)
    _wait(cluster, sweep_dir, report_job, lambda j: j.get("JobState") == "COMPLETED", "the report job", 1500)
    diag = "\n" + "\n".join((sweep_dir / "slurm" / f).read_text(errors="replace")[-3000:]
                            for f in sorted(os.listdir(sweep_dir / "slurm")))
    for index in range(3):
        info = _job(cluster, f"{array}_{index}")
        assert info["JobState"] == "COMPLETED" and info["Restarts"] == ("1" if index == 1 else "0"), (index, info, diag)
        record = json.loads((sweep_dir / "base" / f"seed_{index}" / "run_record.json").read_text())
        assert record["global_step"] == SWEEP_STEPS and record["attempts"] == (2 if index == 1 else 1), diag
        assert _ckpt(sweep_dir / "base" / f"seed_{index}" / "checkpoints" / "last.ckpt")["global_step"] == SWEEP_STEPS

    log = (run_dir / "stderr.log").read_text(errors="replace")
    stopped = re.findall(r"SlurmRequeue: signal \d+ received; saved (\S+) at generator step (\d+)", log)
    assert len(stopped) == 1 and Path(stopped[0][0]) == last and CKPT_EVERY <= int(stopped[0][1]) < SWEEP_STEPS, diag
    assert f"SlurmRequeue: requeued job {task}" in log, diag
    first, second = log.split("sweep: resuming from checkpoints/last.ckpt")
    assert "sweep: new run" in first and f"--ckpt_path last: resuming from {last}" in second, diag
    assert sorted(p.name for p in (sweep_dir / "base").iterdir()) == ["planned_config.yaml", "seed_0", "seed_1", "seed_2"], diag

    report = json.loads((sweep_dir / "report.json").read_text())
    (combo,) = report["combinations"]
    assert (combo["runs"], combo["finished"], combo["failed"], combo["steps"]) == (3, 3, 0, [SWEEP_STEPS]), diag
    assert sorted(combo["metrics"]["modes_captured"]["per_seed"]) == ["0", "1", "2"]
    assert "| base | 3/3 |" in (sweep_dir / "report.md").read_text()
