"""Canaries for every private Lightning/PyTorch API gan_lightning uses (gan_lightning/runtime/internals.py).

Each test exercises one function of ``internals`` on real Lightning/PyTorch objects. When a release renames or
removes the attribute, the test fails with ``PrivateAPIChanged`` naming it, before any training test does.
"""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest
import torch
from lightning.pytorch import Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.core.optimizer import LightningOptimizer
from lightning.pytorch.strategies import DDPStrategy

from gan_lightning.runtime import internals
from gan_lightning.runtime.internals import PrivateAPIChanged

from conftest import quiet_trainer, tiny_gan, tiny_ring


def test_require_names_the_missing_attribute():
    with pytest.raises(PrivateAPIChanged, match=r"object\._gone .*lightning"):
        internals.require(object(), "_gone", "a test")


def test_attached_trainer_and_call_as_hook():
    model = tiny_gan()
    assert internals.attached_trainer(model) is None
    seen = []
    internals.call_as_hook(model, "on_before_optimizer_step", lambda: seen.append(model._current_fx_name))
    assert seen == ["on_before_optimizer_step"] and model._current_fx_name != "on_before_optimizer_step"


def test_step_without_counting_and_count_training_step(tmp_path):
    model, trainer = tiny_gan(), quiet_trainer(max_steps=3, default_root_dir=tmp_path)
    trainer.fit(model, tiny_ring())
    progress = trainer.fit_loop.epoch_loop.manual_optimization.optim_step_progress
    before = progress.total.completed
    internals.count_training_step(trainer)
    assert progress.total.completed == before + 1

    param = torch.nn.Parameter(torch.ones(2))
    optimizer = LightningOptimizer._to_lightning_optimizer(torch.optim.SGD([param], lr=1.0), trainer.strategy)
    counted = []
    optimizer._on_before_step = optimizer._on_after_step = lambda: counted.append(1)
    param.grad = torch.ones(2)
    internals.step_without_counting(optimizer)
    assert counted == [] and torch.equal(param.detach(), torch.zeros(2))
    optimizer.step()
    assert counted == [1, 1]


def test_grad_scaler_internals():
    scaler = torch.amp.GradScaler("cpu", init_scale=256.0, growth_interval=7)
    assert internals.grad_scale_if_set(scaler) is None
    scale = internals.grad_scale(scaler, torch.device("cpu"))
    assert isinstance(scale, torch.Tensor) and float(scale) == 256.0
    clone = internals.clone_grad_scaler(scaler)
    assert clone.get_growth_interval() == 7 and clone._init_scale == 256.0 and clone is not scaler


def test_ddp_strategy_internals():
    strategy = DDPStrategy(find_unused_parameters=True)
    assert internals.ddp_kwargs(strategy) == {"find_unused_parameters": True}
    assert internals.ddp_comm_hook(strategy) is None
    from lightning.pytorch.overrides import distributed

    assert callable(internals.require(distributed, "_register_ddp_comm_hook", "canary"))
    internals.require(strategy, "_ddp_comm_state", "canary")
    internals.require(strategy, "_ddp_comm_wrapper", "canary")


def test_model_checkpoint_internals(tmp_path):
    callback = ModelCheckpoint(dirpath=tmp_path, every_n_train_steps=2, save_last=True)
    trainer = Trainer(default_root_dir=tmp_path, logger=False, enable_progress_bar=False, callbacks=[callback],
                      enable_model_summary=False, max_steps=1, accelerator="cpu")
    assert internals.checkpoint_intervals(callback) == (2, None)
    assert internals.checkpoint_last_time_checked(callback) is None
    internals.set_checkpoint_last_time_checked(callback, 1.0)
    assert callback._last_time_checked == 1.0
    assert internals.checkpoint_last_step_saved(callback) == 0
    internals.record_checkpoint_saved(callback, trainer, "x.ckpt")
    assert callback._last_checkpoint_saved == "x.ckpt"
    assert isinstance(internals.checkpoint_candidates(callback, trainer), dict)
    assert internals.checkpoint_should_skip(callback, trainer) in (True, False)
    for name in ("_save_topk_checkpoint", "_save_last_checkpoint"):
        assert callable(internals.require(callback, name, "canary"))
    # GANCheckpoint overrides _save_checkpoint(trainer, filepath) to write atomically; both save paths call it.
    assert list(inspect.signature(ModelCheckpoint._save_checkpoint).parameters) == ["self", "trainer", "filepath"]
    assert "_save_checkpoint" in inspect.getsource(ModelCheckpoint._save_last_checkpoint)


def test_fused_tensor_list_kernels_and_the_compile_wrapper():
    a, b = [torch.zeros(2), torch.zeros(3)], [torch.ones(2), torch.full((3,), 2.0)]
    internals.foreach_lerp_(a, b, 0.5)
    assert torch.equal(a[1], torch.ones(3))
    internals.foreach_copy_(a, b)
    assert torch.equal(a[0], torch.ones(2))
    assert [float(n) for n in internals.foreach_norm([torch.tensor([3.0, 4.0])])] == [5.0]
    net = torch.nn.Linear(2, 2)
    assert internals.compiled_original(torch.compile(net)) is net and internals.compiled_original(net) is None


def test_cache_folders_follow_torch_home_as_torch_hub_does(monkeypatch, tmp_path):
    """gan_lightning.runtime.cache_dirs re-implements torch.hub's documented home lookup without its private
    helper; this checks the two agree, so every cache lands where torch.hub's downloads do."""
    import torch.hub

    from gan_lightning.runtime import cache_dirs

    monkeypatch.delenv("GAN_LIGHTNING_CACHE", raising=False)
    for torch_home, xdg in ((str(tmp_path / "th"), None), (None, str(tmp_path / "xdg")), (None, None)):
        for name, value in (("TORCH_HOME", torch_home), ("XDG_CACHE_HOME", xdg)):
            if value is None:
                monkeypatch.delenv(name, raising=False)
            else:
                monkeypatch.setenv(name, value)
        assert cache_dirs.torch_home() == Path(torch.hub._get_torch_home()).expanduser()
        assert cache_dirs.default_cache_dir("image_cache") == cache_dirs.torch_home() / "gan_lightning" / "image_cache"
    monkeypatch.setenv("GAN_LIGHTNING_CACHE", str(tmp_path / "mine"))
    assert cache_dirs.default_cache_dir("classifiers") == tmp_path / "mine"
