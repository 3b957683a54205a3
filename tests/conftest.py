import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from lightning.pytorch import Trainer

from gan_lightning import GANModule
from gan_lightning.data import GaussianMixtureDataModule
from gan_lightning.networks import MLPDiscriminator, MLPGenerator

ROOT = Path(__file__).resolve().parents[1]


def tiny_gan(**kwargs) -> GANModule:
    torch.manual_seed(0)
    kwargs.setdefault("generator", MLPGenerator(latent_dim=2, output_dim=2, hidden_dims=[16, 16]))
    kwargs.setdefault("discriminator", MLPDiscriminator(input_dim=2, hidden_dims=[16, 16]))
    return GANModule(**kwargs)


def tiny_ring(batch_size: int = 32, num_samples: int = 640, **kwargs) -> GaussianMixtureDataModule:
    return GaussianMixtureDataModule("ring8", num_samples=num_samples, batch_size=batch_size, **kwargs)


def quiet_trainer(**kwargs) -> Trainer:
    kwargs.setdefault("logger", False)
    kwargs.setdefault("enable_checkpointing", False)
    kwargs.setdefault("enable_progress_bar", False)
    kwargs.setdefault("enable_model_summary", False)
    kwargs.setdefault("accelerator", "cpu")
    kwargs.setdefault("devices", 1)
    return Trainer(**kwargs)


def run_cli(*args: str, cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    """Run ``python -m gan_lightning ARGS`` as a user would, in a subprocess."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.run(
        [sys.executable, "-m", "gan_lightning", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture
def repo_root() -> Path:
    return ROOT
