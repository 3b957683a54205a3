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
from lightning.pytorch import Callback, LightningModule
from lightning.pytorch.plugins.precision import Precision
from lightning.pytorch.profilers import PassThroughProfiler
from lightning.pytorch.strategies import SingleDeviceStrategy
from torch import Tensor, nn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler

from gan_lightning.discriminator_inputs import DiscriminatorBatch, DiscriminatorInputTransform
from gan_lightning.ema import check_ema_options, make_ema_copy, update_ema
from gan_lightning.errors import ConfigurationError
from gan_lightning.losses import AdversarialLoss, build_loss
from gan_lightning.regularizers import Regularizer, RegularizerContext
from gan_lightning.resume import start_next_epoch_after_resume_at_epoch_end
from gan_lightning.nonfinite import NonFiniteGuard, assert_finite_parameters
from gan_lightning.rng import capture_rng_state, restore_rng_state
from gan_lightning.unrolled import unrolled_scorer

OptimizerFactory = Callable[[Iterable], Optimizer]
SchedulerFactory = Callable[[Optimizer], LRScheduler]

# An internal Lightning deprecation notice that users cannot act on.
warnings.filterwarnings("ignore", message=".*isinstance\\(treespec, LeafSpec\\)` is deprecated.*")


def default_optimizer(params: Iterable) -> Optimizer:
    """Adam(lr=2e-4, betas=(0.5, 0.999)): the DCGAN paper's setting (Radford et al. 2016, Sec. 4)."""
    return torch.optim.Adam(params, lr=2e-4, betas=(0.5, 0.999))


