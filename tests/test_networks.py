import pytest
import torch

from gan_lightning.errors import ConfigurationError
from gan_lightning.networks import DCGANDiscriminator, DCGANGenerator, MLPDiscriminator, MLPGenerator


@pytest.mark.parametrize("size,channels", [(32, 3), (64, 1), (16, 3)])
def test_dcgan_shapes(size, channels):
    g = DCGANGenerator(latent_dim=10, image_size=size, channels=channels, width=8)
    d = DCGANDiscriminator(image_size=size, channels=channels, width=8, dropout=0.2)
    x = g(torch.randn(5, 10))
    assert x.shape == (5, channels, size, size)
    assert x.min() >= -1 and x.max() <= 1
    assert d(x).shape == (5,)


@pytest.mark.parametrize("size", [48, 4, 1024])
def test_dcgan_refuses_sizes_it_cannot_produce(size):
    with pytest.raises(ConfigurationError, match=f"image_size={size}.*power of two"):
        DCGANGenerator(image_size=size)
    with pytest.raises(ConfigurationError, match="power of two"):
        DCGANDiscriminator(image_size=size)


def test_dcgan_discriminator_refuses_wrong_input():
    d = DCGANDiscriminator(image_size=32, channels=3, width=8)
    with pytest.raises(ConfigurationError, match="expects images of shape"):
        d(torch.randn(2, 1, 32, 32))


def test_dcgan_without_batchnorm_has_none():
    g = DCGANGenerator(batch_norm=False, width=8)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in g.modules())


def test_mlp_shapes_and_bad_widths():
    g, d = MLPGenerator(latent_dim=3, output_dim=2, hidden_dims=[8]), MLPDiscriminator(input_dim=2, hidden_dims=[8, 8])
    assert g(torch.randn(4, 3)).shape == (4, 2)
    assert d(torch.randn(4, 2)).shape == (4,)
    with pytest.raises(ConfigurationError):
        MLPGenerator(hidden_dims=[])
