"""GMAN (several discriminators) and MGAN (several generators) through the unchanged GANModule."""

import math

import pytest
import torch
import torch.nn.functional as F

from gan_lightning import GANModule, build_loss
from gan_lightning.callbacks import BalanceDiagnosticsCallback, LossCurvesCallback
from gan_lightning.errors import ConfigurationError
from gan_lightning.losses import HingeLoss, NonSaturatingLoss, WassersteinGPLoss
from gan_lightning.variants.gman import MultiDiscriminator, MultiDiscriminatorLoss, PerDiscriminatorRegularizer
from gan_lightning.variants.mgan import (
    MGANDCGANDiscriminator,
    MGANDiscriminator,
    MGANLoss,
    MultiDCGANGenerator,
    MultiGenerator,
    generator_labels,
)
from gan_lightning.networks import DCGANDiscriminator, DCGANGenerator, MLPDiscriminator, MLPGenerator
from gan_lightning.regularizers import R1Penalty, RegularizerContext

from conftest import ROOT, quiet_trainer, tiny_ring


def small_d(hidden=8):
    return MLPDiscriminator(input_dim=2, hidden_dims=[hidden])


def multi_d(k=3):
    torch.manual_seed(0)
    return MultiDiscriminator(discriminator=small_d, num_discriminators=k)


# ---------------------------------------------------------------- GMAN: networks
def test_multi_discriminator_stacks_one_column_per_discriminator_with_distinct_initialisations():
    d = multi_d(3)
    x = torch.randn(5, 2)
    scores = d(x)
    assert scores.shape == (5, 3)
    for k, member in enumerate(d.discriminators):
        torch.testing.assert_close(scores[:, k], member(x))
    w = [m.net[0].weight for m in d.discriminators]
    assert not torch.equal(w[0], w[1]) and not torch.equal(w[1], w[2])
    listed = MultiDiscriminator(discriminators=[small_d(), small_d(4)])
    assert listed.num_discriminators == 2 and listed(x).shape == (5, 2)


def test_multi_discriminator_refuses_ambiguous_or_shared_configs():
    with pytest.raises(ConfigurationError, match="exactly one"):
        MultiDiscriminator()
    with pytest.raises(ConfigurationError, match="exactly one"):
        MultiDiscriminator(discriminators=[small_d()], discriminator=small_d)
    with pytest.raises(ConfigurationError, match="build a network, not be one"):
        MultiDiscriminator(discriminator=small_d())
    shared = small_d()
    with pytest.raises(ConfigurationError, match="share their weights"):
        MultiDiscriminator(discriminators=[shared, shared])
    with pytest.raises(ConfigurationError, match="num_discriminators=3 but 2"):
        MultiDiscriminator(discriminators=[small_d(), small_d()], num_discriminators=3)


# ---------------------------------------------------------------- GMAN: loss
@pytest.mark.parametrize("base", [NonSaturatingLoss(), HingeLoss()])
def test_gman_mean_is_the_mean_of_the_per_discriminator_losses_and_d_loss_their_sum(base):
    torch.manual_seed(1)
    real, fake = torch.randn(16, 3) * 2, torch.randn(16, 3) * 2
    loss = MultiDiscriminatorLoss(base=base)
    g_each = [base.generator_loss(fake[:, k]) for k in range(3)]
    d_each = [base.discriminator_loss(real[:, k], fake[:, k]) for k in range(3)]
    torch.testing.assert_close(loss.generator_loss(fake, real), sum(g_each) / 3)
    torch.testing.assert_close(loss.discriminator_loss(real, fake), sum(d_each))
    # a different column mix gives a different value: the columns are really read one by one
    assert not torch.allclose(loss.generator_loss(fake[:, [0, 0, 0]]), loss.generator_loss(fake))


