"""Command line: LightningCLI for fit/validate/..., plus ``sample``.

``python -m gan_lightning fit`` without ``--config`` trains the built-in default experiment
(``default_experiment.yaml``: a DCGAN on scikit-learn's digits, no download).
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path
from typing import Optional, Sequence

from lightning.pytorch.cli import LightningCLI

from gan_lightning.data.base import GANDataModule
from gan_lightning.errors import GANLightningError
from gan_lightning.module import GANModule

DEFAULT_CONFIG = Path(__file__).with_name("default_experiment.yaml")
EXTRA_COMMANDS = ("sample", "evaluate")


def _extra_command(name: str):
    """Commands that work on a checkpoint rather than a training config: plain functions run by jsonargparse."""
    if name == "sample":
        from gan_lightning.sampling import sample

        return sample
    from gan_lightning.evaluate import evaluate

    return evaluate


class GANLightningCLI(LightningCLI):
    """LightningCLI with GAN defaults: any GANDataModule subclass, optimizers configured by the module."""

    def __init__(self, args: Optional[Sequence[str]] = None, **kwargs):
        kwargs.setdefault("save_config_kwargs", {"overwrite": True})
        super().__init__(
            GANModule,
            GANDataModule,
            subclass_mode_data=True,
            auto_configure_optimizers=False,
            args=args,
            **kwargs,
        )


def _with_default_config(argv: list[str]) -> list[str]:
    if argv and argv[0] == "fit" and not any(a == "--config" or a.startswith("--config=") for a in argv):
        return ["fit", "--config", str(DEFAULT_CONFIG), *argv[1:]]
    return argv


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if argv and argv[0] in EXTRA_COMMANDS:
            from jsonargparse import CLI

            CLI(_extra_command(argv[0]), args=argv[1:], as_positional=False, prog=f"gan_lightning {argv[0]}")
            return 0
        if argv in ([], ["-h"], ["--help"]):
            print("usage: python -m gan_lightning {fit,validate,test,predict,sample,evaluate} [options]\n"
                  "  fit without --config trains the default experiment (DCGAN on scikit-learn digits).\n"
                  "  `python -m gan_lightning COMMAND --help` lists the options of a command.")
            return 0 if argv else 2
        with warnings.catch_warnings():
            # we always pass args (to add the default config); Lightning warns when sys.argv is also set
            warnings.filterwarnings("ignore", message=".*LightningCLI's args parameter.*")
            GANLightningCLI(args=_with_default_config(argv))
        return 0
    except GANLightningError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
