"""Instance noise and label flipping: what the discriminator sees."""

import pytest
import torch

from gan_lightning.tricks.discriminator_inputs import DiscriminatorBatch, InstanceNoise, LabelFlipping
from gan_lightning.errors import ConfigurationError

from conftest import quiet_trainer, tiny_gan, tiny_ring


@pytest.mark.parametrize("step, expected", [(0, 0.2), (250, 0.15), (500, 0.1), (999, 0.2 / 1000), (1000, 0.0), (5000, 0.0)])
def test_instance_noise_variance_decays_linearly_to_zero(step, expected):
    noise = InstanceNoise(std=0.2, anneal_steps=1000)
    assert noise.std_at(step) == pytest.approx(expected)
    torch.manual_seed(0)
    real, fake = torch.zeros(20000, 2), torch.ones(20000, 2)
    out = noise.discriminator_update(DiscriminatorBatch(real, fake), step)
    for clean, noisy in ((real, out.real), (fake, out.fake)):
        assert (noisy - clean).std().item() == pytest.approx(expected, abs=0.004)
    g = noise.generator_update(DiscriminatorBatch(real, fake), step)  # D's inputs in the G update are noisy too
    assert (g.fake - fake).std().item() == pytest.approx(expected, abs=0.004)


def test_instance_noise_without_annealing_is_constant_and_validates():
    assert InstanceNoise(std=0.3, anneal_steps=None).std_at(10**9) == 0.3
    with pytest.raises(ConfigurationError, match="std"):
        InstanceNoise(std=-1)
    with pytest.raises(ConfigurationError, match="anneal_steps"):
        InstanceNoise(anneal_steps=0)


def test_label_flipping_swaps_pairs_and_their_labels_with_the_given_probability():
    torch.manual_seed(0)
    n = 20000
    real, fake = torch.zeros(n, 3), torch.ones(n, 3)
    real_y, fake_y = torch.zeros(n, dtype=torch.long), torch.ones(n, dtype=torch.long)
    out = LabelFlipping(probability=0.1).discriminator_update(DiscriminatorBatch(real, fake, real_y, fake_y), step=0)
    flipped = out.real[:, 0] == 1
    assert flipped.float().mean().item() == pytest.approx(0.1, abs=0.01)
    assert torch.equal(out.fake[:, 0] == 0, flipped)  # a swap, never a duplicate
    assert torch.equal(out.real_labels == 1, flipped) and torch.equal(out.fake_labels == 0, flipped)
    g = LabelFlipping(0.1).generator_update(DiscriminatorBatch(real, fake), 0)
    assert torch.equal(g.real, real)  # the generator update is not affected
    with pytest.raises(ConfigurationError, match="probability"):
        LabelFlipping(0.7)


def test_the_module_applies_transforms_in_both_updates():
    seen = []

    class Recording(InstanceNoise):
        def discriminator_update(self, batch, step):
            seen.append(("d", step))
            return super().discriminator_update(batch, step)

        def generator_update(self, batch, step):
            seen.append(("g", step))
            return super().generator_update(batch, step)

    model = tiny_gan(input_transforms=[Recording(std=0.1, anneal_steps=2), LabelFlipping(0.2)], n_critic=2)
    quiet_trainer(max_steps=3).fit(model, tiny_ring())
    assert seen == [("d", 0), ("d", 0), ("g", 0), ("d", 1), ("d", 1), ("g", 1), ("d", 2), ("d", 2), ("g", 2)]