def test_gman_softmax_weights_match_the_closed_form_on_hand_picked_scores():
    # constant scores per column: D_k gives logit r_k to reals and f_k to fakes
    r, f = [2.0, 0.0, -1.0], [-2.0, 0.5, 1.0]
    real = torch.tensor(r).repeat(4, 1)
    fake = torch.tensor(f).repeat(4, 1)
    softplus = lambda s: math.log1p(math.exp(s))  # noqa: E731
    values = [-(softplus(-rk) + softplus(fk)) for rk, fk in zip(r, f)]  # V_k = E log D_k(x) + E log(1 - D_k(G(z)))
    g_losses = [softplus(-fk) for fk in f]  # non-saturating generator loss per discriminator
    for lam in (0.5, 1.0, 3.0):
        loss = MultiDiscriminatorLoss(aggregation="softmax", softmax_lambda=lam)
        assert loss.generator_needs_real_scores
        expected = [math.exp(lam * v) for v in values]
        expected = [e / sum(expected) for e in expected]
        assert loss.weights(fake, real).tolist() == pytest.approx(expected, rel=1e-5)
        assert loss.generator_loss(fake, real).item() == pytest.approx(sum(w * g for w, g in zip(expected, g_losses)), rel=1e-5)
    # lambda -> 0: the mean (and lambda = 0 needs no real scores)
    mean = MultiDiscriminatorLoss(aggregation="mean").generator_loss(fake)
    assert MultiDiscriminatorLoss(aggregation="softmax", softmax_lambda=1e-6).generator_loss(fake, real).item() == pytest.approx(mean.item(), rel=1e-5)
    zero = MultiDiscriminatorLoss(aggregation="softmax", softmax_lambda=0.0)
    assert not zero.generator_needs_real_scores
    assert zero.generator_loss(fake).item() == pytest.approx(mean.item(), rel=1e-6)
    # lambda large: the harshest discriminator (largest V_k) takes all the weight
    harsh = max(range(3), key=lambda k: values[k])
    big = MultiDiscriminatorLoss(aggregation="softmax", softmax_lambda=200.0)
    assert big.weights(fake, real)[harsh].item() == pytest.approx(1.0, abs=1e-6)
    assert big.generator_loss(fake, real).item() == pytest.approx(g_losses[harsh], rel=1e-5)
    assert g_losses[harsh] != pytest.approx(mean.item(), rel=1e-2)


def test_gman_softmax_weights_are_constants_in_the_generator_gradient():
    torch.manual_seed(2)
    real, fake = torch.randn(8, 3), torch.randn(8, 3, requires_grad=True)
    loss = MultiDiscriminatorLoss(aggregation="softmax", softmax_lambda=2.0)
    loss.generator_loss(fake, real).backward()
    w = loss.weights(fake.detach(), real)
    expected = w * torch.autograd.grad(F.softplus(-fake).mean(0).sum(), fake)[0]  # d/df of sum_k w_k mean(softplus(-f_k))
    torch.testing.assert_close(fake.grad, expected)


def test_each_discriminator_gets_the_gradient_of_its_own_column_only():
    d = multi_d(3)
    base, loss = NonSaturatingLoss(), MultiDiscriminatorLoss()
    torch.manual_seed(3)
    real, fake = torch.randn(16, 2), torch.randn(16, 2) * 2
    d.zero_grad()
    loss.discriminator_loss(d(real), d(fake)).backward()
    together = [[p.grad.clone() for p in m.parameters()] for m in d.discriminators]
    for k, member in enumerate(d.discriminators):
        alone = torch.autograd.grad(base.discriminator_loss(member(real), member(fake)), list(member.parameters()))
        for g, a in zip(together[k], alone):
            torch.testing.assert_close(g, a)
    # perturbing discriminator 0 changes neither the gradient of 1 nor that of 2
    with torch.no_grad():
        d.discriminators[0].net[0].weight.add_(1.0)
    d.zero_grad()
    loss.discriminator_loss(d(real), d(fake)).backward()
    for k in (1, 2):
        for p, g in zip(d.discriminators[k].parameters(), together[k]):
            torch.testing.assert_close(p.grad, g)
    assert not torch.allclose(d.discriminators[0].net[0].weight.grad, together[0][0])


