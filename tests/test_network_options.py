"""Network options: spectral norm, minibatch layers, conditioning, the SNGAN ResNet and PacGAN packing."""

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

from gan_lightning.errors import ConfigurationError
from gan_lightning.networks import (
    ConditionalBatchNorm2d,
    DCGANDiscriminator,
    DCGANGenerator,
    MinibatchDiscrimination,
    MinibatchStdDev,
    MLPDiscriminator,
    MLPGenerator,
    PackedDiscriminator,
    SNGANResNetDiscriminator,
    SNGANResNetGenerator,
    spectral_normalize,
)


def _normalized_layers(net: nn.Module) -> list[nn.Module]:
    return [m for m in net.modules() if parametrize.is_parametrized(m, "weight")]


def _sigma(m: nn.Module, weight: torch.Tensor) -> float:
    w = weight.detach()
    if isinstance(m, nn.ConvTranspose2d):  # spectral_norm normalises ConvTranspose along dim 1
        w = w.transpose(0, 1)
    return torch.linalg.matrix_norm(w.flatten(1), ord=2).item()


def _call(net: nn.Module, x: torch.Tensor, labels=None) -> torch.Tensor:
    return net(x, labels) if getattr(net, "num_classes", 0) else net(x)


def _randn(shape: tuple[int, ...], seed: int = 0) -> torch.Tensor:
    """Test inputs from their own generator: the same tensor whatever ran before (never drawn at collection time)."""
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


# --- spectral norm ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "make,shape",
    [
        (lambda: DCGANDiscriminator(width=8, image_size=16, batch_norm=False, spectral_norm=True), (4, 3, 16, 16)),
        (lambda: MLPDiscriminator(hidden_dims=[32, 32], spectral_norm=True), (4, 2)),
        (lambda: SNGANResNetDiscriminator(width=16, image_size=16, num_classes=4), (4, 3, 16, 16)),
        (lambda: DCGANGenerator(latent_dim=8, width=8, image_size=16, spectral_norm=True), (4, 8)),
    ],
    ids=["dcgan-d", "mlp-d", "resnet-d-projection", "dcgan-g"],
)
def test_spectral_norm_bounds_top_singular_value(make, shape):
    torch.manual_seed(0)
    net = make()
    x = _randn(shape)
    layers = _normalized_layers(net)
    assert layers, "spectral_norm=True must normalise some layers"
    labels = torch.arange(x.shape[0]) % 4
    with torch.no_grad():
        for _ in range(30):  # one power iteration per train-mode forward (Miyato et al. 2018)
            _call(net, x, labels)
    raw = [_sigma(m, m.parametrizations.weight.original) for m in layers]
    assert any(abs(s - 1) > 0.2 for s in raw), "the test needs raw weights whose norm is not already 1"
    for m in layers:
        assert _sigma(m, m.weight) == pytest.approx(1.0, abs=0.05), m


def test_spectral_norm_only_where_asked():
    assert not _normalized_layers(SNGANResNetGenerator(width=16))
    assert not _normalized_layers(DCGANDiscriminator(width=8))
    assert not _normalized_layers(SNGANResNetDiscriminator(width=16, spectral_norm=False))
    g = SNGANResNetGenerator(width=16, num_classes=3, spectral_norm=True)
    normalized = _normalized_layers(g)
    assert len(normalized) == 1 + 3 * 3 + 1  # linear, 3 convs per block, output conv
    # class gains of conditional BatchNorm are not linear maps and stay unnormalised
    assert not any(isinstance(m, nn.Embedding) for m in normalized)
    d = SNGANResNetDiscriminator(width=16, num_classes=3)
    assert any(isinstance(m, nn.Embedding) for m in _normalized_layers(d))


def test_spectral_normalize_is_idempotent():
    net = nn.Sequential(nn.Conv1d(2, 4, 3), nn.Linear(4, 4), nn.Embedding(3, 4))
    spectral_normalize(spectral_normalize(net))
    for m in net:
        assert len(m.parametrizations.weight) == 1


# --- minibatch layers ------------------------------------------------------------------------------------


