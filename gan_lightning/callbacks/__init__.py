"""Lightning callbacks of gan_lightning."""

from gan_lightning.callbacks.checkpoint import GANCheckpoint

__all__ = ["GANCheckpoint"]
