"""The SNGAN ResNet (Miyato et al. 2018, "Spectral Normalization for Generative Adversarial Networks",
Appendix B, Table 4 and Fig. 8), with the projection discriminator and conditional BatchNorm of Miyato &
Koyama 2018, "cGANs with Projection Discriminator", for class-conditional training.

At the defaults these are the 32x32 CIFAR-10 networks (also Mimicry's SNGAN-32 baseline, Lee & Town 2020):
G maps z (128) through a linear layer to 4x4x256 and three up-sampling residual blocks to 32x32; D has an
"optimized" first block, one down-sampling block to 8x8 and two blocks without resampling, all 128 wide,
then ReLU, global sum pooling and a linear score. Weights start Xavier-uniform with gain sqrt(2) in the
residual convolutions and 1 elsewhere, as in the authors' and Mimicry's code. Other sizes (8 to 256) add or
remove resampling blocks and keep the width constant.
"""

from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gan_lightning.errors import ConfigurationError
from gan_lightning.networks.layers import ConditionalBatchNorm2d, check_labels, check_num_classes, spectral_normalize

_MIN_SIZE, _MAX_SIZE = 8, 256


def _num_resamplings(cls_name: str, image_size: int, option: str) -> int:
    n = int(round(math.log2(image_size))) if image_size > 0 else 0
    if image_size < _MIN_SIZE or image_size > _MAX_SIZE or 2**n != image_size:
        raise ConfigurationError(
            f"{cls_name} cannot handle image_size={image_size}: the SNGAN ResNet doubles/halves the resolution "
            f"between 4x4 and the image, so the size must be 4 * 2**k between {_MIN_SIZE} and {_MAX_SIZE} "
            f"(8, 16, 32, 64, 128 or 256). Set {option} and resize the data to match "
            "(for example --data.init_args.image_size=32)."
        )
    return n - 2


def _xavier(module: nn.Module, gain: float) -> None:
    nn.init.xavier_uniform_(module.weight, gain)
    if getattr(module, "bias", None) is not None:
        nn.init.zeros_(module.bias)


class _Norm(nn.Module):
    """BatchNorm2d, or ConditionalBatchNorm2d when the generator is conditional."""

    def __init__(self, num_features: int, num_classes: int):
        super().__init__()
        self.norm = ConditionalBatchNorm2d(num_features, num_classes) if num_classes else nn.BatchNorm2d(num_features)

    def forward(self, x: Tensor, labels: Optional[Tensor]) -> Tensor:
        return self.norm(x, labels) if isinstance(self.norm, ConditionalBatchNorm2d) else self.norm(x)


class GeneratorBlock(nn.Module):
    """Up-sampling residual block: BN-ReLU-upsample-conv3x3-BN-ReLU-conv3x3, shortcut upsample-conv1x1."""

    def __init__(self, in_channels: int, out_channels: int, num_classes: int = 0):
        super().__init__()
        self.bn1 = _Norm(in_channels, num_classes)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, 1, 1)
        self.bn2 = _Norm(out_channels, num_classes)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1)
        self.shortcut = nn.Conv2d(in_channels, out_channels, 1, 1, 0)
        _xavier(self.conv1, math.sqrt(2))
        _xavier(self.conv2, math.sqrt(2))
        _xavier(self.shortcut, 1.0)

    def forward(self, x: Tensor, labels: Optional[Tensor] = None) -> Tensor:
        h = F.relu(self.bn1(x, labels))
        h = self.conv1(F.interpolate(h, scale_factor=2, mode="nearest"))
        h = self.conv2(F.relu(self.bn2(h, labels)))
        return h + self.shortcut(F.interpolate(x, scale_factor=2, mode="nearest"))


class DiscriminatorBlock(nn.Module):
    """Residual block: ReLU-conv3x3-ReLU-conv3x3 (then avgpool when down-sampling).

    The shortcut is conv1x1 then avgpool when the block down-samples or changes the width, else identity.
    ReLUs are not in place: the block input also feeds the shortcut, and gradient penalties need it intact.
    """

    def __init__(self, in_channels: int, out_channels: int, downsample: bool):
        super().__init__()
        self.downsample = downsample
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, 1, 1)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1)
        _xavier(self.conv1, math.sqrt(2))
        _xavier(self.conv2, math.sqrt(2))
        self.shortcut: Optional[nn.Conv2d] = None
        if downsample or in_channels != out_channels:
            self.shortcut = nn.Conv2d(in_channels, out_channels, 1, 1, 0)
            _xavier(self.shortcut, 1.0)

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv2(F.relu(self.conv1(F.relu(x))))
        s = x if self.shortcut is None else self.shortcut(x)
        if self.downsample:
            h, s = F.avg_pool2d(h, 2), F.avg_pool2d(s, 2)
        return h + s


