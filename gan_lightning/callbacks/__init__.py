"""Lightning callbacks of gan_lightning."""

from gan_lightning.runtime.checkpointing import GANCheckpoint
from gan_lightning.callbacks.diagnostics import BalanceDiagnosticsCallback
from gan_lightning.callbacks.evaluation import GANEvaluation
from gan_lightning.callbacks.overfitting import DiscriminatorOverfittingCallback
from gan_lightning.callbacks.loss_curves import LossCurvesCallback, plot_loss_curves_from_tensorboard
from gan_lightning.collapse.monitor import ModeCollapseMonitor, ModeCollapseWarning
from gan_lightning.callbacks.progress import GANProgressBar
from gan_lightning.callbacks.samples import SampleGridCallback
from gan_lightning.callbacks.slurm import SlurmRequeue
from gan_lightning.callbacks.timelapse import TimelapseCallback, make_timelapse

__all__ = [
    "BalanceDiagnosticsCallback",
    "DiscriminatorOverfittingCallback",
    "GANCheckpoint",
    "GANEvaluation",
    "GANProgressBar",
    "LossCurvesCallback",
    "ModeCollapseMonitor",
    "ModeCollapseWarning",
    "SampleGridCallback",
    "SlurmRequeue",
    "TimelapseCallback",
    "make_timelapse",
    "plot_loss_curves_from_tensorboard",
]