def test_gman_refuses_single_column_scores_and_bad_options():
    loss = build_loss("gman")  # registered, constructible with defaults
    assert isinstance(loss, MultiDiscriminatorLoss) and loss.scores_are_logits
    with pytest.raises(ConfigurationError, match=r"shape \(N, K\)"):
        loss.discriminator_loss(torch.zeros(4), torch.zeros(4))
    with pytest.raises(ConfigurationError, match="aggregation"):
        MultiDiscriminatorLoss(aggregation="max")
    with pytest.raises(ConfigurationError, match="softmax_lambda"):
        MultiDiscriminatorLoss(aggregation="softmax", softmax_lambda=-1.0)
    with pytest.raises(ConfigurationError, match="one-discriminator loss"):
        MultiDiscriminatorLoss(base="gman")
    assert not MultiDiscriminatorLoss(base="hinge").scores_are_logits
    assert MultiDiscriminatorLoss(base="ragan").generator_needs_real_scores


def test_per_discriminator_penalty_is_the_sum_of_each_discriminators_own_penalty():
    d = multi_d(2)
    torch.manual_seed(4)
    real = torch.randn(8, 2).requires_grad_(True)
    scores = d(real)
    ctx = RegularizerContext(d, None, real, torch.randn(8, 2), torch.randn(8, 2), real_scores=scores)
    r1 = R1Penalty(gamma=2.0)
    wrapped = PerDiscriminatorRegularizer(r1)
    assert wrapped.phase == "discriminator" and wrapped.input_gradient_of == "real"
    each = sum(r1(RegularizerContext(m, None, real, ctx.fake, ctx.latent)) for m in d.discriminators)
    torch.testing.assert_close(wrapped(ctx), each)
    assert not torch.allclose(r1(ctx), each)  # the unwrapped penalty sees the sum of the columns
    (reg,) = MultiDiscriminatorLoss(base=WassersteinGPLoss()).regularizers()
    assert isinstance(reg, PerDiscriminatorRegularizer) and reg.weight == 10.0


# ---------------------------------------------------------------- MGAN: networks
def test_multi_generator_sample_i_comes_from_generator_i_mod_k():
    torch.manual_seed(5)
    g = MultiGenerator(num_generators=3, latent_dim=2, output_dim=2, hidden_dims=[16, 16], batch_norm=False)
    z = torch.randn(7, 2)
    out = g(z)
    for k in range(3):
        torch.testing.assert_close(out[k::3], g.forward_generator(z[k::3], k))
    assert generator_labels(7, 3).tolist() == [0, 1, 2, 0, 1, 2, 0]
    with torch.no_grad():
        g.input_layers[1].weight.add_(0.5)  # perturb generator 1's own layer
    changed = (g(z) - out).abs().sum(1) > 0
    assert changed.tolist() == [i % 3 == 1 for i in range(7)]


def test_multi_generator_with_batch_norm_refuses_a_batch_too_small_for_its_generators():
    from gan_lightning.errors import ConfigurationError

    g = MultiGenerator(num_generators=4, latent_dim=2, output_dim=2, hidden_dims=[8, 8], batch_norm=True)
    with pytest.raises(ConfigurationError, match="at least 8"):
        g(torch.randn(6, 2))
    assert g.eval()(torch.randn(6, 2)).shape == (6, 2)  # eval mode uses running statistics: any batch


def test_multi_generator_shares_everything_but_the_input_layer():
    g = MultiGenerator(num_generators=4, latent_dim=3, output_dim=2, hidden_dims=[8, 8])
    own = {id(p) for layer in g.input_layers for p in layer.parameters()} | {id(p) for n in g.input_norms for p in n.parameters()}
    shared = [p for p in g.parameters() if id(p) not in own]
    single = MLPGenerator(latent_dim=3, output_dim=2, hidden_dims=[8, 8])
    assert sum(p.numel() for p in shared) == sum(p.numel() for p in single.parameters()) - (3 * 8 + 2 * 8)
    g.eval()
    z = torch.randn(8, 3)
    before = g(z)
    with torch.no_grad():
        g.body[-1].bias.add_(1.0)  # the shared output layer: every generator moves
    torch.testing.assert_close(g(z), before + 1.0)


