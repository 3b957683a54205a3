"""Building blocks shared by the reference networks.

* ``spectral_normalize``: spectral normalization (Miyato et al. 2018, "Spectral Normalization for Generative
  Adversarial Networks").
* ``MinibatchStdDev``: ProGAN's minibatch standard deviation (Karras et al. 2018, "Progressive Growing of GANs
  for Improved Quality, Stability, and Variation", Sec. 3).
* ``MinibatchDiscrimination``: Salimans et al. 2016, "Improved Techniques for Training GANs", Sec. 3.2.
* ``ConditionalBatchNorm2d``: class-conditional BatchNorm (de Vries et al. 2017, "Modulating early visual
  processing by language"), used in the generator of Miyato & Koyama 2018, "cGANs with Projection
  Discriminator".

Everything here avoids in-place operations so that gradient penalties (double backward) work through it.
"""

from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import spectral_norm

from gan_lightning.errors import ConfigurationError


_SPECTRAL_NORM_TYPES = (nn.Conv1d, nn.Conv2d, nn.ConvTranspose2d, nn.Linear, nn.Embedding)


def _has_spectral_norm(module: nn.Module) -> bool:
    if not parametrize.is_parametrized(module, "weight"):
        return False
    return any(type(p).__name__ == "_SpectralNorm" for p in module.parametrizations.weight)


def spectral_normalize(module: nn.Module, n_power_iterations: int = 1) -> nn.Module:
    """Spectrally normalise every Conv1d/Conv2d/ConvTranspose2d/Linear/Embedding weight in ``module``, in place.

    Each weight is divided by its largest singular value, estimated by power iteration (Miyato et al. 2018);
    the paper runs one iteration per training forward pass, reusing the vectors of the previous one, which
    is the default. Layers that already carry spectral norm are left alone, so calling this twice is safe.
    Modules with ``spectral_norm_exempt = True`` (the per-class gains of ``ConditionalBatchNorm2d``, which are
    not weights of a linear map) are skipped with their children. Returns ``module``.
    """
    if n_power_iterations < 1:
        raise ConfigurationError(f"spectral_normalize: n_power_iterations must be >= 1, got {n_power_iterations}")
    exempt: set[int] = set()
    for m in module.modules():
        if getattr(m, "spectral_norm_exempt", False):
            exempt.update(id(sub) for sub in m.modules())
    for m in list(module.modules()):
        if isinstance(m, _SPECTRAL_NORM_TYPES) and id(m) not in exempt and not _has_spectral_norm(m):
            spectral_norm(m, n_power_iterations=n_power_iterations)
    return module


def check_labels(owner: str, labels: Optional[Tensor], num_classes: int, batch_size: int) -> Tensor:
    """Validate class labels for a conditional network (Long tensor of shape (N,) with values in [0, num_classes)).

    The value range is checked only for CPU tensors: on an accelerator the check would synchronise every call.
    """
    if labels is None:
        raise ValueError(
            f"{owner} is conditional (num_classes={num_classes}) and requires class labels: call it as "
            f"{owner}(inputs, labels) with labels a LongTensor of shape (N,)."
        )
    if labels.dim() != 1 or labels.shape[0] != batch_size or labels.dtype != torch.long:
        raise ValueError(
            f"{owner} expects labels as a LongTensor of shape ({batch_size},), got {labels.dtype} of shape "
            f"{tuple(labels.shape)}."
        )
    if labels.device.type == "cpu" and labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        raise ValueError(
            f"{owner} has num_classes={num_classes} but got labels in [{int(labels.min())}, {int(labels.max())}]; "
            "set num_classes to the number of classes in the data."
        )
    return labels


def check_num_classes(owner: str, num_classes: int, option: str) -> int:
    if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 0:
        raise ConfigurationError(
            f"{owner}: num_classes must be 0 (unconditional) or the number of classes, got {num_classes!r}; "
            f"set {option}."
        )
    return num_classes


