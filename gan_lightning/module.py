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

import io
import warnings
from pathlib import Path
from typing import IO, Any, Callable, Iterable, Literal, NamedTuple, Optional, Sequence, Union

import torch
from lightning.pytorch import LightningModule
from torch import Tensor, nn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler

from gan_lightning.tricks.discriminator_inputs import DiscriminatorBatch, DiscriminatorInputTransform
from gan_lightning.tricks.ema import check_ema_options, make_ema_copy, update_ema
from gan_lightning.errors import ConfigurationError
from gan_lightning.losses import AdversarialLoss, build_loss
from gan_lightning.networks.interface import eval_mode, num_classes_of
from gan_lightning.regularizers import Regularizer, RegularizerContext, StatefulRegularizer
from gan_lightning.runtime.nonfinite import NonFiniteGuard, assert_finite_parameters
from gan_lightning.runtime.rng import gather_rng_states, restore_rng_state
from gan_lightning.runtime.internals import attached_trainer
from gan_lightning.runtime.steps import OptimizerSteps
from gan_lightning.tricks.unrolled import unrolled_scorer
from gan_lightning.tricks.augment import Augmentation, build_augmentation
from gan_lightning.runtime.trust import TrustedModules, check_hparams_file, is_plain, load_checked_checkpoint
from gan_lightning.tricks.top_k import TopK
from gan_lightning.runtime.resume import start_next_epoch_after_resume_at_epoch_end

OptimizerFactory = Callable[[Iterable], Optimizer]
SchedulerFactory = Callable[[Optimizer], LRScheduler]

# An internal Lightning deprecation notice that users cannot act on.
warnings.filterwarnings("ignore", message=".*isinstance\\(treespec, LeafSpec\\)` is deprecated.*")