def test_mgan_discriminator_has_a_score_and_k_classifier_logits_on_one_trunk():
    d = MGANDiscriminator(num_generators=4, input_dim=2, hidden_dims=[8, 8])
    x = torch.randn(6, 2)
    scores = d(x)
    assert scores.shape == (6, 5)
    feats = d.trunk(x)
    torch.testing.assert_close(scores[:, :1], d.score_head(feats))
    torch.testing.assert_close(scores[:, 1:], d.classifier_head(feats))


# ---------------------------------------------------------------- MGAN: convolutional networks (images)
@pytest.mark.parametrize("size", [8, 32])
def test_conv_mgan_networks_give_images_and_one_score_plus_k_logits(size):
    torch.manual_seed(8)
    g = MultiDCGANGenerator(num_generators=3, latent_dim=16, image_size=size, channels=3, width=8)
    d = MGANDCGANDiscriminator(num_generators=3, image_size=size, channels=3, width=8)
    images = g(torch.randn(12, 16))
    assert images.shape == (12, 3, size, size) and images.abs().max() <= 1.0  # tanh output
    assert (g.latent_dim, g.image_size, g.channels, g.num_generators, g.num_classes) == (16, size, 3, 3, 0)
    scores = d(images)
    assert scores.shape == (12, 4) and d.num_classes == 0
    d.eval()
    feats = d.trunk(images)
    torch.testing.assert_close(d(images), torch.cat([d.score_head(feats).flatten(1), d.classifier_head(feats).flatten(1)], 1))
    # the trunk is DCGANDiscriminator's: same layers, same parameter shapes, up to its last 4x4 convolution
    plain = DCGANDiscriminator(image_size=size, channels=3, width=8)
    assert [p.shape for p in d.trunk.parameters()] == [p.shape for p in plain.net[:-1].parameters()]
    assert d.classifier_head.out_channels == 3 and d.score_head.out_channels == 1


def test_conv_multi_generator_row_i_comes_from_generator_i_mod_k():
    torch.manual_seed(9)
    g = MultiDCGANGenerator(num_generators=3, latent_dim=8, image_size=8, channels=1, width=8)
    g.train()
    g(torch.randn(32, 8))  # move the BatchNorm running statistics away from their initial values
    g.eval()
    z = torch.randn(7, 8)
    out = g(z)
    for k in range(3):
        torch.testing.assert_close(out[k::3], g.forward_generator(z[k::3], k))
    assert not torch.allclose(g.forward_generator(z, 0), g.forward_generator(z, 1))  # distinct generators
    with torch.no_grad():
        g.input_layers[2].weight.add_(0.1)  # perturb generator 2's own layer: only rows 2 and 5 move
    changed = (g(z) - out).abs().flatten(1).sum(1) > 0
    assert changed.tolist() == [i % 3 == 2 for i in range(7)]
    with pytest.raises(ValueError, match="out of range"):
        g.forward_generator(z, 3)


