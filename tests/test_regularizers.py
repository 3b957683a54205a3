import pytest
import torch

from gan_lightning.regularizers import GradientPenalty, RegularizerContext, input_gradients


class LinearCritic(torch.nn.Module):
    """D(x) = <w, x>: its input gradient is w everywhere, so the penalty is (||w|| - 1)^2 exactly."""

    def __init__(self, w: torch.Tensor):
        super().__init__()
        self.w = torch.nn.Parameter(w)

    def forward(self, x):
        return (x.flatten(1) * self.w.flatten()).sum(1)


def _ctx(critic, real, fake, scale=None):
    return RegularizerContext(critic, torch.nn.Identity(), real, fake, torch.zeros(len(real), 1), grad_scale=scale)


@pytest.mark.parametrize("norm", [0.5, 1.0, 3.0])
def test_gradient_penalty_matches_closed_form(norm):
    w = torch.zeros(2, 4, 4)
    w[0, 0, 0] = norm
    critic = LinearCritic(w)
    real, fake = torch.randn(8, 2, 4, 4), torch.randn(8, 2, 4, 4)
    gp = GradientPenalty(weight=10.0)
    assert gp.penalty(_ctx(critic, real, fake)).item() == pytest.approx((norm - 1) ** 2, abs=1e-6)
    assert gp(_ctx(critic, real, fake)).item() == pytest.approx(10 * (norm - 1) ** 2, abs=1e-5)
    one_sided = GradientPenalty(one_sided=True).penalty(_ctx(critic, real, fake)).item()
    assert one_sided == pytest.approx(max(0.0, norm - 1) ** 2, abs=1e-6)


def test_gradient_penalty_reaches_critic_parameters():
    critic = LinearCritic(torch.full((3,), 2.0))
    GradientPenalty().penalty(_ctx(critic, torch.randn(4, 3), torch.randn(4, 3))).backward()
    # d/dw (||w|| - 1)^2 = 2 (||w|| - 1) w / ||w||, nonzero
    assert critic.w.grad is not None and critic.w.grad.abs().sum() > 0


def test_scaled_input_gradients_equal_unscaled():
    x = torch.randn(5, 3, requires_grad=True)
    y = (x**2).sum(1)
    plain = input_gradients(y, x)
    scaled = input_gradients((x**2).sum(1), x, grad_scale=torch.tensor(65536.0))
    torch.testing.assert_close(plain, 2 * x.detach())
    torch.testing.assert_close(scaled, plain)


def test_lazy_regularization_weight_and_schedule():
    gp = GradientPenalty(weight=10.0, every=4)
    assert [s for s in range(10) if gp.is_due(s)] == [0, 4, 8]
    critic = LinearCritic(torch.tensor([2.0, 0.0]))
    value = gp(_ctx(critic, torch.randn(4, 2), torch.randn(4, 2))).item()
    assert value == pytest.approx(10.0 * 4 * 1.0, rel=1e-5)


# ---------------------------------------------------------------- DRAGAN, R1, R2, mode seeking
from gan_lightning.regularizers import DRAGANPenalty, ModeSeekingRegularizer, R1Penalty, R2Penalty  # noqa: E402


@pytest.mark.parametrize("cls, batch", [(R1Penalty, "real"), (R2Penalty, "fake")])
def test_r1_r2_equal_gamma_half_squared_gradient_norm(cls, batch):
    w = torch.tensor([3.0, 4.0])  # ||grad D|| = 5 everywhere
    critic = LinearCritic(w)
    real, fake = torch.randn(6, 2), torch.randn(6, 2)
    reg = cls(gamma=10.0)
    assert reg.input_gradient_of == batch
    assert reg(_ctx(critic, real, fake)).item() == pytest.approx(10.0 / 2 * 25.0, rel=1e-6)
    # The module's path: the batch already requires grad and its scores come from the update's own forward.
    x = (real if batch == "real" else fake).clone().requires_grad_(True)
    scores = critic(x)
    ctx = _ctx(critic, x if batch == "real" else real, x if batch == "fake" else fake)
    setattr(ctx, f"{batch}_scores", scores)
    assert reg(ctx).item() == pytest.approx(125.0, rel=1e-6)


def test_r1_reuses_the_given_scores_instead_of_a_second_forward():
    calls = []

    class Counting(LinearCritic):
        def forward(self, x):
            calls.append(1)
            return super().forward(x)

    critic = Counting(torch.tensor([1.0, 0.0]))
    real = torch.randn(4, 2, requires_grad=True)
    ctx = _ctx(critic, real, torch.randn(4, 2))
    ctx.real_scores = critic(real)
    R1Penalty()(ctx)
    assert len(calls) == 1


def test_r1_lazy_weight_is_scaled_by_the_interval():
    critic = LinearCritic(torch.tensor([1.0, 0.0]))
    value = R1Penalty(gamma=10.0, every=16)(_ctx(critic, torch.randn(4, 2), torch.randn(4, 2))).item()
    assert value == pytest.approx(10.0 / 2 * 16, rel=1e-6)


def test_dragan_penalises_unit_norm_deviation_near_real_data():
    w = torch.tensor([0.0, 2.0])
    seen = []

    class Recording(LinearCritic):
        def forward(self, x):
            seen.append(x.detach().clone())
            return super().forward(x)

    torch.manual_seed(0)
    real = torch.randn(256, 2)
    value = DRAGANPenalty(weight=10.0).penalty(_ctx(Recording(w), real, torch.randn(256, 2)))
    assert value.item() == pytest.approx((2.0 - 1.0) ** 2, abs=1e-6)
    delta = seen[0] - real  # alpha * 0.5 * std(x) * U[0, 1): inside [0, 0.5 std) element-wise
    assert (delta >= 0).all() and (delta < 0.5 * real.std()).all() and delta.mean() > 0


def test_mode_seeking_is_the_inverse_of_the_distance_ratio():
    z = torch.randn(8, 3)
    fake = (3.0 * z).requires_grad_(True)  # distances in sample space are 3x those in latent space
    ctx = RegularizerContext(torch.nn.Identity(), torch.nn.Identity(), torch.randn(8, 3), fake, z)
    reg = ModeSeekingRegularizer()
    assert reg.phase == "generator"
    assert reg(ctx).item() == pytest.approx(1 / (3.0 + 1e-5), rel=1e-5)
    collapsed = RegularizerContext(torch.nn.Identity(), torch.nn.Identity(), fake, torch.zeros(8, 3), z)
    assert reg(collapsed).item() > 1e4  # all samples equal: the penalty explodes


@pytest.mark.parametrize("reg", [R1Penalty(), R2Penalty(), DRAGANPenalty(), ModeSeekingRegularizer(), GradientPenalty(one_sided=True)])
def test_every_regularizer_trains_inside_the_module(reg):
    from conftest import quiet_trainer, tiny_gan, tiny_ring

    model = tiny_gan(regularizers=[reg])
    trainer = quiet_trainer(max_steps=3)
    trainer.fit(model, tiny_ring())
    assert trainer.global_step == 3
    assert all(torch.isfinite(p).all() for p in model.parameters())
