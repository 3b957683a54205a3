"""gan_lightning: GAN experiments on PyTorch Lightning."""

from gan_lightning.runtime import console  # noqa: F401  (first: the ``gan_lightning`` logger prints before anything logs)
from gan_lightning import _aliases

_aliases.install()  # module paths from before the layout by concept keep importing (old configs, checkpoints)

from gan_lightning.callbacks import (
    BalanceDiagnosticsCallback,
    GANCheckpoint,
    GANEvaluation,
    GANProgressBar,
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
from gan_lightning.variants.gman import MultiDiscriminator, MultiDiscriminatorLoss  # registers "gman"
from gan_lightning.variants.mgan import (  # registers "mgan"
    MGANDCGANDiscriminator,
    MGANDiscriminator,
    MGANLoss,
    MultiDCGANGenerator,
    MultiGenerator,
)
from gan_lightning.regularizers import GradientPenalty, Regularizer, RegularizerContext
from gan_lightning.runtime.ddp import GANDDPStrategy
from gan_lightning.tricks.ada import ADA  # registers "ada"
from gan_lightning.tricks.augment import (
    Augmentation,
    DiffAugment,
    available_augmentations,
    build_augmentation,
    register_augmentation,
)

__version__ = "0.1.0"

__all__ = [
    "ADA",
    "Augmentation",
    "DiffAugment",
    "available_augmentations",
    "build_augmentation",
    "register_augmentation",
    "MGANDCGANDiscriminator",
    "MGANDiscriminator",
    "MGANLoss",
    "MultiDiscriminator",
    "MultiDiscriminatorLoss",
    "MultiDCGANGenerator",
    "MultiGenerator",
    "AdversarialLoss",
    "BalanceDiagnosticsCallback",
    "GANEvaluation",
    "GANProgressBar",
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
