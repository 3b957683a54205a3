"""Differentiable augmentation of everything the discriminator sees, and DiffAugment.

On a small dataset the discriminator memorises the training images and training degrades (Karras et al.
2020, "Training Generative Adversarial Networks with Limited Data"; Zhao et al. 2020, "Differentiable
Augmentation for Data-Efficient GAN Training"). Augmenting only the real images would teach the generator to
produce augmented images; augmenting real *and* generated images with one differentiable transform T, in
the discriminator update and in the generator update alike, trains D on T(real) vs T(fake) while G's
gradients flow back through T. ``GANModule(augment=...)`` does exactly that and nothing else: samples users
draw (``generate``, ``sample``, ``evaluate``, sample grids) never pass through T.

An :class:`Augmentation` is an ``nn.Module``, a submodule of the GANModule: its state (ADA's probability and
counters) is in the module's ``state_dict``, so checkpoints, exact resume and the mode-collapse monitor's
rollback carry it. Random draws use the global torch RNG, whose state the checkpoint also carries.
"""

from __future__ import annotations

from typing import Callable, Optional

import torch
from torch import Tensor, nn

from gan_lightning.errors import ConfigurationError
from gan_lightning.registry import Registry

AUGMENTATIONS = Registry(
    "augmentation",
    base=lambda: Augmentation,
    hint="or a class_path block, e.g. --model.augment=gan_lightning.tricks.augment.DiffAugment "
    "--model.augment.policy=color,translation.",
)


def register_augmentation(*names: str):
    """Class decorator that makes an augmentation selectable by short name (``--model.augment=NAME``)."""
    return AUGMENTATIONS.register(*names)


def available_augmentations() -> list[str]:
    """The main short name of every registered augmentation."""
    return AUGMENTATIONS.available()


def build_augmentation(spec: "Augmentation | str | None") -> Optional["Augmentation"]:
    """Turn a short name, a class name, a class path or an instance into an augmentation (None: no augmentation)."""
    if spec is None or (isinstance(spec, str) and spec.strip().lower() in ("", "none", "null")):
        return None
    return AUGMENTATIONS.build(spec)


class Augmentation(nn.Module):
    """Base class: ``forward(images)`` returns the augmented batch, differentiably, in the input's dtype.

    The module calls it on the real and on the fake batch of every discriminator update, and on the fake batch
    (and the real one, when the loss or unrolling needs D's real scores) of every generator update; each
    sample gets its own independent draw. ``observe`` sees D's scores on the augmented real batch after every
    discriminator update (ADA's overfitting heuristic reads them); ``scalars`` are logged on logging steps.
    """

    def observe(self, real_scores: Tensor) -> None:
        """Called after every discriminator update with D's (detached) scores on the augmented real batch."""

    def scalars(self) -> dict[str, Tensor | float]:
        """Values to log (for example ADA's p); tensors, read by the logger on logging steps only."""
        return {}

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_") and k != "training")


def check_images(augmentation: Augmentation, x: Tensor) -> None:
    """Augmentations work on image batches (N, C, H, W); say so clearly for anything else (e.g. 2D points)."""
    if x.dim() != 4:
        raise ConfigurationError(
            f"{type(augmentation).__name__} augments image batches (N, C, H, W), but the discriminator's input has shape "
            f"{tuple(x.shape)}; remove --model.augment for non-image data."
        )


def _uniform(n: int, low: float, high: float, like: Tensor) -> Tensor:
    """(n, 1, 1, 1) per-sample factors drawn uniformly from [low, high)."""
    return torch.rand(n, 1, 1, 1, device=like.device, dtype=like.dtype) * (high - low) + low


def _brightness(x: Tensor, aug: "DiffAugment") -> Tensor:
    return x + _uniform(x.shape[0], -0.5, 0.5, x)


def _saturation(x: Tensor, aug: "DiffAugment") -> Tensor:
    mean = x.mean(dim=1, keepdim=True)
    return (x - mean) * _uniform(x.shape[0], 0.0, 2.0, x) + mean


def _contrast(x: Tensor, aug: "DiffAugment") -> Tensor:
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * _uniform(x.shape[0], 0.5, 1.5, x) + mean