class OptimizedDiscriminatorBlock(nn.Module):
    """First D block: conv3x3-ReLU-conv3x3-avgpool, shortcut avgpool-conv1x1 (no ReLU on the raw image)."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, 1, 1)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1)
        self.shortcut = nn.Conv2d(in_channels, out_channels, 1, 1, 0)
        _xavier(self.conv1, math.sqrt(2))
        _xavier(self.conv2, math.sqrt(2))
        _xavier(self.shortcut, 1.0)

    def forward(self, x: Tensor) -> Tensor:
        h = F.avg_pool2d(self.conv2(F.relu(self.conv1(x))), 2)
        return h + self.shortcut(F.avg_pool2d(x, 2))


class SNGANResNetGenerator(nn.Module):
    """Latent (N, latent_dim) -> images (N, channels, image_size, image_size) in [-1, 1].

    With ``num_classes`` > 0 every BatchNorm becomes a ConditionalBatchNorm2d and ``forward(z, labels)``
    needs labels (Miyato & Koyama 2018). SNGAN leaves G unnormalised; ``spectral_norm=True`` normalises its
    convolutions and linear layer too (not the class gains).
    """

    def __init__(
        self,
        latent_dim: int = 128,
        channels: int = 3,
        width: int = 256,
        image_size: int = 32,
        num_classes: int = 0,
        spectral_norm: bool = False,
    ):
        super().__init__()
        name = type(self).__name__
        doublings = _num_resamplings(name, image_size, "--model.generator.init_args.image_size")
        self.num_classes = check_num_classes(name, num_classes, "--model.generator.init_args.num_classes")
        self.latent_dim, self.channels, self.width, self.image_size = latent_dim, channels, width, image_size
        self.linear = nn.Linear(latent_dim, 4 * 4 * width)
        self.blocks = nn.ModuleList(GeneratorBlock(width, width, num_classes) for _ in range(doublings))
        self.bn = _Norm(width, num_classes)
        self.conv = nn.Conv2d(width, channels, 3, 1, 1)
        _xavier(self.linear, 1.0)
        _xavier(self.conv, 1.0)
        if spectral_norm:
            spectral_normalize(self)

    def forward(self, z: Tensor, labels: Optional[Tensor] = None) -> Tensor:
        z = z.reshape(z.shape[0], self.latent_dim)
        if self.num_classes:
            labels = check_labels(type(self).__name__, labels, self.num_classes, z.shape[0])
        else:
            labels = None
        h = self.linear(z).view(z.shape[0], self.width, 4, 4)
        for block in self.blocks:
            h = block(h, labels)
        return torch.tanh(self.conv(F.relu(self.bn(h, labels))))


class SNGANResNetDiscriminator(nn.Module):
    """Images -> one raw score per image; with ``num_classes`` > 0 a projection discriminator.

    The projection discriminator (Miyato & Koyama 2018) adds <embed(y), h> to the linear score, where h is
    the sum-pooled feature vector; the class embedding is spectrally normalised along with the other layers
    when ``spectral_norm`` is on (the default, as in SNGAN).
    """

    def __init__(
        self,
        channels: int = 3,
        width: int = 128,
        image_size: int = 32,
        num_classes: int = 0,
        spectral_norm: bool = True,
    ):
        super().__init__()
        name = type(self).__name__
        _num_resamplings(name, image_size, "--model.discriminator.init_args.image_size")
        self.num_classes = check_num_classes(name, num_classes, "--model.discriminator.init_args.num_classes")
        self.channels, self.width, self.image_size = channels, width, image_size
        blocks: list[nn.Module] = [OptimizedDiscriminatorBlock(channels, width)]
        size = image_size // 2
        while size > 8:
            blocks.append(DiscriminatorBlock(width, width, downsample=True))
            size //= 2
        blocks += [DiscriminatorBlock(width, width, downsample=False) for _ in range(2)]
        self.blocks = nn.Sequential(*blocks)
        self.linear = nn.Linear(width, 1)
        _xavier(self.linear, 1.0)
        self.embedding: Optional[nn.Embedding] = None
        if num_classes:
            self.embedding = nn.Embedding(num_classes, width)
            nn.init.xavier_uniform_(self.embedding.weight, 1.0)
        if spectral_norm:
            spectral_normalize(self)

    def features(self, x: Tensor) -> Tensor:
        """The sum-pooled features h of shape (N, width) that the score and the projection use."""
        return F.relu(self.blocks(x)).sum(dim=(2, 3))

    def forward(self, x: Tensor, labels: Optional[Tensor] = None) -> Tensor:
        if x.dim() != 4 or tuple(x.shape[1:]) != (self.channels, self.image_size, self.image_size):
            raise ConfigurationError(
                f"SNGANResNetDiscriminator expects images of shape ({self.channels}, {self.image_size}, "
                f"{self.image_size}) but got {tuple(x.shape[1:])}; set --model.discriminator.init_args.channels "
                "and --model.discriminator.init_args.image_size to match the data."
            )
        h = self.features(x)
        score = self.linear(h).squeeze(1)
        if self.embedding is not None:
            labels = check_labels(type(self).__name__, labels, self.num_classes, x.shape[0])
            score = score + (self.embedding(labels).to(h.dtype) * h).sum(dim=1)
        return score