@pytest.mark.parametrize("batch_norm", [True, False])
def test_conv_multi_generator_shares_the_dcgan_body_behind_k_input_layers(batch_norm):
    torch.manual_seed(10)
    g = MultiDCGANGenerator(num_generators=4, latent_dim=16, image_size=32, channels=3, width=8, batch_norm=batch_norm)
    single = DCGANGenerator(latent_dim=16, image_size=32, channels=3, width=8, batch_norm=batch_norm)
    first = [single.net[0]] + ([single.net[1]] if batch_norm else [])  # DCGAN's input layer (and its BatchNorm)
    first_count = sum(p.numel() for m in first for p in m.parameters())
    assert len(g.input_layers) == 4 and (g.input_norms is not None) == batch_norm
    assert all(layer.weight.shape == single.net[0].weight.shape for layer in g.input_layers)
    body = [p.shape for p in g.body.parameters()]
    assert body == [p.shape for p in single.net[len(first):].parameters()]  # one copy of the rest of DCGAN
    assert sum(p.numel() for p in g.parameters()) == sum(p.numel() for p in single.parameters()) + 3 * first_count
    assert not torch.equal(g.input_layers[0].weight, g.input_layers[1].weight)  # initialised one by one
    assert g.input_layers[0].weight.std().item() == pytest.approx(0.02, rel=0.1)  # DCGAN's N(0, 0.02)
    g.eval()
    z = torch.randn(8, 16)
    before = g(z)
    with torch.no_grad():
        g.body[-2].bias.add_(0.5)  # the shared output convolution: every generator's images move
    assert ((g(z) - before).abs().flatten(1).sum(1) > 0).all()


def test_conv_mgan_gradients_reach_every_input_layer_and_both_heads():
    torch.manual_seed(11)
    g = MultiDCGANGenerator(num_generators=4, latent_dim=8, image_size=8, channels=1, width=8)
    d = MGANDCGANDiscriminator(num_generators=4, image_size=8, channels=1, width=8)
    fake_scores = d(g(torch.randn(16, 8)))
    MGANLoss(num_generators=4, beta=0.5).generator_loss(fake_scores).backward()
    for k, layer in enumerate(g.input_layers):
        assert layer.weight.grad is not None and layer.weight.grad.abs().sum() > 0, k
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in g.body.parameters())
    for head in (d.score_head, d.classifier_head):
        assert head.weight.grad.abs().sum() > 0


def test_conv_mgan_networks_refuse_wrong_images_small_batches_and_bad_options():
    g = MultiDCGANGenerator(num_generators=4, latent_dim=8, image_size=8, channels=1, width=8)
    with pytest.raises(ConfigurationError, match=r"MultiDCGANGenerator.*at least 8.*batch_size"):
        g(torch.randn(6, 8))
    assert g.eval()(torch.randn(6, 8)).shape == (6, 1, 8, 8)  # eval mode uses running statistics: any batch
    no_bn = MultiDCGANGenerator(num_generators=4, latent_dim=8, image_size=8, channels=1, width=8, batch_norm=False)
    assert no_bn(torch.randn(3, 8)).shape == (3, 1, 8, 8)  # without BatchNorm even one sample per generator is fine
    d = MGANDCGANDiscriminator(num_generators=4, image_size=8, channels=1, width=8)
    with pytest.raises(ConfigurationError, match=r"\(1, 8, 8\) but got \(3, 8, 8\).*init_args.channels"):
        d(torch.randn(2, 3, 8, 8))
    with pytest.raises(ConfigurationError, match="image_size"):
        d(torch.randn(2, 1, 16, 16))
    with pytest.raises(ConfigurationError, match="power of two"):
        MultiDCGANGenerator(image_size=24)
    with pytest.raises(ConfigurationError, match="num_generators.*--model.discriminator.init_args.num_generators"):
        MGANDCGANDiscriminator(num_generators=0)
    with pytest.raises(ConfigurationError, match=r"\(N, 1 \+ 3\)"):  # D built for 4 generators, loss for 3
        MGANLoss(num_generators=3).generator_loss(d(torch.randn(2, 1, 8, 8)))


def test_conv_mgan_with_spectral_norm_and_dropout_builds_and_runs():
    torch.manual_seed(12)
    g = MultiDCGANGenerator(num_generators=2, latent_dim=8, image_size=8, channels=1, width=8, spectral_norm=True)
    d = MGANDCGANDiscriminator(num_generators=2, image_size=8, channels=1, width=8, dropout=0.2, spectral_norm=True)
    assert any("parametrizations" in name for name, _ in g.named_parameters())
    assert any("parametrizations" in name for name, _ in d.named_parameters())
    assert any(isinstance(m, torch.nn.Dropout2d) for m in d.trunk)
    assert d(g(torch.randn(4, 8))).shape == (4, 3)


