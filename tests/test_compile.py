"""``compile_networks``: torch.compile in training, eager networks where graphs are differentiated twice."""

import pytest
import torch

from gan_lightning.regularizers import GradientPenalty, R1Penalty

from conftest import quiet_trainer, tiny_gan, tiny_ring


@pytest.mark.slow  # inductor compiles C++ kernels: about a minute on 2 CPU cores
def test_compiled_networks_train_with_penalties_and_keep_checkpoint_keys():
    model = tiny_gan(compile_networks=True, regularizers=[R1Penalty(), GradientPenalty()], ema_decay=0.9)
    plain_keys = set(tiny_gan(ema_decay=0.9).state_dict())
    trainer = quiet_trainer(max_steps=3)
    trainer.fit(model, tiny_ring())
    assert trainer.global_step == 3
    assert set(model._compiled) == {"generator", "discriminator"}
    assert set(model.state_dict()) == plain_keys  # compiled wrappers are not in the module tree
    assert all(torch.isfinite(p).all() for p in model.parameters())
