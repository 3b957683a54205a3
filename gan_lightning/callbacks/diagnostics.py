"""D/G balance diagnostics as scalars: discriminator accuracy (or the Wasserstein estimate) and gradient norms.

A discriminator that wins outright (accuracy near 1 on both sides, tiny G gradients) or a generator whose
gradients dwarf the discriminator's are the usual signs of an unbalanced game; the losses alone rarely show
it. Values are logged like the module's own scalars (``pl_module.log_scalars``: every logger, at x = the
generator step, and ``callback_metrics``), only on logging steps, as device tensors: no host sync per step.
Gradient norms are computed in ``on_before_optimizer_step``, which Lightning 2.6 also calls under manual
optimization, for both optimizers, after the 16-bit gradients have been unscaled; only on logging steps,
and kept until the end of the iteration so that they are logged at the same x as everything else.

With a TensorBoard logger it also registers a custom-scalars layout (losses, D outputs, gradient norms)
and writes the hyper-parameters together with final metrics, so runs can be compared in the HParams tab.
"""

from __future__ import annotations

from typing import Any, Optional

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.loggers import TensorBoardLogger
from torch import Tensor
from torch.optim import Optimizer

from gan_lightning.errors import ConfigurationError
from gan_lightning.losses import AdversarialLoss
from gan_lightning.runtime import internals

ACC_REAL, ACC_FAKE = "balance/d_acc_real", "balance/d_acc_fake"
WASSERSTEIN = "balance/wasserstein_estimate"
GRAD_G, GRAD_D, GRAD_RATIO = "grad_norm/generator", "grad_norm/discriminator", "grad_norm/g_over_d"


def gradient_norm(optimizer: Optimizer) -> Optional[Tensor]:
    """Total L2 norm of the gradients of the optimizer's parameters (a device tensor), None without gradients."""
    grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
    if not grads:
        return None
    norms = internals.foreach_norm([g.detach().float() for g in grads])
    return torch.linalg.vector_norm(torch.stack(norms))


def log_scalars(trainer: Trainer, pl_module: LightningModule, metrics: dict[str, Tensor]) -> None:
    """Log at x = ``trainer.global_step`` (generator steps), the way the module logs its own scalars.

    ``pl_module.log`` would put Lightning's per-batch counter (one behind) on the x-axis, so GANModule's
    ``log_scalars`` writes to the loggers with an explicit step; modules without it get the same here.
    """
    module_log = getattr(pl_module, "log_scalars", None)
    if callable(module_log):
        module_log(metrics)
        return
    pl_module.log_dict(metrics, on_step=True, on_epoch=False, logger=False, batch_size=1)
    for logger in trainer.loggers:
        logger.log_metrics({k: v.detach() for k, v in metrics.items()}, step=trainer.global_step)


