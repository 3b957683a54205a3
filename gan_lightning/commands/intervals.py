"""``--intervals.samples 500`` and friends: the common callback intervals as top-level command-line options.

LightningCLI edits a list of callbacks only as a whole (``--trainer.callbacks=[...]`` replaces it, ``+=`` appends an
entry; the ``--trainer.callbacks.ARG`` form sets an option of the last entry only), so changing how often one callback
of a shipped experiment runs meant copying its YAML. Each option here sets one init argument of every callback of
its class in ``trainer.callbacks`` before the callbacks are built, so the callback validates the value itself and the
run's saved ``config.yaml`` shows the value that was used. An interval for a callback the config does not have is an
error that names the callback to add.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Optional

from jsonargparse import Namespace
from lightning.pytorch import Callback

from gan_lightning.errors import ConfigurationError


@dataclass(frozen=True)
class IntervalOption:
    """``--intervals.<name>`` sets ``<argument>`` of every callback that is a ``<base>`` (class path); values below
    ``minimum`` are refused before any callback is built."""

    name: str
    base: str
    argument: str
    minimum: int
    help: str

    @property
    def base_name(self) -> str:
        return self.base.rpartition(".")[2]


INTERVAL_OPTIONS = (
    IntervalOption("samples", "gan_lightning.callbacks.SampleGridCallback", "every_n_steps", 1,
                   "Generator steps between sample grids (SampleGridCallback.every_n_steps)."),
    IntervalOption("evaluation", "gan_lightning.callbacks.GANEvaluation", "every_n_steps", 0,
                   "Generator steps between evaluations, 0 for the end of training only (GANEvaluation.every_n_steps)."),
    IntervalOption("checkpoint", "lightning.pytorch.callbacks.ModelCheckpoint", "every_n_train_steps", 0,
                   "Generator steps between checkpoints, 0 for none but last.ckpt (GANCheckpoint.every_n_train_steps)."),
    IntervalOption("collapse", "gan_lightning.callbacks.ModeCollapseMonitor", "every_n_steps", 1,
                   "Generator steps between mode-collapse checks (ModeCollapseMonitor.every_n_steps)."),
)
#: The class to add when the config has none (GANCheckpoint for the ModelCheckpoint option).
_SUGGESTED = {"checkpoint": "gan_lightning.callbacks.GANCheckpoint"}


def add_interval_arguments(parser: Any) -> None:
    """Add ``--intervals.samples``, ``--intervals.evaluation``, ``--intervals.checkpoint``, ``--intervals.collapse``."""
    for option in INTERVAL_OPTIONS:
        parser.add_argument(f"--intervals.{option.name}", type=Optional[int], default=None, help=option.help)


def _import(class_path: str) -> Optional[type]:
    module, _, name = class_path.rpartition(".")
    try:
        found = getattr(importlib.import_module(module), name) if module else None
    except (ImportError, AttributeError):
        return None
    return found if isinstance(found, type) else None


def apply_intervals(config: Namespace) -> None:
    """Write the ``intervals`` of a parsed (not yet instantiated) config into its callbacks' init args, in place."""
    intervals = config.get("intervals")
    if not intervals:
        return
    callbacks = config.get("trainer.callbacks")
    entries = [] if callbacks is None else callbacks if isinstance(callbacks, list) else [callbacks]
    for option in INTERVAL_OPTIONS:
        value = intervals.get(option.name)
        if value is None:
            continue
        if value < option.minimum:
            raise ConfigurationError(f"--intervals.{option.name} must be >= {option.minimum} generator steps, got {value}.")
        base = _import(option.base)
        found = 0
        for entry in entries:
            if isinstance(entry, Callback):  # an object given from Python, not a class_path entry
                if base is not None and isinstance(entry, base):
                    raise ConfigurationError(
                        f"--intervals.{option.name}: the {type(entry).__name__} in trainer.callbacks was built already; "
                        f"set its {option.argument} where it is created."
                    )
                continue
            class_path = entry.get("class_path") if isinstance(entry, Namespace) else None
            cls = _import(class_path) if isinstance(class_path, str) else None
            if cls is None or base is None or not issubclass(cls, base):
                continue
            if entry.get("init_args") is None:
                entry["init_args"] = Namespace()
            entry["init_args"][option.argument] = value
            found += 1
        if not found:
            add = _SUGGESTED.get(option.name, option.base)
            raise ConfigurationError(
                f"--intervals.{option.name} {value}: this config has no {add.rpartition('.')[2]} in trainer.callbacks; "
                f"add one (--trainer.callbacks+={add}) or drop --intervals.{option.name}."
            )