def test_minibatch_stddev_matches_hand_computation_on_vectors():
    x = torch.tensor([[0.0, 0.0], [0.0, 0.0], [2.0, 4.0], [1.0, 1.0]])
    out = MinibatchStdDev(group_size=2)(x)
    # groups are samples {0, 2} and {1, 3} (n mod N/G, ProGAN's layout); biased std per feature, then the mean:
    # {0, 2}: std(0, 2) = 1, std(0, 4) = 2 -> 1.5;  {1, 3}: std(0, 1) = 0.5 twice -> 0.5
    assert torch.equal(out[:, :2], x)
    torch.testing.assert_close(out[:, 2], torch.tensor([1.5, 0.5, 1.5, 0.5]), atol=1e-6, rtol=0)


def test_minibatch_stddev_on_images_and_awkward_batches():
    torch.manual_seed(0)
    x = torch.randn(6, 2, 3, 3)
    out = MinibatchStdDev(group_size=4)(x)  # 6 is not a multiple of 4: groups of 3
    assert out.shape == (6, 3, 3, 3) and torch.equal(out[:, :2], x)
    for n in range(6):
        group = x[[n % 2, n % 2 + 2, n % 2 + 4]]
        expected = (group.var(dim=0, unbiased=False) + 1e-8).sqrt().mean()
        torch.testing.assert_close(out[n, 2], expected.expand(3, 3))
    prime = MinibatchStdDev(group_size=4)(torch.randn(5, 2, 3, 3))  # groups of 1: std is 0 (+ eps)
    torch.testing.assert_close(prime[:, 2], torch.full((5, 3, 3), 1e-4))
    two = MinibatchStdDev(group_size=4, num_channels=2)(x)
    assert two.shape == (6, 4, 3, 3)
    torch.testing.assert_close(two[0, 2], (x[[0, 2, 4], 0].var(0, unbiased=False) + 1e-8).sqrt().mean().expand(3, 3))


def test_minibatch_discrimination_counts_close_samples():
    torch.manual_seed(0)
    layer = MinibatchDiscrimination(16, num_kernels=7, kernel_dim=3)
    same = torch.randn(1, 16).repeat(5, 1)
    out = layer(same)
    assert out.shape == (5, 16 + 7) and torch.equal(out[:, :16], same)
    torch.testing.assert_close(out[:, 16:], torch.full((5, 7), 5.0))  # c_b = 1 for all j, self included
    far = layer(1000 * torch.randn(5, 16))
    torch.testing.assert_close(far[:, 16:], torch.ones(5, 7))  # only the j = i term survives


def test_minibatch_layer_choices():
    with pytest.raises(ConfigurationError, match="minibatch_layer='std'.*'none', 'stddev'.*'discrimination'"):
        DCGANDiscriminator(minibatch_layer="std")
    with pytest.raises(ConfigurationError, match="minibatch_layer"):
        MLPDiscriminator(minibatch_layer="batch")
    d = DCGANDiscriminator(width=8, minibatch_layer="stddev")
    assert any(isinstance(m, MinibatchStdDev) for m in d.modules())
    d = MLPDiscriminator(hidden_dims=[8], minibatch_layer="discrimination")
    assert any(isinstance(m, MinibatchDiscrimination) for m in d.modules())
    assert d(torch.randn(4, 2)).shape == (4,)


def test_minibatch_layers_see_the_batch():
    """With a minibatch layer, a sample's score depends on the other samples in the batch."""
    torch.manual_seed(0)
    for kind in ("stddev", "discrimination"):
        d = DCGANDiscriminator(width=8, batch_norm=False, image_size=16, minibatch_layer=kind).eval()
        x = torch.randn(4, 3, 16, 16)
        y = x.clone()
        y[1] += 1.0
        assert not torch.allclose(d(x)[0], d(y)[0]), kind
        plain = DCGANDiscriminator(width=8, batch_norm=False, image_size=16).eval()
        torch.testing.assert_close(plain(x)[0], plain(y)[0])


# --- conditioning ----------------------------------------------------------------------------------------


