"""Command line: LightningCLI for fit/validate/..., plus ``sample``, ``evaluate``, ``sweep`` and ``sweep-report``.

``python -m gan_lightning fit`` without ``--config`` trains the built-in default experiment
(``default_experiment.yaml``: a DCGAN on scikit-learn's digits, no download).
"""

from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path
from typing import Optional, Sequence

import yaml
from lightning.pytorch.cli import LightningCLI

from gan_lightning import resume

from gan_lightning.data.base import GANDataModule
from gan_lightning.errors import CheckpointError, ConfigurationError, GANLightningError
from gan_lightning.module import GANModule

DEFAULT_CONFIG = Path(__file__).with_name("default_experiment.yaml")
EXTRA_COMMANDS = ("sample", "evaluate")
#: commands in gan_lightning.commands: name -> module whose ``main(argv)`` parses its options with jsonargparse
COMMAND_MODULES = {"sweep": "gan_lightning.commands.sweep", "sweep-report": "gan_lightning.commands.sweep_report"}


def _extra_command(name: str):
    """Commands that work on a checkpoint rather than a training config: plain functions run by jsonargparse."""
    if name == "sample":
        from gan_lightning.sampling import sample

        return sample
    from gan_lightning.evaluate import evaluate

    return evaluate


class GANLightningCLI(LightningCLI):
    """LightningCLI with GAN defaults: any GANDataModule subclass, optimizers configured by the module,
    and resume semantics that continue the same run (see ``gan_lightning.resume``)."""

    def before_fit(self) -> None:
        """Fail before training if the run could not write its logs or checkpoints."""
        trainer = self.trainer
        places = [Path(trainer.default_root_dir)]
        places += [Path(logger.save_dir) for logger in trainer.loggers if getattr(logger, "save_dir", None)]
        places += [Path(cb.dirpath) for cb in trainer.checkpoint_callbacks if getattr(cb, "dirpath", None)]
        for place in places:
            ensure_writable(place)

    def _parse_ckpt_path(self) -> None:
        sub = self.config.get("subcommand")
        cfg = self.config.get(sub) if sub else None
        ckpt_path = cfg.get("ckpt_path") if cfg is not None else None
        if not ckpt_path or ckpt_path in ("best", "hpc", "registry"):
            return
        if ckpt_path == "last":
            found, searched = resume.find_last_checkpoint(cfg)
            if found is None:
                resume.note("--ckpt_path last: no last.ckpt in " + ", ".join(map(str, searched)) + "; starting a new run.")
                cfg.ckpt_path = None
                return
            resume.note(f"--ckpt_path last: resuming from {found}")
            cfg.ckpt_path = str(found)
        path = Path(cfg.ckpt_path)
        if not path.is_file():
            raise CheckpointError(f"Checkpoint {str(path)!r} does not exist; check --ckpt_path (or use --ckpt_path last).")
        dump = yaml.safe_load(self.parser.dump(self.config, skip_link_targets=False, skip_none=False))[sub]
        resume.check_resume_options(dump.get("model") or {}, dump.get("data"), path)
        resume.continue_logger_version(cfg, path)

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


def ensure_writable(directory: Path) -> None:
    try:
        directory.mkdir(parents=True, exist_ok=True)
        probe = directory / f".gan_lightning_write_test_{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        raise ConfigurationError(
            f"Cannot write to {str(directory)!r} ({err.strerror or err}): the run could not save its logs or checkpoints. "
            "Choose another directory (--trainer.default_root_dir, --trainer.logger.init_args.save_dir or the "
            "checkpoint callback's dirpath)."
        ) from err


def _option_value(argv: list[str], name: str) -> Optional[str]:
    for i, arg in enumerate(argv):
        if arg == name and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return None


def _with_default_config(argv: list[str]) -> list[str]:
    """``fit`` without ``--config``: the run's own saved config when resuming a checkpoint, else the default."""
    if not argv or argv[0] != "fit" or any(a == "--config" or a.startswith("--config=") for a in argv):
        return argv
    ckpt = _option_value(argv, "--ckpt_path")
    config = resume.run_config_beside(ckpt) if ckpt and ckpt != "last" else None
    return ["fit", "--config", str(config or DEFAULT_CONFIG), *argv[1:]]


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if argv and argv[0] in COMMAND_MODULES:
            import importlib

            importlib.import_module(COMMAND_MODULES[argv[0]]).main(argv[1:])
            return 0
        if argv and argv[0] in EXTRA_COMMANDS:
            from jsonargparse import CLI

            CLI(_extra_command(argv[0]), args=argv[1:], as_positional=False, prog=f"gan_lightning {argv[0]}")
            return 0
        if argv in ([], ["-h"], ["--help"]):
            print("usage: python -m gan_lightning {fit,validate,test,predict,sample,evaluate,sweep,sweep-report} [options]\n"
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
