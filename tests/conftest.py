import itertools
import os
import random
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from lightning.pytorch import Trainer

from gan_lightning import GANModule
from gan_lightning.data import GaussianMixtureDataModule
from gan_lightning.networks import MLPDiscriminator, MLPGenerator

ROOT = Path(__file__).resolve().parents[1]
TEST_SEED = 0

# Environment variables through which a call of Lightning's ``seed_everything`` (also the one LightningCLI makes in
# ``main(["fit", ...])``) reaches later code: ``seed_everything(None)`` in a CLI subprocess and the DDP strategies'
# ``reset_seed()`` read PL_GLOBAL_SEED, and Lightning gives data-loader workers a seeding ``worker_init_fn`` while
# PL_SEED_WORKERS is set.
LIGHTNING_SEED_ENV = ("PL_GLOBAL_SEED", "PL_SEED_WORKERS")
_TEST_NUMBER = itertools.count()


@pytest.fixture(autouse=True)
def _same_start_for_every_test(request, monkeypatch, tmp_path_factory):
    """Every test starts from the same global state, whatever ran before it (``--random-order`` shuffles the order).

    - the global RNGs of torch, numpy and ``random`` are seeded;
    - Lightning's seed variables and the project's own ``GAN_LIGHTNING_*`` variables (from an earlier test or the
      user's shell) are removed from the environment, which CLI subprocesses inherit;
    - ``$TORCH_HOME`` (torch.hub's weights, the default real-feature cache) is a fresh folder of the test's own
      (created on first use), so no test reads what another test, an earlier run or the user left there;
    - the torch settings a test could change in passing are put back afterwards, and Lightning's seed variables
      are removed again.

    Tensors drawn at collection time (in ``parametrize`` lists or at module level) cannot be fixed here: draw them
    inside the test.
    """
    for name in LIGHTNING_SEED_ENV:  # removed for good: they only carry an earlier seed_everything call
        os.environ.pop(name, None)
    for name in [k for k in os.environ if k.startswith("GAN_LIGHTNING_")]:
        monkeypatch.delenv(name)
    folder = f"{next(_TEST_NUMBER):04d}-" + re.sub(r"[^\w.\[\]-]", "_", request.node.name)[:60]
    torch_home = tmp_path_factory.getbasetemp() / "torch_home" / folder
    monkeypatch.setenv("TORCH_HOME", str(torch_home))
    random.seed(TEST_SEED)
    np.random.seed(TEST_SEED)
    torch.manual_seed(TEST_SEED)
    threads, dtype = torch.get_num_threads(), torch.get_default_dtype()
    yield
    torch.set_num_threads(threads)
    torch.set_default_dtype(dtype)
    for name in LIGHTNING_SEED_ENV:  # and again if the test (its seed_everything) set them
        os.environ.pop(name, None)


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
