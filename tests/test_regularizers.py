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
