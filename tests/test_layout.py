"""The layout by concept keeps old import paths, YAML files and checkpoints working.

``tests/fixtures/pre_redesign_run`` was written by gan_lightning 0.1.0 before the modules moved; its checkpoint
names ``gan_lightning.multi_generator.MultiGenerator``, ``gan_lightning.discriminator_inputs.InstanceNoise`` and
so on.
"""

from __future__ import annotations

import importlib
import shutil

import pytest
import torch

from gan_lightning._aliases import MOVED_MODULES

from conftest import ROOT, run_cli

FIXTURE = ROOT / "tests" / "fixtures" / "pre_redesign_run"  # the run's config.yaml
FIXTURE_CKPT = ROOT / "tests" / "fixtures" / "pre_redesign_checkpoint.pth"  # its checkpoints/last.ckpt


@pytest.mark.parametrize("old, new", sorted(MOVED_MODULES.items()))
def test_old_module_paths_import_the_new_modules(old, new):
    assert importlib.import_module(old) is importlib.import_module(new)


def test_old_class_paths_name_the_same_classes():
    from gan_lightning.multi_generator import MultiGenerator
    from gan_lightning.variants.mgan import MultiGenerator as moved

    assert MultiGenerator is moved and MultiGenerator.__module__ == "gan_lightning.variants.mgan"


@pytest.fixture
def old_run(tmp_path):
    run = tmp_path / "runs" / "ring8_mgan" / "version_0"
    shutil.copytree(FIXTURE, run)
    (run / "checkpoints").mkdir(exist_ok=True)
    shutil.copy(FIXTURE_CKPT, run / "checkpoints" / "last.pth")
    return run


def test_fixture_names_the_old_paths():
    hparams = torch.load(FIXTURE_CKPT, weights_only=True)["hyper_parameters"]
    assert hparams["generator"]["class_path"] == "gan_lightning.multi_generator.MultiGenerator"
    assert hparams["input_transforms"][0]["class_path"] == "gan_lightning.discriminator_inputs.InstanceNoise"


def test_sample_loads_a_checkpoint_written_before_the_move(old_run, tmp_path):
    out = tmp_path / "samples.pt"
    result = run_cli("sample", "--ckpt_path", str(old_run / "checkpoints" / "last.pth"), "--num_samples", "16",
                     "--output", str(out), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert torch.load(out, weights_only=True).shape == (16, 2)


def test_evaluate_loads_a_checkpoint_written_before_the_move(old_run, tmp_path):
    result = run_cli("evaluate", "--ckpt_path", str(old_run / "checkpoints" / "last.pth"), "--reference", "ring8",
                     "--num_samples", "200", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "modes_captured" in result.stdout + result.stderr


def test_resume_continues_a_run_written_before_the_move(old_run, tmp_path):
    ckpt = old_run / "checkpoints" / "last.pth"
    result = run_cli("fit", "--ckpt_path", str(ckpt), "--trainer.max_steps", "14",
                     cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    resumed = torch.load(old_run / "checkpoints" / "last.ckpt", weights_only=True)
    assert resumed["global_step"] == 14
    assert resumed["hyper_parameters"]["generator"]["class_path"].endswith("MultiGenerator")
