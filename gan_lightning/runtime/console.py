"""What a run prints on the console: the ``gan_lightning`` logger, and no Lightning lines a user cannot act on.

Alarms a user must see (the mode-collapse monitor's status changes) go to the ``gan_lightning`` logger at WARNING
level as well as being Python warnings, so silencing warnings (``PYTHONWARNINGS=ignore``, common given how many
Lightning emits) does not hide them. Like Lightning's own ``lightning.pytorch`` logger, ``gan_lightning`` prints
INFO and above to stderr unless the application has configured logging (the root logger has handlers), in which
case its records propagate there instead.

``fit`` also drops Lightning's console lines that give the user nothing to do (:data:`LIGHTNING_NOISE`), with a
logging filter on the logger that emits them, so every other Lightning message still gets through.
"""

from __future__ import annotations

import logging
import re
from contextlib import contextmanager
from typing import Iterator

LOGGER_NAME = "gan_lightning"

#: Lightning 2.6 console lines (logged by ``rank_zero_info``) that a user cannot act on: advertisements for
#: Lightning's cloud services ("💡 Tip: For seamless cloud logging ... litlogger", "... litmodels"), and the
#: TPU line on a machine without TPUs (the GPU line stays: it says which device trained).
LIGHTNING_NOISE = (
    re.compile(r"💡 Tip: "),
    re.compile(r"TPU available: False, using: 0 TPU cores$"),
)


def set_up_logger(name: str = LOGGER_NAME) -> logging.Logger:
    """INFO and above of ``name`` printed to stderr, unless the root logger has handlers (then they propagate)."""
    logger = logging.getLogger(name)
    logger.setLevel(logging.INFO)
    if not logging.getLogger().hasHandlers():  # the application configured no logging: print ourselves
        logger.addHandler(logging.StreamHandler())
        logger.propagate = False
    return logger


logger = set_up_logger()


class _DropLightningNoise(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(pattern.match(message) for pattern in LIGHTNING_NOISE)


@contextmanager
def lightning_noise_filtered() -> Iterator[None]:
    """Within the block, Lightning's :data:`LIGHTNING_NOISE` lines are not printed (nor passed to any handler)."""
    import lightning.pytorch.utilities.rank_zero  # noqa: F401  (points rank_zero_info at Lightning's logger)
    import lightning_utilities.core.rank_zero as rank_zero

    target = rank_zero.log  # the logger rank_zero_info writes to: lightning.pytorch.utilities.rank_zero
    noise_filter = _DropLightningNoise()
    target.addFilter(noise_filter)
    try:
        yield
    finally:
        target.removeFilter(noise_filter)
