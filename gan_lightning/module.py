"""GANModule: the alternating discriminator/generator loop as a LightningModule with manual optimization.

One ``training_step`` is one *generator iteration*: its loader batch holds ``n_critic`` real batches (a
``GANDataModule`` is told ``batches_per_step = n_critic``; any other loader's batch is split in ``n_critic``),
one discriminator update runs on each (fakes detached, generator not differentiated), then one generator
update (discriminator frozen). Every Lightning counter that counts batches (epoch length, progress bar,
restart bookkeeping) therefore counts generator iterations. Discriminator optimizer steps are hidden from Lightning's step counter, so
``trainer.global_step``, ``max_steps``, ``log_every_n_steps`` and checkpoint intervals all count generator
updates, which is what GAN papers and users mean by "steps" (Lightning issue #17958 counts every
optimizer step instead).
"""

from __future__ import annotations

import warnings
from typing import Any, Callable, Iterable, Literal, NamedTuple, Optional, Union

import torch
from lightning.pytorch import LightningModule
from torch import Tensor, nn
from torch.optim import Optimizer

from gan_lightning.errors import ConfigurationError
from gan_lightning.losses import AdversarialLoss, build_loss
from gan_lightning.regularizers import Regularizer, RegularizerContext
from gan_lightning.nonfinite import NonFiniteGuard, assert_finite_parameters
from gan_lightning.rng import capture_rng_state, restore_rng_state

OptimizerFactory = Callable[[Iterable], Optimizer]

# An internal Lightning deprecation notice that users cannot act on.
warnings.filterwarnings("ignore", message=".*isinstance\\(treespec, LeafSpec\\)` is deprecated.*")


def default_optimizer(params: Iterable) -> Optimizer:
    """Adam(lr=2e-4, betas=(0.5, 0.999)): the DCGAN paper's setting (Radford et al. 2016, Sec. 4)."""
    return torch.optim.Adam(params, lr=2e-4, betas=(0.5, 0.999))


