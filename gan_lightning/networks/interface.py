"""What the framework asks of any generator or discriminator: its ``num_classes``, and eval mode while sampling."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

from torch import nn


def num_classes_of(network: nn.Module) -> int:
    """The ``num_classes`` a conditional network declares; 0 for unconditional ones."""
    value = getattr(network, "num_classes", 0)
    return int(value) if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


@contextmanager
def eval_mode(network: nn.Module) -> Iterator[nn.Module]:
    """Run ``network`` in eval mode (BatchNorm statistics, no dropout) and restore its mode afterwards."""
    was_training = network.training
    network.eval()
    try:
        yield network
    finally:
        network.train(was_training)
