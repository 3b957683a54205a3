"""ADA: StyleGAN2-ADA's augmentation pipeline with a fixed or adaptive probability p.

Karras et al. 2020, "Training Generative Adversarial Networks with Limited Data". Every transform of the
chosen groups is applied to each sample independently with probability p (Sec. 2.3), so at p < 0.8 or so the
augmentations stay "non-leaking": D cannot tell an augmented distribution from the clean one, and G learns
clean images. Groups (the ``bgc`` pipeline of the paper, Appendix B):

- ``b`` (pixel blitting): x-flip, 90-degree rotations, integer translation;
- ``g`` (general geometric): isotropic scaling, arbitrary rotation, anisotropic scaling, fractional translation;
- ``c`` (colour): brightness, contrast, luma flip, hue rotation, saturation.

The geometric transforms of a sample compose into one affine matrix, executed by one ``F.grid_sample`` with
reflection padding; the colour transforms compose into one 4x4 colour matrix (StyleGAN2-ADA's
``training/augment.py`` also upsamples 2x with a wavelet filter around the resampling to limit aliasing; this
pipeline resamples bilinearly at the image's own resolution). Strengths are the paper's (Appendix B.2 and
``AugmentPipe``'s defaults). A sample no transform was chosen for is returned bit for bit.

Adaptive p (Sec. 3): after every ``interval`` discriminator updates (paper: 4), the overfitting heuristic
r_t = E[sign(D(augmented real))] over those updates moves p by sign(r_t - target) * (real images seen) /
``speed_images`` (paper: target 0.6; 500k images for p to go from 0 to 1), clamped to [0, 1]. The signs are
summed in device tensors (no host sync per step) and, under DDP, summed over all ranks before each update,
so every rank uses the same p. The heuristic assumes D's scores change sign at the real/fake boundary (logits
of the BCE losses, hinge); with LSGAN's 0/1 targets or an unanchored WGAN critic, fix p instead (``target: null``).
"""

from __future__ import annotations

import math
from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from gan_lightning.errors import ConfigurationError
from gan_lightning.tricks.augment import Augmentation, check_images, register_augmentation

_GROUPS = "bgc"


def _matrices(*rows: list[Any], like: Tensor) -> Tensor:
    """A batch of matrices (N, r, c) from rows of per-sample tensors (N,) and Python numbers."""
    n = like.shape[0]
    entries = [e if isinstance(e, Tensor) else like.new_full((n,), float(e)) for row in rows for e in row]
    return torch.stack(entries, dim=1).view(n, len(rows), len(rows[0]))


def _translate2(tx: Tensor, ty: Tensor) -> Tensor:
    return _matrices([1, 0, tx], [0, 1, ty], [0, 0, 1], like=tx)


def _scale2(sx: Tensor, sy: Tensor) -> Tensor:
    return _matrices([sx, 0, 0], [0, sy, 0], [0, 0, 1], like=sx)


def _rotate2(theta: Tensor) -> Tensor:
    c, s = torch.cos(theta), torch.sin(theta)
    return _matrices([c, -s, 0], [s, c, 0], [0, 0, 1], like=theta)


def _translate3(t: Tensor) -> Tensor:
    return _matrices([1, 0, 0, t], [0, 1, 0, t], [0, 0, 1, t], [0, 0, 0, 1], like=t)


def _scale3(s: Tensor) -> Tensor:
    return _matrices([s, 0, 0, 0], [0, s, 0, 0], [0, 0, s, 0], [0, 0, 0, 1], like=s)


def _rotate3(axis: tuple[float, float, float], theta: Tensor) -> Tensor:
    """Rotation by theta around the unit vector ``axis`` (Rodrigues), as a homogeneous 4x4 matrix."""
    x, y, z = axis
    c, s = torch.cos(theta), torch.sin(theta)
    k = 1 - c
    return _matrices(
        [x * x * k + c, x * y * k - z * s, x * z * k + y * s, 0],
        [y * x * k + z * s, y * y * k + c, y * z * k - x * s, 0],
        [z * x * k - y * s, z * y * k + x * s, z * z * k + c, 0],
        [0, 0, 0, 1],
        like=theta,
    )


