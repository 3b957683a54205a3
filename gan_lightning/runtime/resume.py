"""Resuming from the command line: find the run's checkpoint, keep logging into the same run directory,
and refuse option changes that would make the resumed run a different run.

Lightning's own behaviour is easy to trip over: ``--ckpt_path last`` looks for ``last.ckpt`` in the *new*
logger version directory (so it silently starts from scratch), and LightningCLI replaces the model options
given on the command line with the checkpoint's (Lightning PR #21455), also silently; a run resumed from
the last step of an epoch does not start the next epoch as other epochs start
(:func:`start_next_epoch_after_resume_at_epoch_end`).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

from gan_lightning.errors import CheckpointError, ConfigurationError
from gan_lightning.runtime.run_paths import config_value as _get
from gan_lightning.runtime.run_paths import configured_loggers as _loggers
from gan_lightning.runtime.run_paths import under_root_dir
from gan_lightning.runtime.trust import load_file

if TYPE_CHECKING:
    from lightning.pytorch import Trainer

#: Data options that may change on resume without changing what the run computes (the image cache gives
#: tensors identical to per-sample decoding, so its options are free too).
DATA_OPTIONS_FREE_ON_RESUME = frozenset({"num_workers", "cache", "cache_memory_budget_mb", "cache_dir"})


def _logger_run_root(trainer_cfg: Any, logger_cfg: Any) -> Optional[Path]:
    init = _get(logger_cfg, "init_args")
    save_dir = _get(init, "save_dir")
    if save_dir is None:
        return None
    name = _get(init, "name", "lightning_logs") or ""
    return under_root_dir(trainer_cfg, save_dir) / name


def _version_dir_name(version: Any) -> str:
    return version if isinstance(version, str) else f"version_{version}"


def find_last_checkpoint(cfg: Any) -> tuple[Optional[Path], list[Path]]:
    """The newest ``last.ckpt`` this config's runs would have written, and the places searched."""
    trainer_cfg = _get(cfg, "trainer")
    searched: list[Path] = []
    for cb in _get(trainer_cfg, "callbacks") or []:
        dirpath = _get(_get(cb, "init_args"), "dirpath")
        if dirpath:
            searched.append(under_root_dir(trainer_cfg, dirpath) / "last.ckpt")
    for logger in _loggers(trainer_cfg):
        root = _logger_run_root(trainer_cfg, logger)
        if root is None:
            continue
        version = _get(_get(logger, "init_args"), "version")
        if version is not None:
            searched.append(root / _version_dir_name(version) / "checkpoints" / "last.ckpt")
        else:
            searched.extend(sorted(root.glob("*/checkpoints/last.ckpt")))
            searched.append(root / "*/checkpoints/last.ckpt")
    root_dir = Path(_get(trainer_cfg, "default_root_dir") or ".")
    searched += [root_dir / "checkpoints" / "last.ckpt", *sorted(root_dir.glob("lightning_logs/*/checkpoints/last.ckpt"))]
    searched = list(dict.fromkeys(searched))  # a sweep run's logger version dir is its default_root_dir too
    existing = [p for p in searched if "*" not in str(p) and p.is_file()]
    newest = max(existing, key=lambda p: p.stat().st_mtime) if existing else None
    return newest, searched


def continue_logger_version(cfg: Any, ckpt: Path) -> None:
    """Log into the checkpoint's own run directory (``<save_dir>/<name>/<version>/checkpoints/x.ckpt``)."""
    if ckpt.parent.name != "checkpoints":
        return
    run_dir = ckpt.parent.parent
    trainer_cfg = _get(cfg, "trainer")
    for logger in _loggers(trainer_cfg):
        init = _get(logger, "init_args")
        root = _logger_run_root(trainer_cfg, logger)
        if root is None or _get(init, "version") is not None:
            continue
        if run_dir.parent.resolve() == root.resolve():
            init.version = run_dir.name


def _diff(given: Any, stored: Any, prefix: str) -> list[str]:
    if isinstance(given, dict) and isinstance(stored, dict):
        out: list[str] = []
        for key in sorted(set(given) | set(stored)):
            out += _diff(given.get(key), stored.get(key), f"{prefix}.{key}")
        return out
    if isinstance(given, (list, tuple)) and isinstance(stored, (list, tuple)) and len(given) == len(stored):
        return [d for i, (a, b) in enumerate(zip(given, stored)) for d in _diff(a, b, f"{prefix}[{i}]")]
    return [] if given == stored else [f"{prefix}: {stored!r} in the checkpoint, {given!r} now"]