class BalanceDiagnosticsCallback(Callback):
    """Log D accuracy (or the Wasserstein estimate) and G/D gradient norms every ``every_n_steps`` steps.

    Args:
        every_n_steps: interval in generator steps (default: ``trainer.log_every_n_steps``).
        threshold: the score above which D calls a sample real, overriding the loss's :meth:`~gan_lightning.losses.AdversarialLoss.decision_threshold`.
        grad_norms: log ``grad_norm/generator``, ``grad_norm/discriminator`` and their ratio.
        tensorboard_layout: register the custom-scalars layout with TensorBoard loggers.
        hparams_metrics: at the end of training, write the hyper-parameters with the final losses
            (``hparams/final_d_loss``, ``hparams/final_g_loss``) to TensorBoard loggers, for the HParams tab.

    Scalars: ``balance/d_acc_real``, ``balance/d_acc_fake`` (or ``balance/wasserstein_estimate``), and the
    gradient norms. The module itself logs ``d_loss``, ``g_loss`` and the mean D outputs ``d_real``/``d_fake``.
    With ``n_critic > 1`` the discriminator values are those of the last critic step of the logged iteration.
    """

    def __init__(
        self,
        every_n_steps: Optional[int] = None,
        threshold: Optional[float] = None,
        grad_norms: bool = True,
        tensorboard_layout: bool = True,
        hparams_metrics: bool = True,
    ):
        if every_n_steps is not None and every_n_steps < 1:
            raise ConfigurationError(f"BalanceDiagnosticsCallback: every_n_steps must be >= 1, got {every_n_steps}")
        self.every_n_steps = every_n_steps
        self.threshold = threshold
        self.grad_norms = grad_norms
        self.tensorboard_layout = tensorboard_layout
        self.hparams_metrics = hparams_metrics
        self._norms: dict[str, Tensor] = {}  # this iteration's gradient norms, logged at its end

    def _is_logging_step(self, trainer: Trainer, step: int) -> bool:
        interval = self.every_n_steps or trainer.log_every_n_steps
        return interval > 0 and step % interval == 0

    # ------------------------------------------------------------------ set-up
    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self.tensorboard_layout and trainer.is_global_zero:
            for logger in trainer.loggers:
                if isinstance(logger, TensorBoardLogger):
                    logger.experiment.add_custom_scalars(self.layout(pl_module))

    def layout(self, pl_module: LightningModule) -> dict[str, dict[str, list]]:
        """TensorBoard custom-scalars layout: one category per question (losses, D outputs, gradients)."""
        loss = pl_module.loss
        accuracy = loss.discriminator_accuracy(torch.zeros(1), torch.zeros(1), self.threshold) is not None
        d_outputs: dict[str, list] = {"mean D(x) and D(G(z))": ["Multiline", ["^d_real$", "^d_fake$"]]}
        if accuracy:
            d_outputs["D accuracy on real and fake"] = ["Multiline", [f"^{ACC_REAL}$", f"^{ACC_FAKE}$"]]
        else:
            d_outputs["Wasserstein estimate E[D(x)] - E[D(G(z))]"] = ["Multiline", [f"^{WASSERSTEIN}$"]]
        layout = {
            "Losses": {"D and G loss": ["Multiline", ["^d_loss$", "^g_loss$"]]},
            "D outputs": d_outputs,
        }
        if self.grad_norms:
            layout["Gradient norms"] = {
                "G and D gradient norm": ["Multiline", [f"^{GRAD_G}$", f"^{GRAD_D}$"]],
                "G / D gradient norm ratio": ["Multiline", [f"^{GRAD_RATIO}$"]],
            }
        return layout

    # ------------------------------------------------------------------ per step
    def on_before_optimizer_step(self, trainer: Trainer, pl_module: LightningModule, optimizer: Optimizer) -> None:
        # global_step counts generator steps and grows after the G optimizer steps: this iteration ends at +1.
        if not self.grad_norms or not self._is_logging_step(trainer, trainer.global_step + 1):
            return
        optimizers = trainer.optimizers
        if len(optimizers) < 2:
            return
        norm = gradient_norm(optimizer)
        if norm is None:
            return
        if optimizer is optimizers[1]:  # discriminator: runs n_critic times, the last one is logged
            self._norms[GRAD_D] = norm
        elif optimizer is optimizers[0]:  # generator: after the critic steps of the same iteration
            self._norms[GRAD_G] = norm
            if GRAD_D in self._norms:
                self._norms[GRAD_RATIO] = norm / self._norms[GRAD_D].clamp(min=1e-12)

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int) -> None:
        last = getattr(pl_module, "last_step_outputs", None)
        norms, self._norms = self._norms, {}
        if last is None or not self._is_logging_step(trainer, trainer.global_step):
            return
        loss, real, fake = pl_module.loss.diagnostic_scores(last.real_scores, last.fake_scores)
        accuracy = loss.discriminator_accuracy(real, fake, self.threshold)
        metrics: dict[str, Tensor] = dict(norms)
        if accuracy is None:
            metrics[WASSERSTEIN] = real.float().mean() - fake.float().mean()
        else:
            metrics[ACC_REAL], metrics[ACC_FAKE] = accuracy
        log_scalars(trainer, pl_module, metrics)

    # ------------------------------------------------------------------ end
    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        last = getattr(pl_module, "last_step_outputs", None)
        if not self.hparams_metrics or last is None or not trainer.is_global_zero:
            return
        loggers = [lg for lg in trainer.loggers if isinstance(lg, TensorBoardLogger)]
        if not loggers:
            return
        params: dict[str, Any] = dict(pl_module.hparams)
        datamodule = getattr(trainer, "datamodule", None)
        if datamodule is not None and getattr(datamodule, "hparams", None):
            params.update(datamodule.hparams)
        metrics = {"hparams/final_d_loss": float(last.d_loss), "hparams/final_g_loss": float(last.g_loss)}
        for logger in loggers:
            logger.log_hyperparams(params, metrics=metrics, step=trainer.global_step)
            logger.experiment.flush()
