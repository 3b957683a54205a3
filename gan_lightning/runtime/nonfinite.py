"""Catching NaN/Inf in the losses without a host sync per step.

``stop`` (default): every step ORs ``~isfinite`` of each loss term into a device-side flag tensor and keeps
the step at which each term first went bad; the host reads the flags only every ``check_every`` generator
steps and before every checkpoint write, then stops with a message that names the network, the term and
the step. A checkpoint is never written from non-finite parameters.
``skip``: checks each loss before its optimizer step (one host sync per update), skips non-finite updates
and counts them; ``max_consecutive_skips`` skipped generator steps in a row stop the run.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

from gan_lightning.errors import GANLightningError

TERMS = ("discriminator adversarial loss", "discriminator regularization", "generator adversarial loss", "generator regularization")


class NonFiniteError(GANLightningError, FloatingPointError):
    """Training produced NaN or Inf."""


class NonFiniteGuard:
    def __init__(self, policy: Literal["stop", "skip"] = "stop", max_consecutive_skips: int = 20):
        if policy not in ("stop", "skip"):
            raise ValueError(f"nonfinite policy must be 'stop' or 'skip', got {policy!r}")
        self.policy = policy
        self.max_consecutive_skips = max_consecutive_skips
        self.skipped = {"discriminator": 0, "generator": 0}
        self._consecutive_g_skips = 0
        self._bad: Tensor | None = None
        self._first_step: Tensor | None = None

    # ----------------------------------------------------------------- "stop": flags on the device
    def record(self, step: int, d_adv: Tensor, d_reg: Tensor | float, g_adv: Tensor, g_reg: Tensor | float) -> None:
        terms = torch.stack([torch.as_tensor(t, device=d_adv.device, dtype=torch.float32).reshape(()) for t in (d_adv, d_reg, g_adv, g_reg)])
        bad = ~torch.isfinite(terms)
        if self._bad is None:
            self._bad = torch.zeros(4, dtype=torch.bool, device=bad.device)
            self._first_step = torch.full((4,), -1, dtype=torch.long, device=bad.device)
        new = bad & ~self._bad
        self._first_step = torch.where(new, torch.full_like(self._first_step, step), self._first_step)
        self._bad |= bad

    def check(self, step: int) -> None:
        """Host read of the flags (one sync); raises if any term went non-finite."""
        if self._bad is None or not bool(self._bad.any()):
            return
        first = self._first_step.tolist()
        bad = [f"{name} (first at generator step {s})" for name, s, b in zip(TERMS, first, self._bad.tolist()) if b]
        raise NonFiniteError(
            f"Non-finite values in training, detected at generator step {step}: {'; '.join(bad)}. "
            "Training stopped and no checkpoint was written from this state; resume from the last checkpoint with a "
            "lower learning rate, gradient clipping, a gradient penalty, or bf16-mixed instead of 16-mixed, or set "
            "--model.nonfinite=skip to skip such updates."
        )

    # ----------------------------------------------------------------- "skip": exact, one sync per update
    def should_skip(self, network: str, loss: Tensor) -> bool:
        if self.policy != "skip":
            return False
        skip = not bool(torch.isfinite(loss).all())
        if skip:
            self.skipped[network] += 1
        if network == "generator":
            self._consecutive_g_skips = self._consecutive_g_skips + 1 if skip else 0
            if self._consecutive_g_skips >= self.max_consecutive_skips:
                raise NonFiniteError(
                    f"{self._consecutive_g_skips} generator updates in a row had a non-finite loss "
                    f"({self.skipped['discriminator']} discriminator and {self.skipped['generator']} generator updates "
                    "skipped so far); the run cannot recover. Resume from the last checkpoint with a lower learning rate."
                )
        return skip


def assert_finite_parameters(module: nn.Module, step: int) -> None:
    """Refuse to checkpoint NaN/Inf weights (one sync; runs only when a checkpoint is written)."""
    flags = [torch.isfinite(p).all() for p in module.parameters()]
    if flags and not bool(torch.stack(flags).all()):
        names = [n for (n, p), ok in zip(module.named_parameters(), flags) if not bool(ok)]
        raise NonFiniteError(
            f"Refusing to write a checkpoint at generator step {step}: parameters {', '.join(names[:5])}"
            f"{' ...' if len(names) > 5 else ''} contain NaN/Inf. Resume from the previous checkpoint."
        )
