"""gan_lightning: GAN experiments on PyTorch Lightning."""

from gan_lightning import console  # noqa: F401  (first: the ``gan_lightning`` logger prints before anything logs)

from gan_lightning.callbacks import (
    BalanceDiagnosticsCallback,
    GANCheckpoint,
    GANEvaluation,
    LossCurvesCallback,
    SampleGridCallback,
    SlurmRequeue,
    TimelapseCallback,
)
from gan_lightning.losses import (
    AdversarialLoss,
    HingeLoss,
    LeastSquaresLoss,
    MinimaxLoss,
    NonSaturatingLoss,
    RelativisticAverageLoss,
    WassersteinGPLoss,
    WassersteinLoss,
    available_losses,
    build_loss,
    register_loss,
)
from gan_lightning.module import GANModule
from gan_lightning.multi_discriminator import MultiDiscriminator, MultiDiscriminatorLoss  # registers "gman"
from gan_lightning.multi_generator import MGANDiscriminator, MGANLoss, MultiGenerator  # registers "mgan"
from gan_lightning.regularizers import GradientPenalty, Regularizer, RegularizerContext
from gan_lightning.strategies import GANDDPStrategy

__version__ = "0.1.0"

__all__ = [
    "MGANDiscriminator",
    "MGANLoss",
    "MultiDiscriminator",
    "MultiDiscriminatorLoss",
    "MultiGenerator",
    "AdversarialLoss",
    "BalanceDiagnosticsCallback",
    "GANEvaluation",
    "LossCurvesCallback",
    "SampleGridCallback",
    "SlurmRequeue",
    "TimelapseCallback",
    "GANCheckpoint",
    "GANDDPStrategy",
    "GANModule",
    "GradientPenalty",
    "HingeLoss",
    "LeastSquaresLoss",
    "MinimaxLoss",
    "NonSaturatingLoss",
    "Regularizer",
    "RegularizerContext",
    "RelativisticAverageLoss",
    "WassersteinGPLoss",
    "WassersteinLoss",
    "available_losses",
    "build_loss",
    "register_loss",
]