def default_optimizer(params: Iterable) -> Optimizer:
    """Adam(lr=2e-4, betas=(0.5, 0.999)): the DCGAN paper's setting (Radford et al. 2016, Sec. 4)."""
    return torch.optim.Adam(params, lr=2e-4, betas=(0.5, 0.999))




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
        input_transforms: changes to what D sees (:mod:`gan_lightning.tricks.discriminator_inputs`: instance noise,
            label flipping), applied in order.
        generator_scheduler / discriminator_scheduler: callables ``optimizer -> LRScheduler``, both stepped once
            per generator step (SNGAN's linear decay to zero is ``torch.optim.lr_scheduler.LinearLR`` with
            ``end_factor: 0``).
        generator_grad_clip / discriminator_grad_clip: maximum gradient norm of each network, applied to the
            unscaled gradients (also under 16-bit mixed precision).
        ema_decay: keep ``generator_ema``, an exponential moving average of the generator
            (:mod:`gan_lightning.tricks.ema`), updated after every generator step from ``ema_start_step`` on.
        unrolled_steps: train G against D unrolled this many steps (Metz et al. 2017; :mod:`gan_lightning.tricks.unrolled`),
            with the learning rate ``unrolled_lr`` (default: D's own).
        compile_networks: run G and D through ``torch.compile`` in training (not with ``gan_ddp``). Forward
            passes whose input gradient is differentiated again (R1, R2, penalties) use the eager network,
            since compiled graphs do not support double backward.
        augment: differentiable augmentation of everything D sees (:mod:`gan_lightning.tricks.augment`):
            ``diffaugment`` (Zhao et al. 2020), ``ada`` (Karras et al. 2020, adaptive p) or a class_path block.
            Real and fake batches are augmented in both updates, and D-side penalties see the augmented
            batches; samples drawn with ``generate`` are never augmented.
        top_k: train G on the k highest-scored fakes of each batch only, k annealed from the batch size
            (Sinha et al. 2020; :mod:`gan_lightning.tricks.top_k`).

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
        augment: Optional[Union[str, Augmentation]] = None,
        top_k: Optional[TopK] = None,
    ):
        super().__init__()
        self.automatic_optimization = False
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*is an instance of `nn.Module`.*")
            self.save_hyperparameters()
        # Keep only plain config values: objects in hparams would make checkpoints need weights_only=False.
        for key in [k for k, v in self.hparams.items() if not is_plain(v)]:
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
        self.augment = build_augmentation(augment)  # a submodule: its state (ADA's p) is in the state_dict
        self._scheduler_factories = (generator_scheduler, discriminator_scheduler)
        self._schedulers: list[LRScheduler] = []
        self.grad_clip = {"generator": generator_grad_clip, "discriminator": discriminator_grad_clip}
        self.unrolled_steps, self.unrolled_lr = unrolled_steps, unrolled_lr
        self.compile_networks = compile_networks
        self._compiled: dict[str, nn.Module] = {}  # kept out of the module tree: checkpoint keys stay the same
        self.loss = build_loss(loss)
        self.regularizers = list(self.loss.regularizers()) + list(regularizers or [])
        for reg in self.regularizers:
            if reg.phase not in ("discriminator", "generator", "both"):
                raise ConfigurationError(f"{reg!r}: phase must be 'discriminator', 'generator' or 'both', got {reg.phase!r}")
        # Regularizers with state (LeCam's anchors) are submodules: their buffers are in the state_dict and checkpoints.
        self.regularizer_states = nn.ModuleList([reg for reg in self.regularizers if isinstance(reg, StatefulRegularizer)])
        if top_k is not None and self.loss.multi_column:
            raise ConfigurationError(
                f"--model.top_k ranks one score per fake sample, but {type(self.loss).__name__} scores each sample with "
                "several discriminators or heads; remove top_k or use a single-discriminator loss."
            )
        self.top_k = top_k
        self.latent_dim = latent_dim
        self.latent_distribution = latent_distribution
        self.n_critic = n_critic
        self.nonfinite = NonFiniteGuard(nonfinite)
        self._optimizer_factories = (generator_optimizer or default_optimizer, discriminator_optimizer or default_optimizer)
        self._data_checked = False
        self._d_terms: tuple[Tensor, Tensor | float] = (torch.zeros(()), 0.0)
        self.last_step_outputs: Optional[StepOutputs] = None
        self._rng_to_restore: Optional[dict[str, Any]] = None
        #: backward, optimizer steps, step counting and per-network loss scalers (gan_lightning.runtime.steps)
        self.optimizer_steps = OptimizerSteps(self)
        self._distributed: dict[str, Optional[nn.Module]] = {}

    # ------------------------------------------------------------------ loading
    @classmethod
    def load_from_checkpoint(  # type: ignore[override]
        cls,
        checkpoint_path: Union[str, Path, IO[bytes]],
        map_location: Any = None,
        hparams_file: Optional[Union[str, Path]] = None,
        strict: Optional[bool] = None,
        weights_only: Optional[bool] = True,
        trusted_modules: Union[str, Sequence[str], None] = None,
        **kwargs: Any,
    ) -> "GANModule":
        """Lightning's ``load_from_checkpoint``, made unable to run code from the file (:mod:`gan_lightning.runtime.trust`).

        The file is read once with ``torch.load(weights_only=True)``, and every class its hyper-parameters name must
        come from a trusted module (gan_lightning, torch, torchvision, ``trusted_modules``, or
        ``$GAN_LIGHTNING_TRUSTED_MODULES``) before Lightning imports anything; otherwise
        :class:`~gan_lightning.errors.UnsafeCheckpointError`. Keyword arguments (e.g. ``generator=...``) replace
        the recorded values and are not checked.
        """
        if weights_only is False:
            raise ConfigurationError(
                "GANModule.load_from_checkpoint reads checkpoints with weights_only=True only: full unpickling can run "
                "code from the file. Checkpoints written by gan_lightning hold only tensors and plain values."
            )
        trusted = TrustedModules(trusted_modules)
        checkpoint, raw = load_checked_checkpoint(checkpoint_path, trusted, overridden=kwargs)
        if hparams_file is not None:
            check_hparams_file(hparams_file, trusted)
        del checkpoint  # Lightning reads the same bytes again, with weights_only=True
        return super().load_from_checkpoint(
            io.BytesIO(raw), map_location=map_location, hparams_file=hparams_file, strict=strict, weights_only=True, **kwargs
        )

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
    def run_generator(network: nn.Module, z: Tensor, labels: Optional[Tensor] = None) -> Tensor:
        """``network(z)``, or ``network(z, labels)`` for a conditional GAN: how every generator is called."""
        return network(z) if labels is None else network(z, labels)

    @staticmethod
    def run_discriminator(network: Callable[..., Tensor], x: Tensor, labels: Optional[Tensor] = None) -> Tensor:
        """``network(x)``, or ``network(x, labels)`` for a conditional GAN: how every discriminator is called."""
        return network(x) if labels is None else network(x, labels)

    def forward(self, z: Tensor, labels: Optional[Tensor] = None) -> Tensor:
        return self.run_generator(self.generator, z, labels)

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
        chunks = []
        with eval_mode(network):
            for i in range(0, n, batch_size):
                z = self.sample_latent(min(batch_size, n - i), rng)
                y = None if labels is None else labels[i : i + len(z)].to(self.device)
                chunks.append(self.run_generator(network, z, y))
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
        datamodule = self.trainer.datamodule if attached_trainer(self) is not None else None
        if datamodule is not None and hasattr(datamodule, "batches_per_step"):
            datamodule.batches_per_step = self.n_critic
        if self.compile_networks and not self._compiled:
            self._compiled = {name: torch.compile(getattr(self, name)) for name in ("generator", "discriminator")}

    def on_train_start(self) -> None:
        self.optimizer_steps.on_train_start()
        start_next_epoch_after_resume_at_epoch_end(self.trainer)
        if self._rng_to_restore is not None:
            # Restored here, after Lightning's setup and the callbacks' on_train_start (which may draw random
            # numbers) and before what an uninterrupted run also does between the saved step and the next one
            # (on_train_epoch_start at an epoch boundary, on_train_batch_start hooks): both runs then draw the same.
            restore_rng_state(self._rng_to_restore)
            self._rng_to_restore = None

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.nonfinite.check(self.global_step)
        assert_finite_parameters(self, self.global_step)
        d_scaler = self.optimizer_steps.state_dict()
        if d_scaler is not None:
            checkpoint["discriminator_grad_scaler"] = d_scaler
        checkpoint["rng_states"] = gather_rng_states(attached_trainer(self))

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.optimizer_steps.load_state_dict(checkpoint.get("discriminator_grad_scaler"))
        states = checkpoint.get("rng_states")
        if states:
            rank = self.trainer.global_rank if attached_trainer(self) is not None else 0
            self._rng_to_restore = states[rank] if rank < len(states) else None

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

        self.optimizer_steps.use_scaler("discriminator")
        for real, real_y in zip(reals, real_labels):
            d_loss, real_scores, fake_scores = self._discriminator_step(real, real_y, opt_d)

        self.optimizer_steps.use_scaler("generator")
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
            fake = self.run_generator(self._trained("generator"), z, fake_labels)
        inputs = self._augmented(DiscriminatorBatch(real, fake, real_labels, fake_labels), real=True)
        for transform in self.input_transforms:
            inputs = transform.discriminator_update(inputs, self.global_step)
        due = self._due_regularizers("discriminator")
        wanted = {reg.input_gradient_of for reg in due}
        # Penalties on D's input gradient (R1, R2) reuse this forward pass: the input must require grad.
        real_in = inputs.real.detach().requires_grad_(True) if "real" in wanted else inputs.real
        fake_in = inputs.fake.detach().requires_grad_(True) if "fake" in wanted else inputs.fake
        discriminator = self._trained("discriminator", double_backward=bool(wanted - {None}))
        real_scores = self.run_discriminator(discriminator, real_in, inputs.real_labels)
        fake_scores = self.run_discriminator(discriminator, fake_in, inputs.fake_labels)
        adversarial = self.loss.discriminator_loss(real_scores, fake_scores)
        regularization: Tensor | float = 0.0
        if due:
            ctx = RegularizerContext(
                self._trained("discriminator", True), self._trained("generator", True), real_in, fake_in, z, self.optimizer_steps.grad_scale(),
                inputs.real_labels, inputs.fake_labels, real_scores, fake_scores, phase="discriminator", augment=self.augment,
            )
            regularization = self._regularization(due, ctx)
        loss = adversarial + regularization
        opt_d.zero_grad(set_to_none=True)
        if not self._skip_update("discriminator", adversarial, regularization):
            self.optimizer_steps.backward(loss)
            self.optimizer_steps.step_uncounted(opt_d)
            self.loss.after_discriminator_step(self.discriminator)
        self._d_terms = (adversarial.detach(), self._guarded(regularization))
        if self.augment is not None:
            self.augment.observe(self.loss.diagnostic_scores(real_scores.detach(), fake_scores.detach())[1])
        return loss.detach(), real_scores.detach(), fake_scores.detach()

    def _generator_step(self, real: Tensor, real_labels: Optional[Tensor], opt_g: Any, opt_d: Any) -> Tensor:
        n = real.shape[0]
        z, fake_labels = self.sample_latent(n), self.sample_labels(n)
        due = self._due_regularizers("generator")
        if fake_labels is not None and any(reg.pairs_halves for reg in due):
            half = n // 2  # mode seeking compares G(c, z1) with G(c, z2): one class per pair (Mao et al. 2019)
            fake_labels = torch.cat([fake_labels[:half], fake_labels[:half], fake_labels[2 * half:]])
        fake = self.run_generator(self._trained("generator"), z, fake_labels)
        needs_real = self.loss.generator_needs_real_scores or self.unrolled_steps > 0
        inputs = self._augmented(DiscriminatorBatch(real, fake, real_labels, fake_labels), real=needs_real)
        for transform in self.input_transforms:
            inputs = transform.generator_update(inputs, self.global_step)
        # D is frozen: not its DDP wrapper, so its gradients are not synchronised under DDP.
        scorer: Callable[..., Tensor] = self._compiled.get("discriminator", self.discriminator)
        if self.unrolled_steps:
            scorer = unrolled_scorer(
                self.discriminator, opt_d.optimizer, self.loss, inputs.real, inputs.fake, self.unrolled_steps,
                self.unrolled_lr, inputs.real_labels, inputs.fake_labels,
            )
        fake_scores = self.run_discriminator(scorer, inputs.fake, inputs.fake_labels)
        real_scores = self.run_discriminator(scorer, inputs.real, inputs.real_labels) if self.loss.generator_needs_real_scores else None
        if self.top_k is not None:
            k = self.top_k.k(n, self.current_epoch, self.global_step)
            fake_scores = TopK.select(fake_scores, self.loss.diagnostic_scores(fake_scores, fake_scores)[2], k)
        adversarial = self.loss.generator_loss(fake_scores, real_scores)
        regularization: Tensor | float = 0.0
        if due:
            ctx = RegularizerContext(
                self.discriminator, self._trained("generator", True), real, fake, z, self.optimizer_steps.grad_scale(), real_labels, fake_labels,
                phase="generator", augment=self.augment,
            )
            regularization = self._regularization(due, ctx)
        loss = adversarial + regularization
        opt_g.zero_grad(set_to_none=True)
        if not self._skip_update("generator", adversarial, regularization):  # a skipped update is not a G step
            self.optimizer_steps.backward(loss)
            if self.optimizer_steps.step_generator(opt_g):
                self._after_generator_step()
        if self.nonfinite.policy == "stop":
            self.nonfinite.record(self.global_step, *self._d_terms, adversarial.detach(), self._guarded(regularization))
        return loss.detach()

    def _augmented(self, inputs: DiscriminatorBatch, real: bool) -> DiscriminatorBatch:
        """D's view of the batches through ``augment``, each sample with its own draw (the fakes keep their graph
        to G, so G learns through the augmentation); the real batch only when D will judge it."""
        if self.augment is None:
            return inputs
        return inputs._replace(real=self.augment(inputs.real) if real else inputs.real, fake=self.augment(inputs.fake))

    def _due_regularizers(self, phase: str) -> list[Regularizer]:
        return [reg for reg in self.regularizers if reg.phase in (phase, "both") and reg.is_due(self.global_step)]

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
        return _detach(regularization) if self.optimizer_steps.grad_scale() is None else 0.0

    def _grad_scale(self) -> Optional[Tensor]:
        """The 16-bit loss scale as a tensor (no host sync), for scaled ``autograd.grad`` in penalties."""
        scaler = getattr(self.trainer.precision_plugin, "scaler", None)
        if scaler is None or not scaler.is_enabled():
            return None
        if getattr(scaler, "_scale", None) is None:
            scaler._lazy_init_scale_growth_tracker(self.device)
        return scaler._scale

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
        if self.augment is not None:
            metrics.update(self.augment.scalars())
        if self.top_k is not None:
            metrics["top_k"] = float(self.top_k.k(real_scores.shape[0], self.current_epoch, self.global_step))
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
        with torch.no_grad(), eval_mode(self.generator):
            labels = torch.zeros(1, dtype=torch.long, device=self.device) if self.num_classes else None
            fake = self.run_generator(self.generator, self.sample_latent(1, torch.Generator().manual_seed(0)), labels)
        if tuple(fake.shape[1:]) != tuple(real.shape[1:]):
            raise ConfigurationError(
                f"The generator makes samples of shape {tuple(fake.shape[1:])} but the data has shape "
                f"{tuple(real.shape[1:])}. Match the generator and discriminator to the data (image_size, channels "
                "or output_dim in --model.generator.init_args / --model.discriminator.init_args)."
            )
        self._data_checked = True


def _detach(value: Tensor | float) -> Tensor | float:
    return value.detach() if isinstance(value, Tensor) else value
