"""``python -m gan_lightning sample``: samples from a checkpoint, without the dataset or the config file."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import torch

from gan_lightning.errors import CheckpointError, ConfigurationError, GANLightningError


def load_gan(ckpt_path: str, map_location: str = "cpu", trusted_modules: Optional[str] = None):
    """Rebuild a GANModule from a checkpoint written by a CLI run (its config travels in the hyper-parameters).

    Nothing in the file runs: it is read with ``torch.load(weights_only=True)`` and only classes from trusted
    modules are rebuilt (:mod:`gan_lightning.runtime.trust`; ``trusted_modules`` adds comma-separated module names).
    """
    from gan_lightning.module import GANModule

    path = Path(ckpt_path).expanduser()
    if not path.is_file():
        raise CheckpointError(f"Checkpoint {str(path)!r} does not exist; give the path of a .ckpt file (for example <run>/checkpoints/last.ckpt).")
    try:
        return GANModule.load_from_checkpoint(str(path), map_location=map_location, trusted_modules=trusted_modules)
    except GANLightningError:
        raise
    except TypeError as err:
        if "generator" in str(err) or "discriminator" in str(err):
            raise CheckpointError(
                f"{str(path)!r} does not record how to build its networks (it was not written by a CLI run). Load it in "
                "Python with GANModule.load_from_checkpoint(path, generator=..., discriminator=...)."
            ) from err
        raise
    except (RuntimeError, KeyError, EOFError, OSError) as err:
        raise CheckpointError(f"Cannot load checkpoint {str(path)!r}: {err}") from err


def save_samples(samples: torch.Tensor, output: str, nrow: Optional[int] = None) -> Path:
    """Write samples as a ``.pt`` tensor (any data), a ``.png`` grid (images) or a ``.png`` scatter plot (2D points)."""
    out = Path(output).expanduser()
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ConfigurationError(f"Cannot create the output directory {str(out.parent)!r} ({err.strerror or err}); choose another --output.") from err
    if out.suffix == ".pt":
        torch.save(samples.cpu(), out)
    elif out.suffix == ".png" and samples.dim() == 4:
        from torchvision.utils import save_image

        save_image((samples.float() + 1) / 2, out, nrow=nrow or max(1, int(len(samples) ** 0.5)), padding=2)
    elif out.suffix == ".png" and samples.dim() == 2 and samples.shape[1] == 2:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(5, 5))
        pts = samples.float().cpu().numpy()
        ax.scatter(pts[:, 0], pts[:, 1], s=3, alpha=0.5)
        ax.set_aspect("equal")
        fig.savefig(out, dpi=100, bbox_inches="tight")
        plt.close(fig)
    else:
        raise ConfigurationError(
            f"Cannot write samples of shape {tuple(samples.shape)} to {str(out)!r}: use a .pt file (any data) or "
            ".png (image grids and 2D scatter plots)."
        )
    return out


def sample(
    ckpt_path: str,
    num_samples: int = 64,
    output: str = "samples.png",
    seed: int = 0,
    nrow: Optional[int] = None,
    device: str = "cpu",
    label: Optional[int] = None,
    use_ema: bool = True,
    trusted_modules: Optional[str] = None,
) -> str:
    """Write ``num_samples`` generator samples from a checkpoint.

    Args:
        ckpt_path: a checkpoint written by ``python -m gan_lightning fit``.
        num_samples: how many samples to draw.
        output: ``.pt`` saves the tensor in data space (images in [-1, 1], 2D points as coordinates);
            ``.png`` saves an image grid or, for 2D data, a scatter plot.
        seed: seed of the latent noise; the same seed gives the same samples.
        nrow: images per row of the grid (default: square).
        device: where to run the generator (``cpu``, ``cuda``, ``cuda:1``, ...).
        label: for a conditional GAN, draw only this class; by default the grid has one row per class
            (``num_samples`` is rounded up to a multiple of the number of classes).
        use_ema: draw from the EMA generator when the checkpoint has one (``--use_ema=false``: the raw one).
        trusted_modules: comma-separated modules (besides gan_lightning, torch, torchvision) whose classes the
            checkpoint may name, e.g. ``mypkg,other.module`` for your own networks (also
            ``$GAN_LIGHTNING_TRUSTED_MODULES``). Only trust code you would run.
    """
    if num_samples < 1:
        raise ConfigurationError(f"--num_samples must be >= 1, got {num_samples}")
    model = load_gan(ckpt_path, map_location=device, trusted_modules=trusted_modules)
    labels = None
    if label is not None or model.num_classes:
        if not model.num_classes:
            raise ConfigurationError("--label was given, but this checkpoint's GAN is not conditional (num_classes = 0)")
        if label is not None:
            if not 0 <= label < model.num_classes:
                raise ConfigurationError(f"--label must be in [0, {model.num_classes - 1}], got {label}")
            labels = torch.full((num_samples,), label, dtype=torch.long)
        else:
            per_row = -(-num_samples // model.num_classes)
            num_samples = per_row * model.num_classes
            labels = torch.arange(num_samples) // per_row
            nrow = nrow or per_row
    samples = model.generate(num_samples, seed=seed, labels=labels, use_ema=use_ema)
    out = save_samples(samples, output, nrow)
    print(f"wrote {num_samples} samples of shape {tuple(samples.shape[1:])} to {out}")
    return str(out)