def _translation(x: Tensor, aug: "DiffAugment") -> Tensor:
    """Shift by a uniform integer in [-r*H, r*H] x [-r*W, r*W] pixels (r = 1/8); vacated pixels become 0."""
    n, c, h, w = x.shape
    max_y, max_x = int(h * aug.translation_ratio + 0.5), int(w * aug.translation_ratio + 0.5)
    dy = torch.randint(-max_y, max_y + 1, (n, 1, 1), device=x.device)
    dx = torch.randint(-max_x, max_x + 1, (n, 1, 1), device=x.device)
    rows = torch.arange(h, device=x.device).view(1, h, 1) + dy  # output pixel (i, j) reads input (i + dy, j + dx)
    cols = torch.arange(w, device=x.device).view(1, 1, w) + dx
    inside = ((rows >= 0) & (rows < h) & (cols >= 0) & (cols < w)).unsqueeze(1)
    source = rows.clamp(0, h - 1) * w + cols.clamp(0, w - 1)  # (n, h, w) flat indices
    moved = x.flatten(2).gather(2, source.flatten(1).unsqueeze(1).expand(n, c, h * w)).view(n, c, h, w)
    return moved * inside.to(x.dtype)


def _cutout(x: Tensor, aug: "DiffAugment") -> Tensor:
    """Zero a square of side r*H x r*W (r = 1/2) centred on a uniform pixel; it may stick out of the image."""
    n, _, h, w = x.shape
    size_y, size_x = int(h * aug.cutout_ratio + 0.5), int(w * aug.cutout_ratio + 0.5)
    # Centres as in the authors' code: an even side may be centred one pixel past the last row/column.
    top = torch.randint(0, h + (1 - size_y % 2), (n, 1, 1), device=x.device) - size_y // 2
    left = torch.randint(0, w + (1 - size_x % 2), (n, 1, 1), device=x.device) - size_x // 2
    rows = torch.arange(h, device=x.device).view(1, h, 1)
    cols = torch.arange(w, device=x.device).view(1, 1, w)
    hole = (rows >= top) & (rows < top + size_y) & (cols >= left) & (cols < left + size_x)
    return x * (~hole).unsqueeze(1).to(x.dtype)


_POLICIES: dict[str, tuple[Callable[[Tensor, "DiffAugment"], Tensor], ...]] = {
    "color": (_brightness, _saturation, _contrast),
    "translation": (_translation,),
    "cutout": (_cutout,),
}


@register_augmentation("diffaugment", "diffaug")
class DiffAugment(Augmentation):
    """DiffAugment (Zhao et al. 2020, "Differentiable Augmentation for Data-Efficient GAN Training", Sec. 3).

    ``policy`` is a comma-separated combination of, applied in the order given:

    - ``color``: brightness + U[-0.5, 0.5), saturation x U[0, 2), contrast x U[0.5, 1.5) (images in [-1, 1]);
    - ``translation``: an integer shift of up to ``translation_ratio`` (1/8) of the image size, zero padded;
    - ``cutout``: a zeroed square of ``cutout_ratio`` (1/2) of the image size at a uniform position.

    The default ``color,translation,cutout`` is what the authors recommend for small datasets (the
    repository's README, mit-han-lab/data-efficient-gans, "If your dataset is as small as ours (e.g., 100
    images), we recommend using the strongest Color + Translation + Cutout"); every sample gets its own draw.
    ``p`` < 1 augments each sample only with that probability (the paper always augments: p = 1).
    """

    def __init__(
        self,
        policy: str = "color,translation,cutout",
        translation_ratio: float = 0.125,
        cutout_ratio: float = 0.5,
        p: float = 1.0,
    ):
        super().__init__()
        names = [name.strip().lower() for name in policy.split(",") if name.strip()]
        unknown = [name for name in names if name not in _POLICIES]
        if unknown or not names:
            raise ConfigurationError(
                f"DiffAugment: unknown policy {policy!r}; use a comma-separated combination of {', '.join(_POLICIES)} "
                "(e.g. color,translation,cutout). To train without augmentation, leave --model.augment unset."
            )
        if not 0.0 <= translation_ratio < 1.0 or not 0.0 <= cutout_ratio <= 1.0:
            raise ConfigurationError(
                f"DiffAugment: translation_ratio must be in [0, 1) and cutout_ratio in [0, 1], got {translation_ratio} and {cutout_ratio}"
            )
        if not 0.0 <= p <= 1.0:
            raise ConfigurationError(f"DiffAugment: p must be in [0, 1], got {p}")
        self.policy = ",".join(names)
        self.translation_ratio, self.cutout_ratio, self.p = translation_ratio, cutout_ratio, p
        self._ops = [op for name in names for op in _POLICIES[name]]

    def forward(self, x: Tensor) -> Tensor:
        check_images(self, x)
        with torch.autocast(x.device.type, enabled=False):  # float32 transforms under mixed precision
            source = x.float()
            out = source
            for op in self._ops:
                out = op(out, self)
            if self.p < 1.0:
                chosen = torch.rand(x.shape[0], 1, 1, 1, device=x.device) < self.p
                out = torch.where(chosen, out, source)
        return out.to(x.dtype)
