"""PacGAN packing (Lin et al. 2018, "PacGAN: The power of two samples in generative adversarial networks").

The discriminator judges ``packing`` samples at once, all real or all generated. A pack drawn from a
generator that has dropped modes is less diverse than a real one, and the paper shows that this penalises
mode collapse more strongly; m = 2 already helps on their 2D mixtures and stacked MNIST.
"""

from __future__ import annotations

import math
from typing import Optional

from torch import Tensor, nn

from gan_lightning.errors import ConfigurationError

_INNER = "--model.discriminator.init_args.discriminator.init_args"


class PackedDiscriminator(nn.Module):
    """Scores packs of ``packing`` consecutive samples with the wrapped discriminator.

    Samples are concatenated along dim 1 as in the paper (channels for images, features for vectors):
    (N, C, ...) -> (N/m, m*C, ...) -> scores (N/m,); pack k holds samples k*m .. k*m + m - 1. The wrapped
    discriminator must therefore be built for m times the channels (``channels``) or values per sample
    (``input_dim``); both are checked on the first batch. Conditional discriminators are refused: a pack
    may mix classes, so there is no single label to condition on.
    """

    def __init__(self, discriminator: nn.Module, packing: int = 2):
        super().__init__()
        if not isinstance(packing, int) or isinstance(packing, bool) or packing < 1:
            raise ConfigurationError(
                f"PackedDiscriminator: packing must be a positive integer (2 in PacGAN), got {packing!r}; "
                "set --model.discriminator.init_args.packing."
            )
        if getattr(discriminator, "num_classes", 0):
            raise ConfigurationError(
                f"PackedDiscriminator cannot wrap a conditional discriminator (num_classes="
                f"{discriminator.num_classes}): a pack may hold samples of different classes. Set "
                f"{_INNER}.num_classes=0 or drop the packing."
            )
        self.discriminator = discriminator
        self.packing = packing
        self.num_classes = 0

    def extra_repr(self) -> str:
        return f"packing={self.packing}"

    def _check_inner(self, x: Tensor) -> None:
        m = self.packing
        channels = getattr(self.discriminator, "channels", None)
        if x.dim() > 2 and isinstance(channels, int) and channels != m * x.shape[1]:
            raise ConfigurationError(
                f"PackedDiscriminator with packing={m} feeds the inner discriminator {m} x {x.shape[1]} = "
                f"{m * x.shape[1]} channels, but it was built for {channels}; set {_INNER}.channels={m * x.shape[1]}."
            )
        input_dim = getattr(self.discriminator, "input_dim", None)
        per_sample = math.prod(x.shape[1:])
        if isinstance(input_dim, int) and input_dim != m * per_sample:
            raise ConfigurationError(
                f"PackedDiscriminator with packing={m} feeds the inner discriminator {m} x {per_sample} = "
                f"{m * per_sample} values per pack, but it was built for input_dim={input_dim}; set "
                f"{_INNER}.input_dim={m * per_sample}."
            )

    def forward(self, x: Tensor, labels: Optional[Tensor] = None) -> Tensor:
        n, m = x.shape[0], self.packing
        if n % m:
            raise ConfigurationError(
                f"PackedDiscriminator with packing={m} got a batch of {n} samples: the batch size must be a multiple "
                f"of the packing. Set --data.init_args.batch_size (the size of each discriminator batch, whatever "
                f"n_critic is) to a multiple of {m}; real and generated samples are packed separately."
            )
        self._check_inner(x)
        packed = x.reshape(n // m, m * x.shape[1], *x.shape[2:])
        return self.discriminator(packed).reshape(n // m)
