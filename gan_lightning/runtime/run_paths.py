"""One place for a run: relative logger and checkpoint paths are relative to ``trainer.default_root_dir``.

Lightning puts a run under ``default_root_dir`` only when it builds the logger (``logger: true``) or the
checkpoint directory itself; a logger ``save_dir`` or a checkpoint ``dirpath`` written in a config is relative
to the working directory, so ``--trainer.default_root_dir DIR`` would not move a run whose config names them.
Here a relative ``save_dir``/``dirpath`` is joined to ``default_root_dir`` (the working directory when it is not
set, so configs without it behave as before). The command line builds the run with these paths
(:mod:`gan_lightning.commands.cli`) and ``--ckpt_path last`` searches them (:mod:`gan_lightning.runtime.resume`); the saved
``config.yaml`` keeps the paths as given, so a resumed run resolves them the same way.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, Union


def config_value(obj: Any, key: str, default: Any = None) -> Any:
    """``obj[key]`` for a dict, ``obj.key`` for a jsonargparse Namespace; ``default`` when absent."""
    if obj is None:
        return default
    if isinstance(obj, dict):
        return obj.get(key, default)
    return getattr(obj, key, default)


def configured_loggers(trainer_cfg: Any) -> list[Any]:
    """The logger configs (class_path/init_args) of a trainer config; none for ``logger: true/false``."""
    logger = config_value(trainer_cfg, "logger")
    if logger in (None, True, False):
        return []
    return list(logger) if isinstance(logger, (list, tuple)) else [logger]


def _is_remote(path: str) -> bool:
    return "://" in path


def under_root_dir(trainer_cfg: Any, path: Union[str, Path]) -> Path:
    """``path`` joined to the config's ``default_root_dir`` when it is relative (unchanged when absolute)."""
    path = Path(path).expanduser()
    root = config_value(trainer_cfg, "default_root_dir")
    if path.is_absolute() or not root or _is_remote(str(root)):
        return path
    return Path(root).expanduser() / path


def _resolved(trainer_cfg: Any, value: Optional[Union[str, Path]]) -> Optional[str]:
    if value is None or _is_remote(str(value)):
        return None
    resolved = under_root_dir(trainer_cfg, value)
    return None if resolved == Path(value) else str(resolved)


def resolve_run_paths(trainer_cfg: Any) -> None:
    """Rewrite, in place, every relative logger ``save_dir`` and callback ``dirpath`` of a trainer config."""
    callbacks = config_value(trainer_cfg, "callbacks") or []
    places = [(config_value(logger, "init_args"), "save_dir") for logger in configured_loggers(trainer_cfg)]
    callbacks = callbacks if isinstance(callbacks, list) else [callbacks]
    places += [(config_value(cb, "init_args"), "dirpath") for cb in callbacks]
    for init, key in places:
        resolved = _resolved(trainer_cfg, config_value(init, key))
        if resolved is None:
            continue
        if isinstance(init, dict):
            init[key] = resolved
        else:
            setattr(init, key, resolved)