# ---------------------------------------------------------------- MGAN: loss
def test_mgan_classifier_cross_entropy_uses_label_i_mod_k():
    k, n = 4, 10
    logits = torch.full((n, k), -5.0)
    logits[torch.arange(n), torch.arange(n) % k] = 5.0  # confident and right for label i mod K
    fake = torch.cat([torch.zeros(n, 1), logits], dim=1)
    loss = MGANLoss(num_generators=k)
    assert loss.classifier_loss(fake).item() < 1e-3
    torch.manual_seed(6)
    fake = torch.randn(n, 1 + k)
    torch.testing.assert_close(loss.classifier_loss(fake), F.cross_entropy(fake[:, 1:], torch.arange(n) % k))
    shifted = torch.cat([fake[:, :1], fake[:, 1:].roll(1, dims=1)], dim=1)
    assert not torch.allclose(loss.classifier_loss(shifted), loss.classifier_loss(fake))


def test_mgan_losses_combine_the_base_loss_on_column_0_with_the_classifier():
    torch.manual_seed(7)
    real, fake = torch.randn(12, 5), torch.randn(12, 5)
    base = NonSaturatingLoss()
    ce = F.cross_entropy(fake[:, 1:], torch.arange(12) % 4)
    torch.testing.assert_close(MGANLoss(beta=0.0).generator_loss(fake), base.generator_loss(fake[:, 0]))
    torch.testing.assert_close(MGANLoss(beta=0.5).generator_loss(fake), base.generator_loss(fake[:, 0]) + 0.5 * ce)
    d_loss = MGANLoss().discriminator_loss(real, fake)
    torch.testing.assert_close(d_loss, base.discriminator_loss(real[:, 0], fake[:, 0]) + ce)
    real_other = real.clone()
    real_other[:, 1:] = torch.randn(12, 4) * 10  # the classifier is not trained on real samples
    torch.testing.assert_close(MGANLoss().discriminator_loss(real_other, fake), d_loss)


def test_mgan_loss_checks_the_score_width():
    assert isinstance(build_loss("mgan"), MGANLoss)
    with pytest.raises(ConfigurationError, match=r"\(N, 1 \+ 3\)"):
        MGANLoss(num_generators=3).discriminator_loss(torch.zeros(4, 5), torch.zeros(4, 5))
    with pytest.raises(ConfigurationError, match="MGANDiscriminator"):
        MGANLoss().generator_loss(torch.zeros(4))
    with pytest.raises(ConfigurationError, match="beta"):
        MGANLoss(beta=-1.0)
    (reg,) = MGANLoss(base="wgan-gp").regularizers()
    assert isinstance(reg, PerDiscriminatorRegularizer) and reg.columns == [0]


# ---------------------------------------------------------------- training inside GANModule
def _gman_module():
    torch.manual_seed(0)
    return GANModule(
        generator=MLPGenerator(latent_dim=2, output_dim=2, hidden_dims=[16, 16], batch_norm=False),
        discriminator=MultiDiscriminator(discriminator=lambda: MLPDiscriminator(input_dim=2, hidden_dims=[16]), num_discriminators=2),
        loss=MultiDiscriminatorLoss(aggregation="softmax", softmax_lambda=1.0),
    )


def _mgan_module():
    torch.manual_seed(0)
    return GANModule(
        generator=MultiGenerator(num_generators=4, latent_dim=2, output_dim=2, hidden_dims=[16, 16]),
        discriminator=MGANDiscriminator(num_generators=4, input_dim=2, hidden_dims=[16]),
        loss=MGANLoss(num_generators=4),
    )