def num_classes_of(network: nn.Module) -> int:
    """The ``num_classes`` a conditional network declares; 0 for unconditional ones."""
    value = getattr(network, "num_classes", 0)
    return int(value) if isinstance(value, int) and value > 0 else 0


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
        input_transforms: changes to what D sees (:mod:`gan_lightning.discriminator_inputs`: instance noise,
            label flipping), applied in order.
        generator_scheduler / discriminator_scheduler: callables ``optimizer -> LRScheduler``, both stepped once
            per generator step (SNGAN's linear decay to zero is ``torch.optim.lr_scheduler.LinearLR`` with
            ``end_factor: 0``).
        generator_grad_clip / discriminator_grad_clip: maximum gradient norm of each network, applied to the
            unscaled gradients (also under 16-bit mixed precision).
        ema_decay: keep ``generator_ema``, an exponential moving average of the generator
            (:mod:`gan_lightning.ema`), updated after every generator step from ``ema_start_step`` on.
        unrolled_steps: train G against D unrolled this many steps (Metz et al. 2017; :mod:`gan_lightning.unrolled`),
            with the learning rate ``unrolled_lr`` (default: D's own).
        compile_networks: run G and D through ``torch.compile`` in training (not with ``gan_ddp``). Forward
            passes whose input gradient is differentiated again (R1, R2, penalties) use the eager network,
            since compiled graphs do not support double backward.

    Conditional GANs: when the generator has ``num_classes > 0`` (and the discriminator the same), batches
    are ``(samples, labels)``, the generator is called as ``G(z, labels)`` and the discriminator as
    ``D(x, labels)``; fake labels are drawn uniformly.
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
        input_transforms: Optional[list[DiscriminatorInputTransform]] = None,
        generator_scheduler: Optional[SchedulerFactory] = None,
        discriminator_scheduler: Optional[SchedulerFactory] = None,
        generator_grad_clip: Optional[float] = None,
        discriminator_grad_clip: Optional[float] = None,
        ema_decay: Optional[float] = None,
        ema_start_step: int = 0,
        unrolled_steps: int = 0,
        unrolled_lr: Optional[float] = None,
        compile_networks: bool = False,
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
        for name, clip in (("generator_grad_clip", generator_grad_clip), ("discriminator_grad_clip", discriminator_grad_clip)):
            if clip is not None and clip <= 0:
                raise ConfigurationError(f"{name} must be a positive gradient norm or null, got {clip}")
        if unrolled_steps < 0:
            raise ConfigurationError(f"unrolled_steps must be >= 0, got {unrolled_steps}")
        self.num_classes = num_classes_of(generator)
        if num_classes_of(discriminator) != self.num_classes:
            raise ConfigurationError(
                f"The generator has num_classes={self.num_classes} but the discriminator has "
                f"num_classes={num_classes_of(discriminator)}; a conditional GAN needs both set to the number of classes "
                "(--model.generator.init_args.num_classes and --model.discriminator.init_args.num_classes)."
            )
        self.generator = generator
        self.discriminator = discriminator
        if ema_decay is not None:
            check_ema_options(ema_decay, ema_start_step)
            self.generator_ema: Optional[nn.Module] = make_ema_copy(generator)
        else:
            self.generator_ema = None
        self.ema_decay, self.ema_start_step = ema_decay, ema_start_step
        self.input_transforms = list(input_transforms or [])
        self._scheduler_factories = (generator_scheduler, discriminator_scheduler)
        self._schedulers: list[LRScheduler] = []
        self.grad_clip = {"generator": generator_grad_clip, "discriminator": discriminator_grad_clip}
        self.unrolled_steps, self.unrolled_lr = unrolled_steps, unrolled_lr
        self.compile_networks = compile_networks
        self._compiled: dict[str, nn.Module] = {}  # kept out of the module tree: checkpoint keys stay the same
        self._lean: Optional[list[Callback]] = None  # see _lean_dispatch
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

    def sample_labels(self, n: int, generator: Optional[torch.Generator] = None) -> Optional[Tensor]:
        """``n`` uniform class labels for a conditional GAN; None for an unconditional one."""
        if not self.num_classes:
            return None
        device = generator.device if generator is not None else self.device
        return torch.randint(self.num_classes, (n,), generator=generator, device=device).to(self.device)

    @staticmethod
    def _generate(network: nn.Module, z: Tensor, labels: Optional[Tensor]) -> Tensor:
        return network(z) if labels is None else network(z, labels)

    @staticmethod
    def _score(network: Callable[..., Tensor], x: Tensor, labels: Optional[Tensor]) -> Tensor:
        return network(x) if labels is None else network(x, labels)

    def forward(self, z: Tensor, labels: Optional[Tensor] = None) -> Tensor:
        return self._generate(self.generator, z, labels)

    @torch.no_grad()
    def generate(
        self,
        n: int,
        seed: Optional[int] = None,
        batch_size: int = 512,
        labels: Optional[Tensor] = None,
        use_ema: bool = True,
    ) -> Tensor:
        """``n`` samples in data space, in eval mode (images in [-1, 1], points as coordinates).

        The EMA generator is used when the module keeps one (``use_ema``). A conditional GAN draws uniform
        labels from ``seed`` unless ``labels`` (n,) are given.
        """
        rng = torch.Generator().manual_seed(seed) if seed is not None else None
        network = self.generator_ema if use_ema and self.generator_ema is not None else self.generator
        if labels is None:
            labels = self.sample_labels(n, rng)
        elif not self.num_classes:
            raise ConfigurationError("labels were given, but this GAN is not conditional (its generator has no num_classes)")
        was_training = network.training
        network.eval()
        try:
            chunks = []
            for i in range(0, n, batch_size):
                z = self.sample_latent(min(batch_size, n - i), rng)
                y = None if labels is None else labels[i : i + len(z)].to(self.device)
                chunks.append(self._generate(network, z, y))
        finally:
            network.train(was_training)
        return torch.cat(chunks)

    # ------------------------------------------------------------------ distributed
    def set_distributed_networks(self, generator: Optional[nn.Module], discriminator: Optional[nn.Module]) -> None:
        """Called by ``GANDDPStrategy`` with each network wrapped in its own DDP (None to unwrap).

        The wrappers are kept out of the module tree, so parameters and checkpoint keys stay the same.
        """
        self._distributed = {"generator": generator, "discriminator": discriminator}

    def _trained(self, name: str, double_backward: bool = False) -> nn.Module:
        """The network to run when it is being updated: its DDP wrapper under ``gan_ddp``, else the compiled
        network (unless its graph will be differentiated twice), else itself."""
        wrapped = self._distributed.get(name)
        if wrapped is not None:
            return wrapped
        if not double_backward and name in self._compiled:
            return self._compiled[name]
        return getattr(self, name)

    def on_fit_start(self) -> None:
        if self._compiled and self._distributed.get("generator") is not None:
            raise ConfigurationError(
                "--model.compile_networks=true is not supported with the gan_ddp strategy yet; use one of them."
            )
        if self.trainer.world_size > 1:
            # seed_everything gives every rank the same seed: without this all ranks draw the same latents.
            torch.manual_seed(torch.initial_seed() + 1_000_003 * self.trainer.global_rank)

    # ------------------------------------------------------------------ optimization
    def configure_optimizers(self) -> list[Optimizer]:
        g_factory, d_factory = self._optimizer_factories
        optimizers = [g_factory(self.generator.parameters()), d_factory(self.discriminator.parameters())]
        self._schedulers = [factory(opt) for factory, opt in zip(self._scheduler_factories, optimizers) if factory is not None]
        if not self._schedulers:
            return optimizers
        return optimizers, self._schedulers  # returned so that Lightning checkpoints their state

    def on_before_optimizer_step(self, optimizer: Optimizer) -> None:
        # Called between the 16-bit unscale and the step, so the norm is that of the true gradients.
        opt_g, _ = self.optimizers()
        clip = self.grad_clip["generator" if optimizer is opt_g.optimizer else "discriminator"]
        if clip is not None:
            self.clip_gradients(optimizer, gradient_clip_val=clip, gradient_clip_algorithm="norm")

    def setup(self, stage: str) -> None:
        datamodule = self.trainer.datamodule if self._trainer is not None else None
        if datamodule is not None and hasattr(datamodule, "batches_per_step"):
            datamodule.batches_per_step = self.n_critic
        if self.compile_networks and not self._compiled:
            self._compiled = {name: torch.compile(getattr(self, name)) for name in ("generator", "discriminator")}

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
        samples, labels = self._unpack(batch)
        if samples.shape[0] < self.n_critic:
            raise ConfigurationError(
                f"A batch of {samples.shape[0]} samples cannot be split into n_critic={self.n_critic} discriminator batches."
            )
        reals = torch.tensor_split(samples, self.n_critic)
        real_labels = torch.tensor_split(labels, self.n_critic) if labels is not None else [None] * self.n_critic
        if not self._data_checked:
            self._check_data(reals[0])

        self._use_scaler("discriminator")
        for real, real_y in zip(reals, real_labels):
            d_loss, real_scores, fake_scores = self._discriminator_step(real, real_y, opt_d)

        self._use_scaler("generator")
        self._set_requires_grad(self.discriminator, False)
        try:
            g_loss = self._generator_step(reals[-1], real_labels[-1], opt_g, opt_d)
        finally:
            self._set_requires_grad(self.discriminator, True)

        # References (no copies, no syncs) for callbacks that inspect the latest step on their own schedule.
        self.last_step_outputs = StepOutputs(d_loss, g_loss, real_scores, fake_scores)
        every = self.trainer.log_every_n_steps
        if every > 0 and self.global_step % every == 0:
            self.nonfinite.check(self.global_step)
            self._log_step(d_loss, g_loss, real_scores, fake_scores)

    def _unpack(self, batch: Any) -> tuple[Tensor, Optional[Tensor]]:
        """(samples, labels): labels only for a conditional GAN, which then requires them."""
        samples = batch[0] if isinstance(batch, (list, tuple)) else batch
        if not self.num_classes:
            return samples, None
        if not isinstance(batch, (list, tuple)) or len(batch) < 2:
            raise ConfigurationError(
                "A conditional GAN (num_classes > 0) needs (samples, labels) batches; this datamodule yields samples only."
            )
        return samples, batch[1].long()

    def _discriminator_step(self, real: Tensor, real_labels: Optional[Tensor], opt_d: Any) -> tuple[Tensor, Tensor, Tensor]:
        n = real.shape[0]
        z, fake_labels = self.sample_latent(n), self.sample_labels(n)
        with torch.no_grad():
            fake = self._generate(self._trained("generator"), z, fake_labels)
        inputs = DiscriminatorBatch(real, fake, real_labels, fake_labels)
        for transform in self.input_transforms:
            inputs = transform.discriminator_update(inputs, self.global_step)
        due = self._due_regularizers("discriminator")
        wanted = {reg.input_gradient_of for reg in due}
        # Penalties on D's input gradient (R1, R2) reuse this forward pass: the input must require grad.
        real_in = inputs.real.detach().requires_grad_(True) if "real" in wanted else inputs.real
        fake_in = inputs.fake.detach().requires_grad_(True) if "fake" in wanted else inputs.fake
        discriminator = self._trained("discriminator", double_backward=bool(wanted - {None}))
        real_scores = self._score(discriminator, real_in, inputs.real_labels)
        fake_scores = self._score(discriminator, fake_in, inputs.fake_labels)
        adversarial = self.loss.discriminator_loss(real_scores, fake_scores)
        regularization: Tensor | float = 0.0
        if due:
            ctx = RegularizerContext(
                self._trained("discriminator", True), self._trained("generator", True), real_in, fake_in, z, self._grad_scale(),
                inputs.real_labels, inputs.fake_labels,
                real_scores if "real" in wanted else None, fake_scores if "fake" in wanted else None,
            )
            regularization = self._regularization(due, ctx)
        loss = adversarial + regularization
        opt_d.zero_grad(set_to_none=True)
        if not self._skip_update("discriminator", adversarial, regularization):
            self._backward(loss)
            self._step_uncounted(opt_d)
            self.loss.after_discriminator_step(self.discriminator)
        self._d_terms = (adversarial.detach(), self._guarded(regularization))
        return loss.detach(), real_scores.detach(), fake_scores.detach()

    def _generator_step(self, real: Tensor, real_labels: Optional[Tensor], opt_g: Any, opt_d: Any) -> Tensor:
        n = real.shape[0]
        z, fake_labels = self.sample_latent(n), self.sample_labels(n)
        due = self._due_regularizers("generator")
        if fake_labels is not None and any(getattr(reg, "pairs_halves", False) for reg in due):
            half = n // 2  # mode seeking compares G(c, z1) with G(c, z2): one class per pair (Mao et al. 2019)
            fake_labels = torch.cat([fake_labels[:half], fake_labels[:half], fake_labels[2 * half:]])
        fake = self._generate(self._trained("generator"), z, fake_labels)
        inputs = DiscriminatorBatch(real, fake, real_labels, fake_labels)
        for transform in self.input_transforms:
            inputs = transform.generator_update(inputs, self.global_step)
        # D is frozen: not its DDP wrapper, so its gradients are not synchronised under DDP.
        scorer: Callable[..., Tensor] = self._compiled.get("discriminator", self.discriminator)
        if self.unrolled_steps:
            scorer = unrolled_scorer(
                self.discriminator, opt_d.optimizer, self.loss, inputs.real, inputs.fake, self.unrolled_steps,
                self.unrolled_lr, inputs.real_labels, inputs.fake_labels,
            )
        fake_scores = self._score(scorer, inputs.fake, inputs.fake_labels)
        real_scores = self._score(scorer, inputs.real, inputs.real_labels) if self.loss.generator_needs_real_scores else None
        adversarial = self.loss.generator_loss(fake_scores, real_scores)
        regularization: Tensor | float = 0.0
        if due:
            ctx = RegularizerContext(
                self.discriminator, self._trained("generator", True), real, fake, z, self._grad_scale(), real_labels, fake_labels
            )
            regularization = self._regularization(due, ctx)
        loss = adversarial + regularization
        opt_g.zero_grad(set_to_none=True)
        if not self._skip_update("generator", adversarial, regularization):  # a skipped update is not a G step
            self._backward(loss)
            if self._step_generator(opt_g):
                self._after_generator_step()
        if self.nonfinite.policy == "stop":
            self.nonfinite.record(self.global_step, *self._d_terms, adversarial.detach(), self._guarded(regularization))
        return loss.detach()

    def _due_regularizers(self, phase: str) -> list[Regularizer]:
        return [reg for reg in self.regularizers if reg.phase == phase and reg.is_due(self.global_step)]

    @staticmethod
    def _regularization(due: list[Regularizer], ctx: RegularizerContext) -> Tensor | float:
        total: Tensor | float = 0.0
        for reg in due:
            total = total + reg(ctx)
        return total

    def _after_generator_step(self) -> None:
        """EMA and learning-rate schedules advance once per counted generator step."""
        if self.generator_ema is not None and self.ema_decay is not None:  # (an EMA set from outside is left alone)
            update_ema(self.generator_ema, self.generator, self.ema_decay, self.global_step, self.ema_start_step)
        for scheduler in self._schedulers:
            scheduler.step()

    def _skip_update(self, network: str, adversarial: Tensor, regularization: Tensor | float) -> bool:
        """``nonfinite=skip``: whether to skip this update (nothing is computed under the other policies).

        Under a GradScaler an overflowing penalty is the scaler's to handle (it skips the step and lowers the
        scale); skipping the update here would keep the scale, and the overflow, for ever.
        """
        if self.nonfinite.policy != "skip":
            return False
        return self.nonfinite.should_skip(network, adversarial + self._guarded(regularization))

    def _guarded(self, regularization: Tensor | float) -> Tensor | float:
        """The regularization term as the non-finite guard sees it.

        Under 16-bit mixed precision, a penalty's scaled input gradient overflows whenever the loss scale is
        too high (the PyTorch AMP gradient-penalty recipe); the GradScaler then skips the step and lowers the
        scale, as for any overflow, so that is not a divergence to stop on.
        """
        return _detach(regularization) if self._grad_scale() is None else 0.0

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

    def _step_generator(self, opt_g: Any) -> bool:
        """Step G and count it as a generator step unless the 16-bit scaler skipped it (inf/NaN gradients)."""
        scaler = getattr(self.trainer.precision_plugin, "scaler", None)
        scale_before = scaler._scale.clone() if scaler is not None and scaler.is_enabled() and scaler._scale is not None else None
        self._step_uncounted(opt_g)
        # GradScaler.step has already synchronised to decide; reading the scale back costs nothing more.
        if scale_before is not None and bool(scaler._scale < scale_before):
            self.skipped_generator_steps += 1
            return False
        progress = self.trainer.fit_loop.epoch_loop.manual_optimization.optim_step_progress
        progress.increment_ready()
        progress.increment_completed()
        return True

    def on_train_start(self) -> None:
        self._lean = self._lean_dispatch()
        start_next_epoch_after_resume_at_epoch_end(self.trainer)
        if self._rng_to_restore is not None:
            # Restored here, after Lightning's setup and the callbacks' on_train_start (which may draw random
            # numbers) and before what an uninterrupted run also does between the saved step and the next one
            # (on_train_epoch_start at an epoch boundary, on_train_batch_start hooks): both runs then draw the same.
            restore_rng_state(self._rng_to_restore)
            self._rng_to_restore = None

    def _lean_dispatch(self) -> Optional[list[Callback]]:
        """Whether backward and optimizer steps may skip Lightning's dispatch layers, and which callbacks to call.

        With 32-bit precision on one device and no profiler, ``manual_backward`` and ``LightningOptimizer.step``
        only call hooks; dispatching hooks that no callback implements costs a few hundred microseconds per
        generator step, which is most of the framework's overhead on small networks. The hooks that are
        implemented (``on_before_optimizer_step``: gradient clipping, gradient-norm logging) are still called,
        in the same order. Anything else (mixed precision, DDP, a profiler, backward hooks) takes Lightning's path.
        Returns the callbacks implementing ``on_before_optimizer_step``, or None for Lightning's path.
        """
        trainer = self.trainer
        if type(trainer.precision_plugin) is not Precision or type(trainer.strategy) is not SingleDeviceStrategy:
            return None
        if not isinstance(trainer.profiler, PassThroughProfiler):
            return None
        for hook in ("on_before_backward", "on_after_backward"):
            if any(getattr(type(cb), hook) is not getattr(Callback, hook) for cb in trainer.callbacks):
                return None
        for hook in ("backward", "on_before_backward", "on_after_backward", "optimizer_step"):
            if getattr(type(self), hook) is not getattr(LightningModule, hook) and hook not in GANModule.__dict__:
                return None
        base = Callback.on_before_optimizer_step
        return [cb for cb in trainer.callbacks if type(cb).on_before_optimizer_step is not base]

    def _backward(self, loss: Tensor) -> None:
        if self._lean is not None:
            loss.backward()
        else:
            self.manual_backward(loss)

    def _step_uncounted(self, optimizer: Any) -> None:
        """Step an optimizer without advancing ``global_step`` (which counts generator steps only)."""
        if self._lean is not None:
            raw = optimizer.optimizer
            previous, self._current_fx_name = self._current_fx_name, "on_before_optimizer_step"
            try:
                for callback in self._lean:
                    callback.on_before_optimizer_step(self.trainer, self, raw)
                self.on_before_optimizer_step(raw)
            finally:
                self._current_fx_name = previous
            raw.step()
            return
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
        loss, real_scores, fake_scores = self.loss.diagnostic_scores(real_scores, fake_scores)
        if loss.scores_are_logits:
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
                labels = torch.zeros(1, dtype=torch.long, device=self.device) if self.num_classes else None
                fake = self._generate(self.generator, self.sample_latent(1, torch.Generator().manual_seed(0)), labels)
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
