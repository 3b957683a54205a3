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
from lightning.pytorch.cli import LightningCLI, SaveConfigCallback

from gan_lightning.runtime import resume
from gan_lightning.callbacks.progress import with_progress_bar
from gan_lightning.runtime import trust
from gan_lightning.runtime import console
from gan_lightning.collapse.monitor import ModeCollapseWarning
from gan_lightning.data.base import GANDataModule
from gan_lightning.errors import CheckpointError, ConfigurationError, GANLightningError
from gan_lightning.commands.intervals import add_interval_arguments, apply_intervals
from gan_lightning.module import GANModule
from gan_lightning.runtime.run_paths import resolve_run_paths

DEFAULT_CONFIG = Path(__file__).resolve().parents[1] / "default_experiment.yaml"
EXTRA_COMMANDS = ("sample", "evaluate")
#: commands in gan_lightning.commands: name -> module whose ``main(argv)`` parses its options with jsonargparse
COMMAND_MODULES = {"sweep": "gan_lightning.commands.sweep", "sweep-report": "gan_lightning.commands.sweep_report"}


def _extra_command(name: str):
    """Commands that work on a checkpoint rather than a training config: plain functions run by jsonargparse."""
    if name == "sample":
        from gan_lightning.commands.sample import sample

        return sample
    from gan_lightning.commands.evaluate import evaluate

    return evaluate


class GANLightningCLI(LightningCLI):
    """LightningCLI with GAN defaults: any GANDataModule subclass, optimizers configured by the module,
    and resume semantics that continue the same run (see ``gan_lightning.runtime.resume``); ``--intervals.*`` set the
    common callback intervals (``gan_lightning.commands.intervals``) and GANProgressBar is the default progress bar."""

    def add_arguments_to_parser(self, parser) -> None:
        add_interval_arguments(parser)

    def before_instantiate_classes(self) -> None:
        sub = self.config.get("subcommand")
        apply_intervals(self.config.get(sub) if sub else self.config)

    def instantiate_trainer(self, **kwargs):
        config = self._get(self.config_init, "trainer", default={})
        callbacks = config.get("callbacks")
        callbacks = [] if callbacks is None else callbacks if isinstance(callbacks, list) else [callbacks]
        kwargs.setdefault("callbacks", with_progress_bar(callbacks, config.get("enable_progress_bar")))
        return super().instantiate_trainer(**kwargs)

    def before_fit(self) -> None:
        """Fail before training if the run could not write its logs or checkpoints."""
        trainer = self.trainer
        places = [Path(trainer.default_root_dir)]
        places += [Path(logger.save_dir) for logger in trainer.loggers if getattr(logger, "save_dir", None)]
        places += [Path(cb.dirpath) for cb in trainer.checkpoint_callbacks if getattr(cb, "dirpath", None)]
        for place in places:
            ensure_writable(place)
        if self.config_init[self.subcommand].get("ckpt_path"):
            # a resumed run writes into its own checkpoint directory: Lightning's "exists and is not empty" is expected
            warnings.filterwarnings("ignore", message=r"Checkpoint directory .* exists and is not empty")

    def instantiate_classes(self) -> None:
        """Build the loggers and checkpoint callbacks with relative paths under ``default_root_dir``
        (:mod:`gan_lightning.runtime.run_paths`), but save ``config.yaml`` with the paths as given: resolving a saved,
        already resolved path again on resume would nest the run directory."""
        given = self.config
        resolved = given.clone()
        sub = resolved.get("subcommand")
        resolve_run_paths((resolved[sub] if sub else resolved).get("trainer"))
        self.config = resolved
        try:
            super().instantiate_classes()
        finally:
            self.config = given
        for callback in self.trainer.callbacks:
            if isinstance(callback, SaveConfigCallback):
                callback.config = given[sub] if sub else given

    def _parse_ckpt_path(self) -> None:
        """Resolve ``--ckpt_path`` (``last`` included), check that the file cannot run code (weights_only=True and
        trusted class paths, :mod:`gan_lightning.runtime.trust`) and that it continues the same run. Unlike Lightning's own,
        this never parses the checkpoint's hyper-parameters into the config: the run's config stays what it is."""
        sub = self.config.get("subcommand")
        cfg = self.config.get(sub) if sub else None
        if cfg is None:
            return
        if "weights_only" in cfg:
            if cfg.get("weights_only") is False:
                raise ConfigurationError(
                    "--weights_only false would let a checkpoint run code when it is loaded; gan_lightning loads "
                    "checkpoints with weights_only=True only (the checkpoints it writes hold tensors and plain values)."
                )
            cfg.weights_only = True  # Lightning's own load: torch.load(weights_only=True), whatever torch's default
        ckpt_path = cfg.get("ckpt_path")
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
        checkpoint, _ = trust.load_checked_checkpoint(path, trust.TrustedModules())
        dump = yaml.safe_load(self.parser.dump(self.config, skip_link_targets=False, skip_none=False))[sub]
        resume.check_resume_options(dump.get("model") or {}, dump.get("data"), path, checkpoint)
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
    """``fit`` without ``--config``: the run's own saved config when resuming a checkpoint, else the default.

    The run's ``config.yaml`` travels with its checkpoints, so its class paths are checked like a checkpoint's
    (:mod:`gan_lightning.runtime.trust`; Lightning's trainer classes are allowed there too) before jsonargparse imports them.
    """
    if not argv or argv[0] != "fit" or any(a == "--config" or a.startswith("--config=") for a in argv):
        return argv
    ckpt = _option_value(argv, "--ckpt_path")
    config = resume.run_config_beside(ckpt) if ckpt and ckpt != "last" else None
    if config is not None:
        try:
            tree = yaml.safe_load(config.read_text())
        except (OSError, yaml.YAMLError) as err:
            raise ConfigurationError(f"Cannot read the run's config {str(config)!r} as plain YAML ({err}).") from err
        trust.check_class_paths(tree, "", f"The run config {str(config)!r}", trust.TrustedModules(trainer_modules=True))
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
        with warnings.catch_warnings(), console.lightning_noise_filtered():
            # we always pass args (to add the default config); Lightning warns when sys.argv is also set
            warnings.filterwarnings("ignore", message=".*LightningCLI's args parameter.*")
            # the monitor's alarms are also logged: print them once, by the gan_lightning logger (a user's -W wins)
            warnings.filterwarnings("ignore", category=ModeCollapseWarning, append=True)
            GANLightningCLI(args=_with_default_config(argv))
        return 0
    except GANLightningError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