class MinibatchStdDev(nn.Module):
    """Append the average standard deviation across a group of samples as extra channels (Karras et al. 2018).

    A discriminator that sees batch statistics can notice when the generator's samples are too alike, which
    counters mode collapse. As in ProGAN, the batch is split into groups of ``group_size`` (here the largest
    divisor of N not above ``group_size``, so any batch size works; a batch of 1 gets zeros plus 1e-4); sample n
    belongs to group n mod (N / group_size), ProGAN's layout. Within a group the (biased) std of each feature
    and pixel is taken with eps 1e-8 inside the square root, averaged over features and pixels, and
    broadcast back as ``num_channels`` extra channels (the features are split into ``num_channels`` parts,
    StyleGAN's ``mbstd_num_features``). Accepts (N, C, H, W) images and (N, F) vectors; the statistics are
    computed in float32 even under autocast.
    """

    def __init__(self, group_size: int = 4, num_channels: int = 1):
        super().__init__()
        if group_size < 1 or num_channels < 1:
            raise ConfigurationError(
                f"MinibatchStdDev: group_size and num_channels must be >= 1, got {group_size} and {num_channels}"
            )
        self.group_size, self.num_channels = group_size, num_channels

    def extra_repr(self) -> str:
        return f"group_size={self.group_size}, num_channels={self.num_channels}"

    def forward(self, x: Tensor) -> Tensor:
        n, c = x.shape[0], x.shape[1]
        if c % self.num_channels:
            raise ConfigurationError(
                f"MinibatchStdDev with num_channels={self.num_channels} cannot split {c} features evenly; "
                "use a num_channels that divides the number of features."
            )
        g = max(d for d in range(1, min(self.group_size, n) + 1) if n % d == 0)
        spatial = x.shape[2:]
        y = x.float().reshape(g, n // g, self.num_channels, c // self.num_channels, *spatial)
        y = y - y.mean(dim=0)
        y = (y.square().mean(dim=0) + 1e-8).sqrt()  # (M, F, C/F, *spatial)
        y = y.mean(dim=tuple(range(2, y.dim())))  # (M, F)
        y = y.repeat(g, 1).to(x.dtype)  # row n is group n mod M
        y = y.reshape(n, self.num_channels, *([1] * len(spatial))).expand(n, self.num_channels, *spatial)
        return torch.cat([x, y], dim=1)


class MinibatchDiscrimination(nn.Module):
    """Minibatch discrimination (Salimans et al. 2016, Sec. 3.2): append per-sample closeness to the batch.

    With a learned tensor T, M_i = x_i T is reshaped to (num_kernels, kernel_dim); for each kernel b,
    c_b(x_i, x_j) = exp(-||M_i,b - M_j,b||_1) and o(x_i)_b = sum_j c_b(x_i, x_j). As in the paper's sum, j = i
    is included, so o_b ranges from 1 (x_i far from all others) to N (all samples identical). Output:
    concat([x, o]) of width in_features + num_kernels. T starts from N(0, 1 / in_features): each entry of
    M_i then has roughly the scale of one input feature whatever the width, so the initial L1 distances are
    O(kernel_dim) and exp(-d) is neither 0 nor 1 (a saturated exp passes no gradient). The paper's code
    used N(0, 0.05) on 192 features, the same order. The pairwise part runs in float32 even under autocast
    and costs O(N^2 * num_kernels * kernel_dim) memory.
    """

    def __init__(self, in_features: int, num_kernels: int = 100, kernel_dim: int = 5):
        super().__init__()
        if in_features < 1 or num_kernels < 1 or kernel_dim < 1:
            raise ConfigurationError(
                "MinibatchDiscrimination: in_features, num_kernels and kernel_dim must be >= 1, got "
                f"{in_features}, {num_kernels}, {kernel_dim}"
            )
        self.in_features, self.num_kernels, self.kernel_dim = in_features, num_kernels, kernel_dim
        self.T = nn.Parameter(torch.empty(in_features, num_kernels * kernel_dim))
        nn.init.normal_(self.T, 0.0, 1.0 / math.sqrt(in_features))

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, num_kernels={self.num_kernels}, kernel_dim={self.kernel_dim}"

    def forward(self, x: Tensor) -> Tensor:
        m = (x.float() @ self.T.float()).reshape(x.shape[0], self.num_kernels, self.kernel_dim)
        l1 = (m.unsqueeze(0) - m.unsqueeze(1)).abs().sum(dim=3)  # (N, N, B)
        o = torch.exp(-l1).sum(dim=1)  # (N, B), includes j = i
        return torch.cat([x, o.to(x.dtype)], dim=1)


class ConditionalBatchNorm2d(nn.Module):
    """BatchNorm2d whose gain and bias are looked up per class (de Vries et al. 2017; Miyato & Koyama 2018).

    The normalisation itself is shared (``affine=False``); the class embeddings start at gain 1 and bias 0
    so that at initialisation the layer equals an ordinary BatchNorm. The gains are exempt from
    ``spectral_normalize``: they scale features rather than map them, and normalising them would shrink the
    initial gain of 1.
    """

    spectral_norm_exempt = True

    def __init__(self, num_features: int, num_classes: int):
        super().__init__()
        if num_classes < 1:
            raise ConfigurationError(f"ConditionalBatchNorm2d needs num_classes >= 1, got {num_classes}")
        self.num_features, self.num_classes = num_features, num_classes
        self.bn = nn.BatchNorm2d(num_features, affine=False)
        self.gain = nn.Embedding(num_classes, num_features)
        self.bias = nn.Embedding(num_classes, num_features)
        nn.init.ones_(self.gain.weight)
        nn.init.zeros_(self.bias.weight)

    def forward(self, x: Tensor, labels: Tensor) -> Tensor:
        out = self.bn(x)
        gain = self.gain(labels).to(out.dtype)[:, :, None, None]
        bias = self.bias(labels).to(out.dtype)[:, :, None, None]
        return out * gain + bias


def build_minibatch_layer(owner: str, kind: str, in_features: int) -> tuple[Optional[nn.Module], int]:
    """Build the ``minibatch_layer`` option of a discriminator; returns the layer and how many features it adds."""
    if kind == "none":
        return None, 0
    if kind == "stddev":
        return MinibatchStdDev(), 1
    if kind == "discrimination":
        layer = MinibatchDiscrimination(in_features)
        return layer, layer.num_kernels
    raise ConfigurationError(
        f"{owner}: unknown minibatch_layer={kind!r}; choose one of 'none', 'stddev' (ProGAN's minibatch "
        "standard deviation) or 'discrimination' (Salimans et al. 2016), for example "
        "--model.discriminator.init_args.minibatch_layer=stddev."
    )


def one_hot(labels: Tensor, num_classes: int, dtype: torch.dtype) -> Tensor:
    """One-hot encoding used to condition networks by concatenation (Mirza & Osindero 2014)."""
    return F.one_hot(labels, num_classes).to(dtype)