def _is_plain(value: Any) -> bool:
    """True for values that survive ``torch.load(weights_only=True)`` (configs, numbers, strings)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return True
    if isinstance(value, (list, tuple)):
        return all(_is_plain(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _is_plain(v) for k, v in value.items())
    return False


class StepOutputs(NamedTuple):
    """Detached results of the latest generator iteration (the last discriminator step's scores)."""

    d_loss: Tensor
    g_loss: Tensor
    real_scores: Tensor
    fake_scores: Tensor


class GANModule(LightningModule):
    """A GAN with any generator/discriminator, a pluggable adversarial loss and composable regularizers.

    Args:
        generator: maps ``(N, latent_dim)`` latents to samples.
        discriminator: maps samples to raw scores ``(N,)`` or ``(N, 1)``.
        loss: a registered short name (``nonsaturating``, ``minimax``, ``lsgan``, ``wgan``, ``wgan-gp``,
            ``hinge``, ``ragan``), a class path, or an :class:`AdversarialLoss` instance.
        regularizers: extra terms, each applied in the update of the network it belongs to.
        latent_dim: size of the latent vector; defaults to ``generator.latent_dim``.
        latent_distribution: ``normal`` (N(0, I)) or ``uniform`` (U[-1, 1]).
        generator_optimizer / discriminator_optimizer: callables ``params -> Optimizer``; default
            Adam(lr=2e-4, betas=(0.5, 0.999)). Different learning rates (TTUR) are just two configs.
        n_critic: discriminator updates per generator update, each on its own real batch.
        nonfinite: what a NaN/Inf loss does: ``stop`` the run with a message naming the network, the loss term
            and the step (checked without per-step syncs), or ``skip`` the update (one sync per update).
    """

    def __init__(
        self,
        generator: nn.Module,
        discriminator: nn.Module,
        loss: Union[str, AdversarialLoss] = "nonsaturating",
        regularizers: Optional[list[Regularizer]] = None,
        latent_dim: Optional[int] = None,
        latent_distribution: Literal["normal", "uniform"] = "normal",
        generator_optimizer: Optional[OptimizerFactory] = None,
        discriminator_optimizer: Optional[OptimizerFactory] = None,
        n_critic: int = 1,
        nonfinite: Literal["stop", "skip"] = "stop",
    ):
        super().__init__()
        self.automatic_optimization = False
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*is an instance of `nn.Module`.*")
            self.save_hyperparameters()
        # Keep only plain config values: objects in hparams would make checkpoints need weights_only=False.
        for key in [k for k, v in self.hparams.items() if not _is_plain(v)]:
            del self.hparams[key]

        if n_critic < 1:
            raise ConfigurationError(f"n_critic must be >= 1, got {n_critic}")
        if latent_distribution not in ("normal", "uniform"):
            raise ConfigurationError(f"latent_distribution must be 'normal' or 'uniform', got {latent_distribution!r}")
        latent_dim = latent_dim if latent_dim is not None else getattr(generator, "latent_dim", None)
        if not isinstance(latent_dim, int) or latent_dim < 1:
            raise ConfigurationError(
                "The latent size is unknown: give the generator a `latent_dim` attribute or set --model.latent_dim."
            )
        self.generator = generator
        self.discriminator = discriminator
        self.loss = build_loss(loss)
        self.regularizers = list(self.loss.regularizers()) + list(regularizers or [])
        for reg in self.regularizers:
            if reg.phase not in ("discriminator", "generator"):
                raise ConfigurationError(f"{reg!r}: phase must be 'discriminator' or 'generator', got {reg.phase!r}")
        self.latent_dim = latent_dim
        self.latent_distribution = latent_distribution
        self.n_critic = n_critic
        self.nonfinite = NonFiniteGuard(nonfinite)
        self._optimizer_factories = (generator_optimizer or default_optimizer, discriminator_optimizer or default_optimizer)
        self._data_checked = False
        self._d_terms: tuple[Tensor, Tensor | float] = (torch.zeros(()), 0.0)
        self.last_step_outputs: Optional[StepOutputs] = None
        self._rng_to_restore: Optional[dict[str, Any]] = None
        self._scalers: Optional[dict[str, Any]] = None
        self._d_scaler_state: Optional[dict[str, Any]] = None
        self.skipped_generator_steps = 0
        self._distributed: dict[str, Optional[nn.Module]] = {}

    # ------------------------------------------------------------------ sampling
    def sample_latent(self, n: int, generator: Optional[torch.Generator] = None) -> Tensor:
        """``n`` latent vectors on the module's device; ``generator`` (on any device) makes them reproducible."""
        device = generator.device if generator is not None else self.device
        shape = (n, self.latent_dim)
        if self.latent_distribution == "normal":
            z = torch.randn(shape, generator=generator, device=device)
        else:
            z = torch.rand(shape, generator=generator, device=device) * 2 - 1
        return z.to(self.device)

    def forward(self, z: Tensor) -> Tensor:
        return self.generator(z)

    @torch.no_grad()
    def generate(self, n: int, seed: Optional[int] = None, batch_size: int = 512) -> Tensor:
        """``n`` samples in data space from the generator in eval mode (images in [-1, 1], points as coordinates)."""
        rng = torch.Generator().manual_seed(seed) if seed is not None else None
        was_training = self.generator.training
        self.generator.eval()
        try:
            chunks = [self(self.sample_latent(min(batch_size, n - i), rng)) for i in range(0, n, batch_size)]
        finally:
            self.generator.train(was_training)
        return torch.cat(chunks)

    # ------------------------------------------------------------------ distributed
    def set_distributed_networks(self, generator: Optional[nn.Module], discriminator: Optional[nn.Module]) -> None:
        """Called by ``GANDDPStrategy`` with each network wrapped in its own DDP (None to unwrap).

        The wrappers are kept out of the module tree, so parameters and checkpoint keys stay the same.
        """
        self._distributed = {"generator": generator, "discriminator": discriminator}

    def _trained(self, name: str) -> nn.Module:
        """The network to run when it is being updated: its DDP wrapper under ``gan_ddp``, else itself."""
        return self._distributed.get(name) or getattr(self, name)

    def on_fit_start(self) -> None:
        if self.trainer.world_size > 1:
            # seed_everything gives every rank the same seed: without this all ranks draw the same latents.
            torch.manual_seed(torch.initial_seed() + 1_000_003 * self.trainer.global_rank)

    # ------------------------------------------------------------------ optimization
    def configure_optimizers(self) -> list[Optimizer]:
        g_factory, d_factory = self._optimizer_factories
        return [g_factory(self.generator.parameters()), d_factory(self.discriminator.parameters())]

    def setup(self, stage: str) -> None:
        datamodule = self.trainer.datamodule if self._trainer is not None else None
        if datamodule is not None and hasattr(datamodule, "batches_per_step"):
            datamodule.batches_per_step = self.n_critic

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        if self._rng_to_restore is not None:
            # Restored here, right before the first step after a resume, so that nothing Lightning does
            # while setting up (which may draw random numbers) shifts the streams.
            restore_rng_state(self._rng_to_restore)
            self._rng_to_restore = None

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.nonfinite.check(self.global_step)
        assert_finite_parameters(self, self.global_step)
        if self._scalers is not None:
            checkpoint["discriminator_grad_scaler"] = self._scalers["discriminator"].state_dict()
        checkpoint["rng_states"] = self._gather_rng_states()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self._d_scaler_state = checkpoint.get("discriminator_grad_scaler")
        states = checkpoint.get("rng_states")
        if states:
            rank = self.trainer.global_rank if self._trainer is not None else 0
            self._rng_to_restore = states[rank] if rank < len(states) else None

    def _gather_rng_states(self) -> list[dict[str, Any]]:
        """Every rank's RNG state (dump_checkpoint runs on all ranks, so the gather is not rank-0-only code)."""
        state = capture_rng_state()
        world = self.trainer.world_size if self._trainer is not None else 1
        if world == 1:
            return [state]
        gathered: list[Any] = [None] * world
        torch.distributed.all_gather_object(gathered, state)
        return gathered

    def training_step(self, batch: Any, batch_idx: int) -> None:
        opt_g, opt_d = self.optimizers()
        samples = batch[0] if isinstance(batch, (list, tuple)) else batch
        if samples.shape[0] < self.n_critic:
            raise ConfigurationError(
                f"A batch of {samples.shape[0]} samples cannot be split into n_critic={self.n_critic} discriminator batches."
            )
        reals = torch.tensor_split(samples, self.n_critic)
        if not self._data_checked:
            self._check_data(reals[0])

        self._use_scaler("discriminator")
        for real in reals:
            d_loss, real_scores, fake_scores = self._discriminator_step(real, opt_d)

        self._use_scaler("generator")
        self._set_requires_grad(self.discriminator, False)
        try:
            g_loss = self._generator_step(reals[-1], opt_g)
        finally:
            self._set_requires_grad(self.discriminator, True)

        # References (no copies, no syncs) for callbacks that inspect the latest step on their own schedule.
        self.last_step_outputs = StepOutputs(d_loss, g_loss, real_scores, fake_scores)
        every = self.trainer.log_every_n_steps
        if every > 0 and self.global_step % every == 0:
            self.nonfinite.check(self.global_step)
            self._log_step(d_loss, g_loss, real_scores, fake_scores)

    def _discriminator_step(self, real: Tensor, opt_d: Any) -> tuple[Tensor, Tensor, Tensor]:
        z = self.sample_latent(real.shape[0])
        with torch.no_grad():
            fake = self.generator(z)
        discriminator = self._trained("discriminator")
        real_scores = discriminator(real)
        fake_scores = discriminator(fake)
        adversarial = self.loss.discriminator_loss(real_scores, fake_scores)
        regularization = self._regularization("discriminator", real, fake, z, discriminator)
        loss = adversarial + regularization
        opt_d.zero_grad(set_to_none=True)
        if not self.nonfinite.should_skip("discriminator", loss):
            self.manual_backward(loss)
            self._step_uncounted(opt_d)
            self.loss.after_discriminator_step(self.discriminator)
        self._d_terms = (adversarial.detach(), _detach(regularization))
        return loss.detach(), real_scores.detach(), fake_scores.detach()

    def _generator_step(self, real: Tensor, opt_g: Any) -> Tensor:
        z = self.sample_latent(real.shape[0])
        fake = self._trained("generator")(z)
        fake_scores = self.discriminator(fake)  # frozen: the bare module, so D's gradients are not synchronised
        real_scores = self.discriminator(real) if self.loss.generator_needs_real_scores else None
        adversarial = self.loss.generator_loss(fake_scores, real_scores)
        regularization = self._regularization("generator", real, fake, z, self.discriminator)
        loss = adversarial + regularization
        opt_g.zero_grad(set_to_none=True)
        if not self.nonfinite.should_skip("generator", loss):  # a skipped update is not a generator step
            self.manual_backward(loss)
            self._step_generator(opt_g)
        if self.nonfinite.policy == "stop":
            self.nonfinite.record(self.global_step, *self._d_terms, adversarial.detach(), _detach(regularization))
        return loss.detach()

    def _regularization(self, phase: str, real: Tensor, fake: Tensor, z: Tensor, discriminator: nn.Module) -> Tensor | float:
        total: Tensor | float = 0.0
        ctx: Optional[RegularizerContext] = None
        for reg in self.regularizers:
            if reg.phase != phase or not reg.is_due(self.global_step):
                continue
            if ctx is None:
                ctx = RegularizerContext(
                    discriminator, self._trained("generator"), real, fake, z, grad_scale=self._grad_scale()
                )
            total = total + reg(ctx)
        return total

    def _grad_scale(self) -> Optional[Tensor]:
        """The 16-bit loss scale as a tensor (no host sync), for scaled ``autograd.grad`` in penalties."""
        scaler = getattr(self.trainer.precision_plugin, "scaler", None)
        if scaler is None or not scaler.is_enabled():
            return None
        if getattr(scaler, "_scale", None) is None:
            scaler._lazy_init_scale_growth_tracker(self.device)
        return scaler._scale

    def _use_scaler(self, phase: str) -> None:
        """Under 16-bit mixed precision, G and D each get their own GradScaler.

        With Lightning's single scaler, updated twice per iteration, an overflow or a growth caused by one
        network changes the scale the other one trains with, and steps get skipped (shared notes, section 2).
        The plugin's own scaler serves G (Lightning checkpoints it); D's is checkpointed by this module.
        """
        plugin = self.trainer.precision_plugin
        if getattr(plugin, "scaler", None) is None:
            return
        if self._scalers is None:
            shared = plugin.scaler
            d_scaler = torch.amp.GradScaler(
                shared._device,
                init_scale=shared._init_scale,
                growth_factor=shared._growth_factor,
                backoff_factor=shared._backoff_factor,
                growth_interval=shared._growth_interval,
                enabled=shared.is_enabled(),
            )
            if self._d_scaler_state is not None:
                d_scaler.load_state_dict(self._d_scaler_state)
            self._scalers = {"generator": shared, "discriminator": d_scaler}
        plugin.scaler = self._scalers[phase]

    def _step_generator(self, opt_g: Any) -> None:
        """Step G and count it as a generator step unless the 16-bit scaler skipped it (inf/NaN gradients)."""
        scaler = getattr(self.trainer.precision_plugin, "scaler", None)
        scale_before = scaler._scale.clone() if scaler is not None and scaler.is_enabled() and scaler._scale is not None else None
        self._step_uncounted(opt_g)
        # GradScaler.step has already synchronised to decide; reading the scale back costs nothing more.
        if scale_before is not None and bool(scaler._scale < scale_before):
            self.skipped_generator_steps += 1
            return
        progress = self.trainer.fit_loop.epoch_loop.manual_optimization.optim_step_progress
        progress.increment_ready()
        progress.increment_completed()

    def _step_uncounted(self, optimizer: Any) -> None:
        """Step an optimizer without advancing ``global_step`` (which counts generator steps only)."""
        before, after = optimizer._on_before_step, optimizer._on_after_step
        optimizer._on_before_step = optimizer._on_after_step = _noop
        try:
            optimizer.step()
        finally:
            optimizer._on_before_step, optimizer._on_after_step = before, after

    @staticmethod
    def _set_requires_grad(module: nn.Module, flag: bool) -> None:
        for p in module.parameters():
            p.requires_grad_(flag)

    def _log_step(self, d_loss: Tensor, g_loss: Tensor, real_scores: Tensor, fake_scores: Tensor) -> None:
        if self.loss.scores_are_logits:
            real_scores, fake_scores = real_scores.float().sigmoid(), fake_scores.float().sigmoid()
        metrics: dict[str, Tensor | float] = {
            "d_loss": d_loss,
            "g_loss": g_loss,
            "d_real": real_scores.float().mean(),
            "d_fake": fake_scores.float().mean(),
        }
        if self.nonfinite.policy == "skip":
            metrics["nonfinite_skipped"] = float(sum(self.nonfinite.skipped.values()))
        self.log_scalars(metrics)

    def log_scalars(self, metrics: dict[str, Tensor | float]) -> None:
        """Log scalars at x = generator steps; callbacks use this too, so every panel shares one x-axis.

        Lightning's ``self.log`` puts its own per-batch counter (one behind) on the logger's x-axis, and a
        logged ``"step"`` key would leak into ``callback_metrics`` (and so into ``{step}`` in checkpoint
        file names). So values go to ``callback_metrics`` through ``self.log(logger=False)`` (usable by
        ``monitor=``) and to the loggers with an explicit step. Called only on logging steps: the host sync
        happens when the logger converts the tensors.
        """
        self.log_dict(metrics, on_step=True, on_epoch=False, prog_bar=False, logger=False, batch_size=1)
        for logger in self.loggers:
            logger.log_metrics({k: v.detach() if isinstance(v, Tensor) else v for k, v in metrics.items()}, step=self.global_step)

    def _check_data(self, real: Tensor) -> None:
        """Compare one generated sample with one real sample once, to fail early with a readable message."""
        with torch.no_grad():
            was_training = self.generator.training
            self.generator.eval()
            try:
                fake = self.generator(self.sample_latent(1, torch.Generator().manual_seed(0)))
            finally:
                self.generator.train(was_training)
        if tuple(fake.shape[1:]) != tuple(real.shape[1:]):
            raise ConfigurationError(
                f"The generator makes samples of shape {tuple(fake.shape[1:])} but the data has shape "
                f"{tuple(real.shape[1:])}. Match the generator and discriminator to the data (image_size, channels "
                "or output_dim in --model.generator.init_args / --model.discriminator.init_args)."
            )
        self._data_checked = True


def _noop() -> None:
    return None


def _detach(value: Tensor | float) -> Tensor | float:
    return value.detach() if isinstance(value, Tensor) else value
