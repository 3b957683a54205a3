"""Send an image to whatever loggers the trainer has, without assuming TensorBoard."""

from __future__ import annotations

from lightning.pytorch import Trainer
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_warn
from torch import Tensor


def log_image(trainer: Trainer, tag: str, image: Tensor, step: int) -> None:
    """Log a ``(C, H, W)`` float image in [0, 1] at ``step`` to every logger that can take images.

    TensorBoard gets ``add_image``; loggers with a ``log_image(key, images, step)`` method (Weights & Biases,
    and others following its signature) get that; loggers without images (CSV, MLflow) are skipped. Call
    from rank 0 only: it does no collective.
    """
    for logger in trainer.loggers:
        if isinstance(logger, TensorBoardLogger):
            logger.experiment.add_image(tag, image, global_step=step)
        elif callable(getattr(logger, "log_image", None)):
            try:
                logger.log_image(key=tag, images=[image], step=step)
            except TypeError as err:  # a log_image with another signature: skip it rather than stop training
                rank_zero_warn(f"{type(logger).__name__}.log_image did not accept the sample grid ({err}); skipped.")