@pytest.mark.parametrize("n_critic", [1, 2])
@pytest.mark.parametrize("make,columns", [(_gman_module, 2), (_mgan_module, 5)], ids=["gman", "mgan"])
def test_trains_in_gan_module_and_survives_a_checkpoint(tmp_path, make, columns, n_critic):
    model = make()
    model.n_critic = n_critic
    before = [p.detach().clone() for p in model.discriminator.parameters()]
    callbacks = [BalanceDiagnosticsCallback(), LossCurvesCallback()]
    trainer = quiet_trainer(max_steps=3, log_every_n_steps=1, callbacks=callbacks, default_root_dir=tmp_path)
    trainer.fit(model, tiny_ring(batch_size=32))
    assert trainer.global_step == 3
    assert (tmp_path / "loss_curves.png").is_file()
    last = model.last_step_outputs
    assert last.real_scores.shape == (32, columns) and last.fake_scores.shape == (32, columns)
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert all(not torch.equal(a, b) for a, b in zip(before, model.discriminator.parameters()))  # every D / head trained
    for key in ("d_loss", "g_loss", "d_real", "d_fake", "balance/d_acc_real"):
        assert key in trainer.callback_metrics
    path = tmp_path / "model.ckpt"
    trainer.save_checkpoint(path)
    fresh = make()
    assert torch.load(path, weights_only=True)  # loads without pickled objects
    loaded = GANModule.load_from_checkpoint(path, generator=fresh.generator, discriminator=fresh.discriminator, loss=fresh.loss)
    for (name, a), b in zip(model.state_dict().items(), loaded.state_dict().values()):
        torch.testing.assert_close(a, b, msg=name)
    torch.testing.assert_close(loaded.generate(12, seed=1), model.generate(12, seed=1))
    resumed = quiet_trainer(max_steps=5, default_root_dir=tmp_path)
    resumed.fit(make(), tiny_ring(batch_size=32), ckpt_path=path)  # continues from step 3
    assert resumed.global_step == 5


def _fit_and_reload(config, tmp_path, *options):
    """Fit an experiment briefly through the CLI, save a checkpoint, and rebuild the GAN from it with ``load_gan``
    (networks and loss from the checkpoint's own config, through the trust check)."""
    from gan_lightning.commands.cli import GANLightningCLI
    from gan_lightning.commands.sample import load_gan

    quiet = ["--trainer.logger=false", "--trainer.callbacks=[]", "--trainer.enable_checkpointing=false",
             "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false", "--trainer.accelerator=cpu"]
    cli = GANLightningCLI(args=["--config", str(config), *quiet, f"--trainer.default_root_dir={tmp_path}", *options],
                          run=False, save_config_callback=None)
    cli.trainer.fit(cli.model, cli.datamodule)
    path = tmp_path / "last.ckpt"
    cli.trainer.save_checkpoint(path)
    return cli, load_gan(str(path))


@pytest.mark.parametrize("name", ["gman", "mgan"])
def test_shipped_experiment_builds_from_yaml_and_reloads_from_its_checkpoint(tmp_path, name):
    cli, loaded = _fit_and_reload(ROOT / f"experiments/ring8_{name}.yaml", tmp_path, "--trainer.max_steps=2",
                                  "--data.init_args.num_samples=400")
    assert type(loaded.discriminator) is type(cli.model.discriminator) and type(loaded.loss) is type(cli.model.loss)
    assert repr(loaded.loss) == repr(cli.model.loss)
    torch.testing.assert_close(loaded.generate(8, seed=0, use_ema=False), cli.model.generate(8, seed=0, use_ema=False))


def _conv_mgan_module():
    torch.manual_seed(0)
    return GANModule(
        generator=MultiDCGANGenerator(num_generators=4, latent_dim=16, image_size=8, channels=1, width=8),
        discriminator=MGANDCGANDiscriminator(num_generators=4, image_size=8, channels=1, width=8),
        loss=MGANLoss(num_generators=4, beta=0.01),
    )