def test_conditional_batchnorm_starts_as_batchnorm_and_depends_on_label():
    torch.manual_seed(0)
    cbn = ConditionalBatchNorm2d(4, num_classes=3)
    assert torch.equal(cbn.gain.weight, torch.ones(3, 4)) and torch.equal(cbn.bias.weight, torch.zeros(3, 4))
    x = torch.randn(6, 4, 2, 2)
    a, b = cbn(x, torch.zeros(6, dtype=torch.long)), cbn(x, torch.ones(6, dtype=torch.long))
    torch.testing.assert_close(a, nn.functional.batch_norm(x, None, None, training=True))
    torch.testing.assert_close(a, b)
    with torch.no_grad():
        cbn.gain.weight[1] = 2.0
        cbn.bias.weight[1] = 0.5
    torch.testing.assert_close(cbn(x, torch.ones(6, dtype=torch.long)), 2 * a + 0.5)
    assert not torch.allclose(cbn(x, torch.zeros(6, dtype=torch.long)), cbn(x, torch.ones(6, dtype=torch.long)))


def _randomize_class_gains(net: nn.Module) -> None:
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, ConditionalBatchNorm2d):
                m.gain.weight.normal_(1.0, 0.5)
                m.bias.weight.normal_(0.0, 0.5)


@pytest.mark.parametrize(
    "make,shape",
    [
        (lambda: DCGANGenerator(latent_dim=8, width=8, image_size=16, num_classes=3), (4, 8)),
        (lambda: MLPGenerator(latent_dim=2, hidden_dims=[16], num_classes=3), (4, 2)),
        (lambda: SNGANResNetGenerator(latent_dim=8, width=16, image_size=16, num_classes=3), (4, 8)),
    ],
    ids=["dcgan-g", "mlp-g", "resnet-g"],
)
def test_conditional_generators_depend_on_the_label(make, shape):
    torch.manual_seed(0)
    g = make()
    z = _randn(shape)
    _randomize_class_gains(g)  # CBN starts at gain 1 / bias 0 for every class (de Vries et al. 2017)
    g.eval()
    zeros, ones = torch.zeros(4, dtype=torch.long), torch.ones(4, dtype=torch.long)
    a, b = g(z, zeros), g(z, ones)
    assert a.shape == b.shape and a.shape[0] == 4
    assert (a - b).flatten(1).abs().amax(1).min() > 1e-4  # every sample changes
    torch.testing.assert_close(g(z, zeros), a)
    with pytest.raises(ValueError, match="requires class labels"):
        g(z)
    with pytest.raises(ValueError, match="num_classes=3"):
        g(z, torch.full((4,), 3, dtype=torch.long))


@pytest.mark.parametrize(
    "make,shape",
    [
        (lambda: DCGANDiscriminator(width=8, image_size=16, num_classes=3), (4, 3, 16, 16)),
        (lambda: MLPDiscriminator(hidden_dims=[16], num_classes=3), (4, 2)),
        (lambda: SNGANResNetDiscriminator(width=16, image_size=16, num_classes=3), (4, 3, 16, 16)),
    ],
    ids=["dcgan-d", "mlp-d", "resnet-d"],
)
def test_conditional_discriminators_depend_on_the_label(make, shape):
    torch.manual_seed(0)
    d = make().eval()
    x = _randn(shape)
    a, b = d(x, torch.zeros(4, dtype=torch.long)), d(x, torch.ones(4, dtype=torch.long))
    assert a.shape == (4,)
    # every sample's score moves with the label, by a share of the score's own size (at init D's scores are ~1e-3,
    # so an absolute threshold would test the initialisation, not the conditioning)
    assert (a != b).all()
    assert (a - b).abs().mean() > 0.02 * a.abs().mean()
    with pytest.raises(ValueError, match="requires class labels"):
        d(x)
    with pytest.raises(ValueError, match="LongTensor"):
        d(x, torch.zeros(4))