def check_resume_options(model_cfg: dict, data_cfg: Optional[dict], ckpt_path: Path,
                         checkpoint: Optional[dict] = None) -> None:
    """Refuse model/data options that differ from the checkpoint's: a resumed run must be the same run.
    ``checkpoint``: the file's contents when already loaded (read with weights_only=True otherwise)."""
    ckpt = checkpoint if checkpoint is not None else load_file(ckpt_path)
    stored_model = {k: v for k, v in (ckpt.get("hyper_parameters") or {}).items() if not k.startswith("_")}
    stored_data = {k: v for k, v in (ckpt.get("datamodule_hyper_parameters") or {}).items() if k != "_instantiator"}
    problems: list[str] = []
    if stored_model:
        problems += _diff({k: model_cfg.get(k) for k in stored_model}, stored_model, "model")
    if stored_data and data_cfg is not None:
        given = _normalise_data_cfg(data_cfg)
        stored = _normalise_data_cfg(stored_data)
        for key in DATA_OPTIONS_FREE_ON_RESUME:
            given.get("init_args", {}).pop(key, None)
            stored.get("init_args", {}).pop(key, None)
        problems += _diff(given, stored, "data")
    if problems:
        raise ConfigurationError(
            f"Resuming from {str(ckpt_path)!r} continues the same run, but these options differ from the run's:\n  "
            + "\n  ".join(problems)
            + "\nResume with the run's own config (its config.yaml; `fit --ckpt_path CKPT` alone finds it), or start a "
            "new run without --ckpt_path to train with the new options."
        )


def _normalise_data_cfg(cfg: dict) -> dict:
    """Checkpoint data hparams are flat with ``_class_path``; the CLI config has class_path/init_args."""
    if "class_path" in cfg:
        return {"class_path": cfg["class_path"], "init_args": dict(cfg.get("init_args") or {})}
    return {"class_path": cfg.get("_class_path"), "init_args": {k: v for k, v in cfg.items() if k != "_class_path"}}


def run_config_beside(ckpt_path: str) -> Optional[Path]:
    """The ``config.yaml`` LightningCLI saved in the run directory that holds this checkpoint, if any."""
    path = Path(ckpt_path)
    for candidate in (path.parent / "config.yaml", path.parent.parent / "config.yaml"):
        if candidate.is_file():
            return candidate
    return None


def start_next_epoch_after_resume_at_epoch_end(trainer: Trainer) -> bool:
    """Start the epoch after a checkpoint written at the last step of an epoch as Lightning starts any epoch.

    Lightning 2.6.6 resumes a checkpoint saved in ``on_train_batch_end`` of an epoch's last batch as "restarted
    mid-epoch": ``FitLoop.reset`` closes the restored epoch (counts it processed and completed) but leaves the
    restart stage at ``RESTARTED_MID_EPOCH``, so ``FitLoop.on_advance_start`` takes the *next* epoch for the
    resumed one: it does not count it ready and started and does not call ``on_train_epoch_start`` (the progress
    bar's reset, any user hook, whose random draws then go missing from the resumed run), and the epoch counters
    of every later checkpoint stay one behind an uninterrupted run's. Resetting the stage once the epoch is
    closed makes the next one start normally. Call from ``on_train_start`` (after ``FitLoop.reset``).

    Lightning loop internals used (no public API exposes them; ``tests/test_resume.py`` has a canary for each):
    ``trainer.fit_loop.restarted_mid_epoch``, ``trainer.fit_loop.epoch_progress.current.ready`` /
    ``.processed`` and ``trainer.fit_loop.reset_restart_stage()`` (which clears the private
    ``FitLoop._restart_stage``). Returns whether the stage was reset.
    """
    from gan_lightning.runtime import internals

    fit_loop = trainer.fit_loop
    purpose = "starting the next epoch after a resume at an epoch's end"
    epoch = internals.require(fit_loop, "epoch_progress", purpose).current
    if internals.require(fit_loop, "restarted_mid_epoch", purpose) and epoch.ready == epoch.processed:
        internals.require(fit_loop, "reset_restart_stage", purpose)()
        return True
    return False


def note(message: str) -> None:
    print(f"gan_lightning: {message}", file=sys.stderr)
