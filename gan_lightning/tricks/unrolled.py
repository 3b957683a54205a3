"""Unrolled GAN (Metz et al. 2017, "Unrolled Generative Adversarial Networks").

The generator is trained against the discriminator as it will be after ``k`` more updates, and the
gradient flows through those updates: G is penalised for moves that D's next steps would punish,
which is what stops it from hopping between modes. The unrolled parameters are functional copies
(``torch.func.functional_call``): the real discriminator, its buffers and its optimizer are untouched.

The updates imitate the discriminator's own optimizer: Adam/AdamW (the paper unrolls Adam) continue from
its current moments and step count, with each param group's learning rate and weight decay; any other
optimizer is unrolled as plain SGD with its learning rate and weight decay (no momentum); amsgrad and
maximize, which the unroll cannot imitate, are refused. Unrolled steps use the adversarial loss only (regularizers and weight clipping are left out) and
run in float32 with autocast off: second-order terms in float16 would overflow or underflow.
"""

from __future__ import annotations

from typing import Callable, Optional

import torch
from torch import Tensor, nn
from torch.func import functional_call
from torch.optim import Optimizer

from gan_lightning.errors import ConfigurationError
from gan_lightning.losses import AdversarialLoss

Scorer = Callable[[Tensor, Optional[Tensor]], Tensor]


class _UnrolledUpdate:
    """Differentiable copy of one optimizer's update rule for the discriminator's parameters.

    Per parameter, the learning rate and weight decay of its own param group: L2 (added to the gradient) for Adam
    and SGD, decoupled (weights shrunk by lr x decay) for AdamW, as in torch.optim.
    """

    def __init__(self, optimizer: Optimizer, names: list[str], params: list[nn.Parameter], lr: Optional[float]):
        self.adam = isinstance(optimizer, (torch.optim.Adam, torch.optim.AdamW))
        # AdamW, or Adam(decoupled_weight_decay=True) in recent PyTorch: the same update
        self.decoupled = isinstance(optimizer, torch.optim.AdamW) or bool(
            optimizer.param_groups[0].get("decoupled_weight_decay", False))
        group_of = {id(p): group for group in optimizer.param_groups for p in group["params"]}
        self.lr: dict[str, float] = {}
        self.weight_decay: dict[str, float] = {}
        self.moments = {}
        for name, p in zip(names, params):
            group = group_of.get(id(p), optimizer.param_groups[0])
            for option in ("amsgrad", "maximize"):
                if group.get(option):
                    raise ConfigurationError(
                        f"unrolled_steps cannot imitate the discriminator optimizer's {option}=True; switch it off or "
                        "set --model.unrolled_steps=0."
                    )
            self.lr[name] = lr if lr is not None else group["lr"]
            self.weight_decay[name] = group.get("weight_decay", 0.0)
            if self.adam:
                self.beta1, self.beta2 = group["betas"]
                self.eps = group["eps"]
                state = optimizer.state.get(p, {})
                if "exp_avg" in state:
                    step = state["step"]  # a tensor in recent PyTorch: kept as one, so no host sync
                    step = step.detach().clone() if isinstance(step, Tensor) else float(step)
                    self.moments[name] = (state["exp_avg"].detach().float(), state["exp_avg_sq"].detach().float(), step)
                else:
                    self.moments[name] = (torch.zeros_like(p, dtype=torch.float32),
                                          torch.zeros_like(p, dtype=torch.float32), 0.0)

    def __call__(self, params: dict[str, Tensor], grads: dict[str, Tensor]) -> dict[str, Tensor]:
        updated = {}
        for name, p in params.items():
            lr, decay, g = self.lr[name], self.weight_decay[name], grads[name]
            if decay and self.decoupled:
                p = p * (1 - lr * decay)
            elif decay:
                g = g + decay * p
            if not self.adam:
                updated[name] = p - lr * g
                continue
            m, v, step = self.moments[name]
            m = self.beta1 * m + (1 - self.beta1) * g
            v = self.beta2 * v + (1 - self.beta2) * g * g
            step = step + 1
            m_hat = m / (1 - self.beta1**step)
            v_hat = v / (1 - self.beta2**step)
            # eps inside the square root: d sqrt(v)/dv is infinite at v = 0, which would make G's gradient NaN
            updated[name] = p - lr * m_hat / (v_hat + self.eps**2).sqrt()
            self.moments[name] = (m, v, step)
        return updated


def unrolled_scorer(
    discriminator: nn.Module,
    optimizer: Optimizer,
    loss: AdversarialLoss,
    real: Tensor,
    fake: Tensor,
    steps: int,
    lr: Optional[float] = None,
    real_labels: Optional[Tensor] = None,
    fake_labels: Optional[Tensor] = None,
) -> Scorer:
    """A function ``(x, labels) -> scores`` of the discriminator after ``steps`` differentiable updates.

    ``fake`` must carry the generator's graph: each unrolled parameter is then a function of G's weights.
    Buffers are cloned, so BatchNorm statistics and spectral-norm vectors of the real D do not move.
    """
    named = [(n, p) for n, p in discriminator.named_parameters()]
    names = [n for n, _ in named]
    # float32 copies (also under 16-true / bf16-true): second-order terms in half precision overflow or underflow
    params = {n: p.detach().float().requires_grad_(True) for n, p in named}
    buffers = {n: b.clone().float() if b.is_floating_point() else b.clone() for n, b in discriminator.named_buffers()}
    update = _UnrolledUpdate(optimizer, names, [p for _, p in named], lr)

    def score(current: dict[str, Tensor], x: Tensor, labels: Optional[Tensor]) -> Tensor:
        x = x.float() if x.is_floating_point() else x
        args = (x,) if labels is None else (x, labels)
        return functional_call(discriminator, {**current, **buffers}, args)

    with torch.autocast(real.device.type, enabled=False):
        real32, fake32 = real.float(), fake.float()
        for _ in range(steps):
            d_loss = loss.discriminator_loss(score(params, real32, real_labels), score(params, fake32, fake_labels))
            grads = torch.autograd.grad(d_loss, list(params.values()), create_graph=True, allow_unused=True)
            grads_by_name = {n: torch.zeros_like(p) if g is None else g for (n, p), g in zip(params.items(), grads)}
            params = update(params, grads_by_name)

    final = params
    return lambda x, labels=None: score(final, x, labels)