def test_projection_discriminator_is_unconditional_score_plus_projection():
    torch.manual_seed(0)
    cond = SNGANResNetDiscriminator(width=16, image_size=16, num_classes=5, spectral_norm=False)
    plain = SNGANResNetDiscriminator(width=16, image_size=16, num_classes=0, spectral_norm=False)
    state = {k: v for k, v in cond.state_dict().items() if not k.startswith("embedding.")}
    plain.load_state_dict(state)
    x, y = torch.randn(4, 3, 16, 16), torch.tensor([0, 4, 2, 2])
    h = cond.features(x)
    torch.testing.assert_close(cond(x, y), plain(x) + (cond.embedding.weight[y] * h).sum(1))


def test_unconditional_networks_have_zero_classes():
    for net in (DCGANGenerator(width=8), DCGANDiscriminator(width=8), MLPGenerator(), MLPDiscriminator()):
        assert net.num_classes == 0
    assert MLPDiscriminator().input_dim == 2 and DCGANDiscriminator(channels=1, width=8).channels == 1
    with pytest.raises(ConfigurationError, match="num_classes"):
        DCGANGenerator(num_classes=-1)


# --- SNGAN ResNet ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("size,blocks", [(32, 4), (64, 5), (16, 3)])
def test_resnet_shapes(size, blocks):
    g = SNGANResNetGenerator(latent_dim=16, width=16, image_size=size, channels=1)
    d = SNGANResNetDiscriminator(width=16, image_size=size, channels=1)
    x = g(torch.randn(3, 16))
    assert x.shape == (3, 1, size, size) and x.min() >= -1 and x.max() <= 1
    assert d(x).shape == (3,)
    assert len(d.blocks) == blocks  # optimized block, down blocks to 8x8, two blocks without resampling
    assert d.blocks[-1].shortcut is None and d.blocks[-2].shortcut is None


def test_resnet_default_parameter_counts():
    """SNGAN-32 (Miyato et al. 2018, Table 4): about 4.3M parameters in G and 1.05M in D."""
    count = lambda net: sum(p.numel() for p in net.parameters())  # noqa: E731
    assert count(SNGANResNetGenerator()) == 4_276_739
    assert count(SNGANResNetDiscriminator()) == 1_053_825
    # conditional BatchNorm swaps 7 affine BatchNorms (2 x 256) for 2 x 10 x 256 class gains/biases
    assert count(SNGANResNetGenerator(num_classes=10)) == 4_276_739 + 7 * (2 * 10 * 256 - 2 * 256)
    assert count(SNGANResNetDiscriminator(num_classes=10)) == 1_053_825 + 10 * 128


@pytest.mark.parametrize("size", [48, 4, 512, 0])
def test_resnet_refuses_bad_image_size(size):
    with pytest.raises(ConfigurationError, match=f"image_size={size}.*4 \\* 2\\*\\*k.*--model.generator"):
        SNGANResNetGenerator(image_size=size)
    with pytest.raises(ConfigurationError, match="--model.discriminator.init_args.image_size"):
        SNGANResNetDiscriminator(image_size=size)


def test_resnet_discriminator_refuses_wrong_input():
    d = SNGANResNetDiscriminator(width=8, image_size=32)
    with pytest.raises(ConfigurationError, match="expects images of shape \\(3, 32, 32\\)"):
        d(torch.randn(2, 3, 64, 64))


# --- PacGAN packing --------------------------------------------------------------------------------------


