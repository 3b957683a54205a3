"""User-facing errors.

Everything the user can fix (a config value, a missing file, a bad image) raises a subclass of
``GANLightningError``; the command line prints its message without a traceback.
"""


class GANLightningError(Exception):
    """Base class of errors the user can fix; the message says what is wrong and how to fix it."""


class ConfigurationError(GANLightningError, ValueError):
    """A configuration value that cannot work (unknown loss name, impossible image size, ...)."""


class DatasetError(GANLightningError, RuntimeError):
    """Data that is missing, empty or unreadable."""


class CheckpointError(GANLightningError, RuntimeError):
    """A checkpoint that is missing or does not fit the model."""


class UnsafeCheckpointError(CheckpointError):
    """A checkpoint (or other file) that loading could make run code: a pickle payload, or a class path outside the
    trusted modules (:mod:`gan_lightning.runtime.trust`). Nothing in it was run."""
