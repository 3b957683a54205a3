"""Remedies for mode collapse that ``ModeCollapseMonitor(action="rollback")`` switches on after restoring a healthy state.

A remedy is one small class with ``apply(pl_module) -> str`` (a description for the log). Applying it again is a
no-op: the monitor re-applies its remedies after every rollback and after a resume (the module is rebuilt from
its config, without them), so they must not stack. In YAML they are ``class_path``/``init_args`` blocks:

.. code-block:: yaml

    remedies:
      - class_path: gan_lightning.collapse.remedies.AddRegularizer
        init_args:
          regularizer: {class_path: gan_lightning.regularizers.ModeSeekingRegularizer}
      - class_path: gan_lightning.collapse.remedies.ScaleLearningRate
        init_args: {network: discriminator, factor: 0.5}
"""

from __future__ import annotations

from typing import Any, Literal

from lightning.pytorch import LightningModule

from gan_lightning.config_repr import ConfigRepr
from gan_lightning.tricks.discriminator_inputs import DiscriminatorInputTransform
from gan_lightning.errors import ConfigurationError
from gan_lightning.regularizers import Regularizer, StatefulRegularizer


class Remedy(ConfigRepr):
    """Base class: change the module (or its optimizers) in place, once; return what was done."""

    def apply(self, pl_module: LightningModule) -> str:
        raise NotImplementedError


def _append_once(items: list, item: Any, where: str) -> str:
    """Append ``item`` unless an object of its class is already there (a rollback or resume applies remedies again)."""
    if any(type(existing) is type(item) for existing in items):
        return f"{type(item).__name__} already on"
    items.append(item)
    return f"added {item!r} to {where}"


class AddRegularizer(Remedy):
    """Append a regularizer to ``pl_module.regularizers``, e.g. mode seeking (Mao et al. 2019), which rewards
    distinct samples for distinct latents. Skipped when a regularizer of the same class is already there."""

    def __init__(self, regularizer: Regularizer):
        if not isinstance(regularizer, Regularizer):
            raise ConfigurationError(
                f"AddRegularizer needs a gan_lightning.regularizers.Regularizer, got {type(regularizer).__name__}; e.g. "
                "{class_path: gan_lightning.regularizers.ModeSeekingRegularizer}."
            )
        if regularizer.phase not in ("discriminator", "generator"):
            raise ConfigurationError(f"{regularizer!r}: phase must be 'discriminator' or 'generator', got {regularizer.phase!r}")
        if isinstance(regularizer, StatefulRegularizer):
            # its buffers would not be in the module built from the config, so a checkpoint could not carry them
            raise ConfigurationError(
                f"AddRegularizer cannot add {type(regularizer).__name__} during training: it keeps state across steps, "
                "which checkpoints carry only for regularizers the module was built with. Put it in "
                "model.regularizers from the start instead."
            )
        self.regularizer = regularizer

    def apply(self, pl_module: LightningModule) -> str:
        return _append_once(pl_module.regularizers, self.regularizer, f"the {self.regularizer.phase} loss")


class AddInputTransform(Remedy):
    """Append a transform of D's inputs to ``pl_module.input_transforms``, e.g. instance noise (Sønderby et al.
    2017; Arjovsky & Bottou 2017), which keeps D from separating real and fake perfectly. Skipped when a transform
    of the same class is already there."""

    def __init__(self, transform: DiscriminatorInputTransform):
        if not isinstance(transform, DiscriminatorInputTransform):
            raise ConfigurationError(
                f"AddInputTransform needs a gan_lightning.tricks.discriminator_inputs transform, got {type(transform).__name__}; "
                "e.g. {class_path: gan_lightning.tricks.discriminator_inputs.InstanceNoise}."
            )
        self.transform = transform

    def apply(self, pl_module: LightningModule) -> str:
        return _append_once(pl_module.input_transforms, self.transform, "the discriminator's inputs")


#: Marker prefix in an optimizer param group: a factor this remedy already applied (saved with the optimizer state).
_LR_MARK = "gan_lightning_lr_scaled"


class ScaleLearningRate(Remedy):
    """Multiply one network's learning rate by ``factor`` in place (all param groups), e.g. a slower discriminator
    (0.5) so the generator is not pushed from mode to mode (the TTUR view, Heusel et al. 2017).

    The factor is recorded in the param groups (so in the optimizer's checkpointed state), which keeps a second
    application, a rollback or a resume from scaling twice. A schedule that recomputes the learning rate from
    its base values (rather than multiplying the current one) overrides the change at its next step.
    """

    def __init__(self, network: Literal["generator", "discriminator"] = "discriminator", factor: float = 0.5):
        if network not in ("generator", "discriminator"):
            raise ConfigurationError(f"ScaleLearningRate: network must be 'generator' or 'discriminator', got {network!r}")
        if not factor > 0:
            raise ConfigurationError(f"ScaleLearningRate: factor must be positive, got {factor}")
        self.network = network
        self.factor = factor

    def apply(self, pl_module: LightningModule) -> str:
        optimizers = pl_module.trainer.optimizers
        if len(optimizers) < 2:
            raise ConfigurationError("ScaleLearningRate needs a GAN module with a generator and a discriminator optimizer.")
        optimizer = optimizers[0 if self.network == "generator" else 1]
        mark = f"{_LR_MARK}_{self.factor:g}"
        if all(group.get(mark) for group in optimizer.param_groups):
            return f"{self.network} learning rate already scaled by {self.factor:g}"
        for group in optimizer.param_groups:
            if not group.get(mark):
                group["lr"] = group["lr"] * self.factor
                group[mark] = True
        lr = optimizer.param_groups[0]["lr"]
        return f"scaled the {self.network} learning rate by {self.factor:g} (now {lr:.3g})"