def test_packed_scores_depend_on_exactly_their_pack():
    torch.manual_seed(0)
    m, n = 3, 6
    d = PackedDiscriminator(MLPDiscriminator(input_dim=2 * m, hidden_dims=[16]), packing=m)
    assert d.packing == 3 and d.num_classes == 0
    x = torch.randn(n, 2)
    base = d(x)
    assert base.shape == (n // m,)
    for i in range(n):
        y = x.clone()
        y[i] += 0.5
        changed = (d(y) - base).abs() > 1e-6
        assert changed.tolist() == [k == i // m for k in range(n // m)], i


def test_packed_images_concatenate_channels():
    torch.manual_seed(0)
    inner = DCGANDiscriminator(image_size=16, channels=6, width=8, batch_norm=False)
    d = PackedDiscriminator(inner, packing=2)
    x = torch.randn(4, 3, 16, 16)
    expected = inner(torch.stack([torch.cat([x[0], x[1]]), torch.cat([x[2], x[3]])]))
    torch.testing.assert_close(d(x), expected)


def test_packing_configuration_errors():
    with pytest.raises(ConfigurationError, match="multiple of the packing"):
        PackedDiscriminator(MLPDiscriminator(input_dim=4))(torch.randn(5, 2))
    with pytest.raises(ConfigurationError, match="discriminator.init_args.input_dim=4"):
        PackedDiscriminator(MLPDiscriminator(input_dim=2))(torch.randn(4, 2))
    with pytest.raises(ConfigurationError, match="discriminator.init_args.channels=6"):
        PackedDiscriminator(DCGANDiscriminator(image_size=16, channels=3, width=8))(torch.randn(4, 3, 16, 16))
    with pytest.raises(ConfigurationError, match="conditional"):
        PackedDiscriminator(MLPDiscriminator(input_dim=4, num_classes=2))
    with pytest.raises(ConfigurationError, match="packing"):
        PackedDiscriminator(MLPDiscriminator(input_dim=4), packing=0)


# --- double backward and autocast ------------------------------------------------------------------------

_DISCRIMINATORS = {
    "dcgan-sn": (lambda: DCGANDiscriminator(width=8, image_size=16, spectral_norm=True), (4, 3, 16, 16)),
    "dcgan-stddev": (lambda: DCGANDiscriminator(width=8, image_size=16, minibatch_layer="stddev"), (4, 3, 16, 16)),
    "dcgan-mbd-cond": (
        lambda: DCGANDiscriminator(width=8, image_size=16, minibatch_layer="discrimination", num_classes=3),
        (4, 3, 16, 16),
    ),
    "mlp-sn-stddev": (lambda: MLPDiscriminator(spectral_norm=True, minibatch_layer="stddev", dropout=0.1), (4, 2)),
    "mlp-mbd-cond": (lambda: MLPDiscriminator(minibatch_layer="discrimination", num_classes=3), (4, 2)),
    "resnet": (lambda: SNGANResNetDiscriminator(width=8, image_size=16), (4, 3, 16, 16)),
    "resnet-projection": (lambda: SNGANResNetDiscriminator(width=8, image_size=16, num_classes=3), (4, 3, 16, 16)),
    "packed": (lambda: PackedDiscriminator(MLPDiscriminator(input_dim=4, spectral_norm=True)), (4, 2)),
}


@pytest.mark.parametrize("autocast", [False, True], ids=["fp32", "bf16"])
@pytest.mark.parametrize("name", list(_DISCRIMINATORS))
def test_gradient_penalty_double_backward(name, autocast):
    torch.manual_seed(0)
    make, shape = _DISCRIMINATORS[name]
    d = make()
    x = torch.randn(shape, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        scores = _call(d, x, torch.tensor([0, 1, 2, 0]))
    assert scores.shape == (shape[0] // getattr(d, "packing", 1),)
    (grad,) = torch.autograd.grad(scores.float().sum(), x, create_graph=True)
    (grad.square().sum() + scores.float().mean()).backward()
    grads = [p.grad for p in d.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)


@pytest.mark.parametrize("autocast", [False, True], ids=["fp32", "bf16"])
def test_generators_under_autocast_and_double_backward(autocast):
    torch.manual_seed(0)
    labels = torch.tensor([0, 1, 2, 0])
    for g in (
        SNGANResNetGenerator(latent_dim=8, width=8, image_size=16, num_classes=3, spectral_norm=True),
        DCGANGenerator(latent_dim=8, width=8, image_size=16, num_classes=3, spectral_norm=True),
        MLPGenerator(latent_dim=8, hidden_dims=[16], num_classes=3),
    ):
        z = torch.randn(4, 8, requires_grad=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            out = g(z, labels)
        (grad,) = torch.autograd.grad(out.float().square().sum(), z, create_graph=True)
        grad.square().sum().backward()
        assert torch.isfinite(out.float()).all() and z.grad is not None
