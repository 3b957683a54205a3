"""DDP with 2 CPU processes (gloo), launched as a script because the ddp launcher re-runs sys.argv."""

import json
import os
import subprocess
import sys

import pytest
import torch

from conftest import ROOT


def _run(tmp_path, strategy, loss="nonsaturating", n_critic=2):
    out = tmp_path / f"{strategy}-{loss}"
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts/ddp_comm_count.py"), "--strategy", strategy, "--loss", loss,
         "--n_critic", str(n_critic), "--out", str(out)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranks = [torch.load(out / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    results = [json.loads((out / f"rank{r}.json").read_text()) for r in (0, 1)]
    return ranks, results


def _assert_ranks_identical(ranks):
    for key in ranks[0]:
        assert torch.equal(ranks[0][key], ranks[1][key]), key


def test_gan_ddp_synchronises_only_the_updated_network_and_keeps_ranks_identical(tmp_path):
    ranks, results = _run(tmp_path, "gan_ddp")
    _assert_ranks_identical(ranks)
    r = results[0]
    assert r["generator_steps"] == 6
    # n_critic discriminator backwards sync D only, the generator backward syncs G only
    assert r["elements_per_generator_step"] == 2 * r["discriminator_parameters"] + r["generator_parameters"]


@pytest.mark.slow
def test_lightning_ddp_syncs_both_networks_on_every_backward(tmp_path):
    ranks, results = _run(tmp_path, "ddp_find_unused_parameters_true")
    _assert_ranks_identical(ranks)
    r = results[0]
    assert r["elements_per_generator_step"] == 3 * (r["discriminator_parameters"] + r["generator_parameters"])


@pytest.mark.slow
def test_gan_ddp_with_gradient_penalty_double_backward(tmp_path):
    ranks, results = _run(tmp_path, "gan_ddp", loss="wgan-gp", n_critic=3)
    _assert_ranks_identical(ranks)
    assert results[0]["generator_steps"] == 6


def test_two_processes_equal_one_process_with_the_global_batch(tmp_path):
    """Same samples per update (latents shared by construction): only float summation order differs."""
    for devices in (1, 2):
        proc = subprocess.run(
            [sys.executable, str(ROOT / "tests/scripts/ddp_vs_single.py"), "--devices", str(devices), "--out", str(tmp_path)],
            cwd=tmp_path, capture_output=True, text=True, timeout=300,
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
    single = torch.load(tmp_path / "devices1.pt", weights_only=True)
    ddp = torch.load(tmp_path / "devices2.pt", weights_only=True)
    worst = max((single[k] - ddp[k]).abs().max().item() for k in single)
    moved = max((single[k]).abs().max().item() for k in single)
    assert worst < 1e-5 * max(1.0, moved), f"DDP and single-process weights differ by {worst}"
