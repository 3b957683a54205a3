"""Evaluation under DDP (2 CPU processes, gloo): same score on every rank, equal to the single-process score."""

import json
import subprocess
import sys

import pytest

from conftest import ROOT

SCRIPT = ROOT / "tests" / "scripts" / "eval_ddp.py"


def _run(out, mode):
    proc = subprocess.run([sys.executable, str(SCRIPT), str(out), mode], cwd=out, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def test_ddp_scores_equal_single_process(tmp_path):
    ddp = _run(tmp_path, "ddp")
    # progress is printed by rank 0 alone, counting its own share of the samples
    assert ddp.stderr.count("GANEvaluation at generator step 2: done in") == 1
    assert "GANEvaluation at generator step 2: generating samples (rank 0's share of 2) 26/26 in" in ddp.stderr
    rank0 = json.loads((tmp_path / "scores_rank0.json").read_text())
    rank1 = json.loads((tmp_path / "scores_rank1.json").read_text())
    assert rank0 == rank1 and set(rank0) == {"fid", "is", "is_std", "kid", "kid_std", "precision", "recall"}
    _run(tmp_path, "single")
    single = json.loads((tmp_path / "scores_single.json").read_text())
    for key, value in single.items():
        assert rank0[key] == pytest.approx(value, rel=1e-5, abs=1e-7), key
    record = json.loads(next((tmp_path / "records").glob("*.json")).read_text())
    assert record["protocol"]["world_size"] == 2 and record["protocol"]["num_fake"] == 51