@register_augmentation("ada")
class ADA(Augmentation):
    """StyleGAN2-ADA's augmentation pipeline (Karras et al. 2020) with one probability p; see the module docstring.

    Args:
        p: the probability every transform is applied with: the fixed value, or the starting value of adaptive p
            (the paper starts at 0).
        target: r_t target of adaptive p (paper: 0.6); ``null`` keeps p fixed.
        interval: discriminator updates between two adjustments of p (paper: 4).
        speed_images: real images over which p may go from 0 to 1 (paper: 500k).
        transforms: groups of the pipeline, any of ``b`` (blit), ``g`` (geometric), ``c`` (colour); paper: ``bgc``.
        xint_max: integer translation, uniform in +-xint_max of the image size (0.125).
        scale_std: isotropic scaling, log2-normal with this std (0.2).
        rotate_max: arbitrary rotation, uniform in +-rotate_max of a half turn (1: any angle).
        aniso_std: anisotropic scaling, log2-normal std (0.2).
        xfrac_std: fractional translation, normal std relative to the image size (0.125).
        brightness_std: brightness offset, normal std (0.2, for images in [-1, 1]).
        contrast_std: contrast, log2-normal std (0.5).
        hue_max: hue rotation around the luma axis, uniform in +-hue_max of a half turn (1).
        saturation_std: saturation, log2-normal std (1).
    """

    def __init__(
        self,
        p: float = 0.0,
        target: Optional[float] = 0.6,
        interval: int = 4,
        speed_images: int = 500_000,
        transforms: str = "bgc",
        xint_max: float = 0.125,
        scale_std: float = 0.2,
        rotate_max: float = 1.0,
        aniso_std: float = 0.2,
        xfrac_std: float = 0.125,
        brightness_std: float = 0.2,
        contrast_std: float = 0.5,
        hue_max: float = 1.0,
        saturation_std: float = 1.0,
    ):
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ConfigurationError(f"ADA: p must be in [0, 1], got {p}")
        if target is not None and not -1.0 < target < 1.0:
            raise ConfigurationError(f"ADA: target must be in (-1, 1) (E[sign(D(real))]; the paper uses 0.6) or null, got {target}")
        if interval < 1 or speed_images < 1:
            raise ConfigurationError(f"ADA: interval and speed_images must be >= 1, got {interval} and {speed_images}")
        groups = transforms.strip().lower()
        if not groups or any(g not in _GROUPS for g in groups) or len(set(groups)) != len(groups):
            raise ConfigurationError(
                f"ADA: transforms must be a combination of the letters b (blit), g (geometric), c (colour), e.g. bgc; got {transforms!r}"
            )
        strengths = dict(xint_max=xint_max, scale_std=scale_std, rotate_max=rotate_max, aniso_std=aniso_std,
                         xfrac_std=xfrac_std, brightness_std=brightness_std, contrast_std=contrast_std,
                         hue_max=hue_max, saturation_std=saturation_std)
        negative = [name for name, value in strengths.items() if value < 0]
        if negative:
            raise ConfigurationError(f"ADA: {', '.join(negative)} must be >= 0")
        self.target, self.interval, self.speed_images = target, interval, speed_images
        self.transforms = "".join(g for g in _GROUPS if g in groups)
        for name, value in strengths.items():
            setattr(self, name, float(value))
        self.register_buffer("p", torch.tensor(float(p)))
        # Adaptive state: sums of sign(D(real)) since the last adjustment, the scores and images they cover, the
        # discriminator updates observed, and the last r_t. Integers, so they are exact and survive dtype casts.
        self.register_buffer("sign_sum", torch.zeros((), dtype=torch.int64))
        self.register_buffer("score_count", torch.zeros((), dtype=torch.int64))
        self.register_buffer("image_count", torch.zeros((), dtype=torch.int64))
        self.register_buffer("updates", torch.zeros((), dtype=torch.int64))
        self.register_buffer("last_rt", torch.zeros(()))
        self._updates = 0  # host copy of ``updates``: decides when to adjust without reading the device

    @property
    def adaptive(self) -> bool:
        return self.target is not None

    # ------------------------------------------------------------------ the pipeline
    def forward(self, x: Tensor) -> Tensor:
        check_images(self, x)
        if "c" in self.transforms and x.shape[1] not in (1, 3):
            raise ConfigurationError(
                f"ADA's colour transforms need grayscale or RGB images, got {x.shape[1]} channels; use transforms: bg."
            )
        with torch.autocast(x.device.type, enabled=False):  # float32 transforms under mixed precision
            out = x.float()
            if "b" in self.transforms or "g" in self.transforms:
                out = self._geometric(out)
            if "c" in self.transforms:
                out = self._colour(out)
        return out.to(x.dtype)

    def _chosen(self, matrix: Tensor, probability: Tensor) -> Tensor:
        """Each sample's matrix with the given probability, else the exact identity."""
        keep = torch.rand(matrix.shape[0], 1, 1, device=matrix.device) < probability
        return torch.where(keep, matrix, torch.eye(matrix.shape[1], device=matrix.device))

    def _geometric(self, x: Tensor) -> Tensor:
        """One inverse affine map per sample (output pixel -> input pixel, in pixels from the image centre)."""
        n, _, h, w = x.shape
        device, p = x.device, self.p
        inverse = torch.eye(3, device=device).expand(n, 3, 3)
        rand = lambda: torch.rand(n, device=device)  # noqa: E731
        randn = lambda: torch.randn(n, device=device)  # noqa: E731
        if "b" in self.transforms:
            flip = 1 - 2 * torch.floor(rand() * 2)
            inverse = inverse @ self._chosen(_scale2(flip, torch.ones_like(flip)), p)
            quarter_turns = torch.floor(rand() * 4)
            inverse = inverse @ self._chosen(_rotate2(quarter_turns * (math.pi / 2)), p)
            tx = torch.round((rand() * 2 - 1) * self.xint_max * w)
            ty = torch.round((rand() * 2 - 1) * self.xint_max * h)
            inverse = inverse @ self._chosen(_translate2(-tx, -ty), p)
        if "g" in self.transforms:
            s = torch.exp2(randn() * self.scale_std)
            inverse = inverse @ self._chosen(_scale2(1 / s, 1 / s), p)
            # Rotation before and after the anisotropic scaling, each with p_rot: P(any rotation) = p.
            p_rot = 1 - torch.sqrt((1 - p).clamp(0, 1))
            inverse = inverse @ self._chosen(_rotate2((rand() * 2 - 1) * math.pi * self.rotate_max), p_rot)
            s = torch.exp2(randn() * self.aniso_std)
            inverse = inverse @ self._chosen(_scale2(1 / s, s), p)
            inverse = inverse @ self._chosen(_rotate2((rand() * 2 - 1) * math.pi * self.rotate_max), p_rot)
            tx, ty = randn() * self.xfrac_std * w, randn() * self.xfrac_std * h
            inverse = inverse @ self._chosen(_translate2(-tx, -ty), p)
        moved = (inverse != torch.eye(3, device=device)).flatten(1).any(dim=1)
        # affine_grid works in coordinates normalised to [-1, 1] (align_corners=False): pixels * 2 / size, so
        # theta = diag(2/w, 2/h, 1) @ inverse @ diag(w/2, h/2, 1), written with Python scalars (no host-to-device copy).
        rows = torch.stack([inverse[:, 0] * (2.0 / w), inverse[:, 1] * (2.0 / h)], dim=1)
        theta = torch.stack([rows[..., 0] * (w / 2.0), rows[..., 1] * (h / 2.0), rows[..., 2]], dim=2)
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        resampled = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
        return torch.where(moved.view(n, 1, 1, 1), resampled, x)

    def _colour(self, x: Tensor) -> Tensor:
        """One 4x4 matrix per sample acting on homogeneous RGB (grayscale: on the luma only)."""
        n, c, h, w = x.shape
        device, p = x.device, self.p
        colour = torch.eye(4, device=device).expand(n, 4, 4)
        randn = lambda: torch.randn(n, device=device)  # noqa: E731
        luma_outer = torch.zeros(4, 4, device=device)  # v v^T for the luma axis v = (1, 1, 1, 0) / sqrt(3)
        luma_outer[:3, :3] = 1.0 / 3.0
        colour = self._chosen(_translate3(randn() * self.brightness_std), p) @ colour
        colour = self._chosen(_scale3(torch.exp2(randn() * self.contrast_std)), p) @ colour
        flip = torch.floor(torch.rand(n, device=device) * 2).view(n, 1, 1)
        colour = self._chosen(torch.eye(4, device=device) - 2 * luma_outer * flip, p) @ colour  # Householder reflection
        if c > 1:  # hue and saturation do nothing to gray images
            theta = (torch.rand(n, device=device) * 2 - 1) * math.pi * self.hue_max
            colour = self._chosen(_rotate3((1 / math.sqrt(3),) * 3, theta), p) @ colour
            s = torch.exp2(randn() * self.saturation_std).view(n, 1, 1)
            colour = self._chosen(luma_outer + (torch.eye(4, device=device) - luma_outer) * s, p) @ colour
        changed = (colour != torch.eye(4, device=device)).flatten(1).any(dim=1).view(n, 1, 1, 1)
        pixels = x.reshape(n, c, h * w)
        if c == 3:
            out = colour[:, :3, :3] @ pixels + colour[:, :3, 3:]
        else:  # grayscale: the mean of the RGB rows applied to (l, l, l, 1)
            row = colour[:, :3, :].mean(dim=1)
            out = pixels * row[:, :3].sum(dim=1).view(n, 1, 1) + row[:, 3].view(n, 1, 1)
        return torch.where(changed, out.view(n, c, h, w), x)

    # ------------------------------------------------------------------ adaptive p
    def observe(self, real_scores: Tensor) -> None:
        """Accumulate sign(D(augmented real)) on the device; every ``interval`` updates, adjust p."""
        if not self.adaptive:
            return
        scores = real_scores.detach()
        self.sign_sum += (scores > 0).sum() - (scores < 0).sum()  # NaN scores count as 0
        self.score_count += scores.numel()
        self.image_count += scores.shape[0]
        self.updates += 1
        self._updates += 1
        if self._updates % self.interval == 0:
            self.adjust()

    @torch.no_grad()
    def adjust(self) -> None:
        """p += sign(r_t - target) * images / speed_images, clamped to [0, 1]; the accumulators restart."""
        counts = torch.stack([self.sign_sum, self.score_count, self.image_count])
        if torch.distributed.is_available() and torch.distributed.is_initialized() and torch.distributed.get_world_size() > 1:
            torch.distributed.all_reduce(counts)  # every rank gets the global sums, hence the same p
        sign_sum, score_count, image_count = counts.to(torch.float64)
        rt = sign_sum / score_count.clamp(min=1)
        step = torch.sign(rt - self.target) * image_count / self.speed_images
        self.p.copy_((self.p.double() + step).clamp(0.0, 1.0))
        self.last_rt.copy_(rt)
        for buffer in (self.sign_sum, self.score_count, self.image_count):
            buffer.zero_()

    def scalars(self) -> dict[str, Tensor | float]:
        values: dict[str, Tensor | float] = {"augment_p": self.p}
        if self.adaptive:
            values["augment_rt"] = self.last_rt
        return values

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):  # type: ignore[no-untyped-def]
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        if prefix + "updates" in state_dict:  # a checkpoint or a rollback: the host copy follows (one read at load)
            self._updates = int(state_dict[prefix + "updates"])
