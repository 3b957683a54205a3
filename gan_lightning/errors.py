"""User-facing errors.

Everything the user can fix (a config value, a missing file, a bad image) raises a subclass of
``GANLightningError``; the command line prints its message without a traceback.
"""

from __future__ import annotations

import re

#: How PyTorch re-raises an exception from a DataLoader worker (``torch._utils.ExceptionWrapper.reraise``): it
#: builds a new exception of the same class from "Caught <Class> in DataLoader worker process N.\nOriginal
#: Traceback ..." and the worker's whole formatted traceback.
_WORKER_WRAPPER = re.compile(r"\ACaught (?P<cls>\w+) in .+?\.\nOriginal Traceback \(most recent call last\):\n")


class GANLightningError(Exception):
    """Base class of errors the user can fix; the message says what is wrong and how to fix it.

    An error raised in a DataLoader worker (``num_workers > 0``) reaches the main process rebuilt by PyTorch with
    the worker's traceback as its message; the rebuilt error keeps only the original message, the same one line
    as with ``num_workers=0``, and the worker's traceback in ``worker_traceback``.
    """

    worker_traceback: str | None = None

    def __init__(self, *args: object):
        if len(args) == 1 and isinstance(args[0], str):
            wrapped = _WORKER_WRAPPER.match(args[0])
            if wrapped is not None and wrapped["cls"] == type(self).__name__:
                self.worker_traceback = args[0]
                args = (_original_message(args[0], type(self)),)
        super().__init__(*args)


def _original_message(text: str, cls: type) -> str:
    """The message of the last ``module.Class: message`` line (and the lines after it) of a formatted traceback."""
    marker = f"\n{cls.__module__}.{cls.__qualname__}: "
    start = text.rfind(marker)
    return text[start + len(marker):].rstrip("\n") if start >= 0 else text


class ConfigurationError(GANLightningError, ValueError):
    """A configuration value that cannot work (unknown loss name, impossible image size, ...)."""


class DatasetError(GANLightningError, RuntimeError):
    """Data that is missing, empty or unreadable."""


class CheckpointError(GANLightningError, RuntimeError):
    """A checkpoint that is missing or does not fit the model."""


class UnsafeCheckpointError(CheckpointError):
    """A checkpoint (or other file) that loading could make run code: a pickle payload, or a class path outside the
    trusted modules (:mod:`gan_lightning.runtime.trust`). Nothing in it was run."""
