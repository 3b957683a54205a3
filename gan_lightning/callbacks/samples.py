"""Sample grids from one fixed latent batch, every N generator steps, to the logger and as PNG files.

Watching the *same* latents over training shows how the generator's mapping evolves; fresh noise at every
snapshot mixes that with sampling noise (the practice of DCGAN, Radford et al. 2016, and of StyleGAN's
``fakes*.png`` snapshots). The latents are drawn once from the callback's own seeded ``torch.Generator``
and stored in the checkpoint, so a resumed run keeps them, and drawing them leaves the training's random
streams untouched: a run with this callback is bit-identical to one without it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from torch import Tensor, nn

from gan_lightning.callbacks._figures import figure_to_tensor, new_figure
from gan_lightning.networks.interface import eval_mode
from gan_lightning.callbacks._image_logging import log_image
from gan_lightning.callbacks._run_dir import resolve_run_dir
from gan_lightning.errors import ConfigurationError

#: Default number of samples: an 8x8 grid of images, or enough 2D points to see which modes are covered.
_DEFAULT_IMAGES, _DEFAULT_POINTS = 64, 1000
_PER_CLASS_ROW = 8  # samples per row (class) in a conditional grid


def step_filename(step: int) -> str:
    """``step_000500.png``: zero-padded so that a plain sort of the files is the step order."""
    return f"step_{step:06d}.png"


class SampleGridCallback(Callback):
    """Every ``every_n_steps`` generator steps, draw samples from the fixed latents and save/log them.

    Images become a grid (values mapped from [-1, 1] to [0, 1]); 2D data (``datamodule.kind == "points"``)
    becomes a scatter plot of the generated points over real ones, on fixed axes. Files go to
    ``<run dir>/<dirname>/step_NNNNNN.png`` (the logger's version directory, or ``default_root_dir``
    without a logger); the logger gets the same picture at x = ``trainer.global_step``. A grid is also made
    at step 0 and at the end of training, so a timelapse starts from the untrained generator and ends at
    the final one.

    Args:
        every_n_steps: interval in generator steps.
        num_samples: samples per snapshot (default 64 images or 1000 points).
        nrow: images per grid row (default: square; 8 for a conditional GAN, whose grid has one row per class
            and ``num_classes * nrow`` samples by default).
        seed: seed of the fixed latents (independent of ``seed_everything``).
        use_ema: draw from ``pl_module.generator_ema`` when the module has one.
        also_raw: with an EMA generator, also save/log the raw generator's samples (``<dirname>/raw/``).
        dirname: sub-directory of the run directory for the PNGs.
        save_png / log_to_logger: switch either output off.
        num_real_points: real points drawn under the generated ones in 2D scatter plots.
    """

    def __init__(
        self,
        every_n_steps: int = 500,
        num_samples: Optional[int] = None,
        nrow: Optional[int] = None,
        seed: int = 1234,
        use_ema: bool = True,
        also_raw: bool = False,
        dirname: str = "samples",
        save_png: bool = True,
        log_to_logger: bool = True,
        num_real_points: int = 2000,
    ):
        if every_n_steps < 1:
            raise ConfigurationError(f"SampleGridCallback: every_n_steps must be >= 1, got {every_n_steps}")
        if num_samples is not None and num_samples < 1:
            raise ConfigurationError(f"SampleGridCallback: num_samples must be >= 1, got {num_samples}")
        self.every_n_steps = every_n_steps
        self.num_samples = num_samples
        self.nrow = nrow
        self.seed = seed
        self.use_ema = use_ema
        self.also_raw = also_raw
        self.dirname = dirname
        self.save_png = save_png
        self.log_to_logger = log_to_logger
        self.num_real_points = num_real_points
        #: The fixed latent batch (CPU); drawn at the first fit, or restored from a checkpoint.
        self.fixed_latents: Optional[Tensor] = None
        #: Fixed class labels for conditional generators (modules with an integer ``num_classes``).
        self.fixed_labels: Optional[Tensor] = None
        self.run_dir: Optional[Path] = None
        self.saved_files: list[Path] = []
        self._last_step_done: Optional[int] = None
        self._real_points: Optional[Tensor] = None
        self._axis_limits: Optional[tuple[float, float, float, float]] = None

    @property
    def state_key(self) -> str:
        return self._generate_state_key(seed=self.seed, dirname=self.dirname)

    # ------------------------------------------------------------------ fixed inputs
    def _draw_fixed_inputs(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Latents (and labels) from the callback's own generator: the global RNG streams are not touched."""
        rng = torch.Generator().manual_seed(self.seed)
        num_classes = getattr(pl_module, "num_classes", None)
        conditional = isinstance(num_classes, int) and num_classes > 0
        per_row = self.nrow or _PER_CLASS_ROW
        default_n = num_classes * per_row if conditional else _DEFAULT_POINTS if self._is_points(trainer) else _DEFAULT_IMAGES
        n = self.num_samples or default_n
        self.fixed_latents = pl_module.sample_latent(n, generator=rng).detach().cpu()
        if conditional:
            # One row per class: row i of the grid shows class i (points: every class equally often).
            self.fixed_labels = (torch.arange(n) // per_row) % num_classes

    def state_dict(self) -> dict[str, Any]:
        """Tensors only, so that the checkpoint loads with ``torch.load(weights_only=True)``."""
        state: dict[str, Any] = {}
        if self.fixed_latents is not None:
            state["fixed_latents"] = self.fixed_latents
        if self.fixed_labels is not None:
            state["fixed_labels"] = self.fixed_labels
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.fixed_latents = state_dict.get("fixed_latents", self.fixed_latents)
        self.fixed_labels = state_dict.get("fixed_labels", self.fixed_labels)

    # ------------------------------------------------------------------ hooks
    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if stage == "fit":
            self.run_dir = resolve_run_dir(trainer)  # a broadcast: every rank calls it here

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        # Checkpoint state is restored before on_fit_start: only a fresh run draws new latents.
        if self.fixed_latents is None:
            self._draw_fixed_inputs(trainer, pl_module)

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.global_step == 0:
            self._snapshot(trainer, pl_module)

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int) -> None:
        if trainer.global_step % self.every_n_steps == 0:
            self._snapshot(trainer, pl_module)

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._snapshot(trainer, pl_module)

    # ------------------------------------------------------------------ drawing
    def _snapshot(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Generate, save and log on rank 0 only (no collective: networks are called outside DDP's forward)."""
        step = trainer.global_step
        if not trainer.is_global_zero or step == self._last_step_done or trainer.sanity_checking:
            return
        self._last_step_done = step
        ema = getattr(pl_module, "generator_ema", None) if self.use_ema else None
        outputs = [("samples", self.dirname, ema if isinstance(ema, nn.Module) else pl_module.generator)]
        if isinstance(ema, nn.Module) and self.also_raw:
            outputs.append(("samples_raw", f"{self.dirname}/raw", pl_module.generator))
        for tag, subdir, network in outputs:
            samples = self.generate(network, pl_module)
            image = self._render(trainer, samples)
            if self.save_png:
                assert self.run_dir is not None
                path = self.run_dir / subdir / step_filename(step)
                self._save_png(image, path)
                self.saved_files.append(path)
            if self.log_to_logger:
                log_image(trainer, tag, image, step)

    @torch.no_grad()
    def generate(self, network: nn.Module, pl_module: LightningModule) -> Tensor:
        """Samples from the fixed inputs, in eval mode (BatchNorm running statistics, no dropout), then back."""
        assert self.fixed_latents is not None, "the fixed latents are drawn in on_fit_start"
        z = self.fixed_latents.to(pl_module.device)
        labels = None if self.fixed_labels is None else self.fixed_labels.to(pl_module.device)
        with eval_mode(network):
            out = network(z) if labels is None else network(z, labels)
        return out.detach().float().cpu()

    def _render(self, trainer: Trainer, samples: Tensor) -> Tensor:
        """A ``(3, H, W)`` image in [0, 1]: a grid for images, a scatter plot for 2D points."""
        if samples.dim() == 4:
            from torchvision.utils import make_grid

            square = max(1, int(len(samples) ** 0.5))
            nrow = self.nrow or (_PER_CLASS_ROW if self.fixed_labels is not None else square)
            grid = make_grid(((samples + 1) / 2).clamp(0, 1), nrow=nrow, padding=2, pad_value=1.0)
            return grid
        if samples.dim() == 2 and samples.shape[1] == 2:
            return self._scatter(trainer, samples)
        raise ConfigurationError(
            f"SampleGridCallback can draw images (N, C, H, W) or 2D points (N, 2), not samples of shape "
            f"{tuple(samples.shape)}; remove the callback for this data."
        )

    def _scatter(self, trainer: Trainer, fake: Tensor) -> Tensor:
        if self._axis_limits is None:
            self._real_points = self._reference_points(trainer)
            ref = self._real_points if self._real_points is not None else fake
            lo, hi = ref.min(0).values, ref.max(0).values
            pad = 0.25 * (hi - lo).clamp(min=1e-3)
            self._axis_limits = (float(lo[0] - pad[0]), float(hi[0] + pad[0]), float(lo[1] - pad[1]), float(hi[1] + pad[1]))
        fig, (ax,) = new_figure(4, 4)
        if self._real_points is not None:
            real = self._real_points.numpy()
            ax.scatter(real[:, 0], real[:, 1], s=4, c="0.75", label="real", linewidths=0)
        pts = fake.numpy()
        ax.scatter(pts[:, 0], pts[:, 1], s=4, c="tab:red", alpha=0.6, label="generated", linewidths=0)
        x0, x1, y0, y1 = self._axis_limits
        ax.set_xlim(x0, x1)
        ax.set_ylim(y0, y1)
        ax.set_aspect("equal")
        ax.legend(loc="upper right", fontsize=7, markerscale=2)
        fig.tight_layout()
        return figure_to_tensor(fig)

    def _reference_points(self, trainer: Trainer) -> Optional[Tensor]:
        """The datamodule's first real points (deterministic, no random draw), or None without a datamodule."""
        datamodule = getattr(trainer, "datamodule", None)
        if datamodule is None or not hasattr(datamodule, "real_batch"):
            return None
        return datamodule.real_batch(self.num_real_points).float().cpu()

    @staticmethod
    def _is_points(trainer: Trainer) -> bool:
        return getattr(getattr(trainer, "datamodule", None), "kind", "image") == "points"

    @staticmethod
    def _save_png(image: Tensor, path: Path) -> None:
        from torchvision.utils import save_image

        path.parent.mkdir(parents=True, exist_ok=True)
        save_image(image, path)