def test_conv_mgan_trains_on_digits_and_survives_a_checkpoint(tmp_path):
    from gan_lightning.data import DigitsDataModule

    model = _conv_mgan_module()
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    trainer = quiet_trainer(max_steps=3, default_root_dir=tmp_path)
    trainer.fit(model, DigitsDataModule(image_size=8, channels=1, batch_size=32))
    assert trainer.global_step == 3
    assert model.last_step_outputs.fake_scores.shape == (32, 5)
    assert all(torch.isfinite(p).all() for p in model.parameters())
    for name, p in model.named_parameters():  # every generator's input layer, the body, D and both heads trained
        assert not torch.equal(before[name], p), name
    path = tmp_path / "model.ckpt"
    trainer.save_checkpoint(path)
    assert torch.load(path, weights_only=True)  # loads without pickled objects
    fresh = _conv_mgan_module()
    loaded = GANModule.load_from_checkpoint(path, generator=fresh.generator, discriminator=fresh.discriminator, loss=fresh.loss)
    for (name, a), b in zip(model.state_dict().items(), loaded.state_dict().values()):
        torch.testing.assert_close(a, b, msg=name)
    torch.testing.assert_close(loaded.generate(12, seed=1), model.generate(12, seed=1))


def test_stacked_digits_mgan_experiment_parses_with_matching_k_and_reloads_from_its_checkpoint(tmp_path):
    from gan_lightning.commands.sweep import resolve_fit_config

    path = ROOT / "experiments/dcgan_stacked_digits_mgan.yaml"
    model = resolve_fit_config(["--config", str(path)])["model"]
    assert model["generator"]["class_path"] == "gan_lightning.variants.mgan.MultiDCGANGenerator"
    assert model["discriminator"]["class_path"] == "gan_lightning.variants.mgan.MGANDCGANDiscriminator"
    ks = {model[part]["init_args"]["num_generators"] for part in ("generator", "discriminator", "loss")}
    assert ks == {10} and model["loss"]["init_args"]["beta"] == 0.01
    plain = resolve_fit_config(["--config", str(ROOT / "experiments/dcgan_stacked_digits.yaml")])
    mgan = resolve_fit_config(["--config", str(path)])
    for key in ("generator_optimizer", "discriminator_optimizer", "n_critic"):  # the same budget as the DCGAN
        assert mgan["model"][key] == plain["model"][key], key
    assert mgan["data"] == plain["data"] and mgan["trainer"]["max_steps"] == plain["trainer"]["max_steps"]
    for k in ("latent_dim", "image_size", "channels", "width"):
        assert model["generator"]["init_args"][k] == plain["model"]["generator"]["init_args"][k], k

    cli, loaded = _fit_and_reload(path, tmp_path, "--trainer.max_steps=1", "--data.init_args.num_samples=128",
                                  "--model.generator.init_args.width=8", "--model.discriminator.init_args.width=8")
    assert type(loaded.generator) is MultiDCGANGenerator and type(loaded.discriminator) is MGANDCGANDiscriminator
    assert repr(loaded.loss) == repr(cli.model.loss)
    torch.testing.assert_close(loaded.generate(20, seed=0, use_ema=False), cli.model.generate(20, seed=0, use_ema=False))


def test_diagnostics_read_the_adversarial_columns_only():
    from gan_lightning.variants.gman import MultiDiscriminatorLoss
    from gan_lightning.variants.mgan import MGANLoss
    from gan_lightning.losses import NonSaturatingLoss, available_losses

    real, fake = torch.randn(8, 5), torch.randn(8, 5)
    loss, r, f = MGANLoss(num_generators=4).diagnostic_scores(real, fake)
    assert isinstance(loss, NonSaturatingLoss) and torch.equal(r, real[:, 0]) and torch.equal(f, fake[:, 0])
    loss, r, f = MultiDiscriminatorLoss("lsgan").diagnostic_scores(real, fake)
    assert type(loss).__name__ == "LeastSquaresLoss" and torch.equal(r, real)
    assert {"gman", "mgan"} <= set(available_losses())  # registered on `import gan_lightning`
