"""Loading a file never runs code from it.

A checkpoint can run code in two ways, and every loader in gan_lightning closes both:

1. **Its pickle.** A ``.ckpt``/``.pt`` file is a pickle, and a pickle can call any importable function while it
   is read (``os.system`` ...). Every file is therefore read with ``torch.load(weights_only=True)``, which rebuilds
   only tensors and plain containers, with no fall-back to full unpickling (PyTorch's own default since 2.6, see
   the ``torch.load`` documentation). :func:`load_file` does this and turns a refusal into one clear line.
2. **Its class paths.** A checkpoint written by the CLI records how to rebuild its networks as ``class_path``
   strings, which Lightning's ``load_from_checkpoint`` hands to jsonargparse to import and call. Such a string can
   name any importable callable (``subprocess.Popen`` with ``shell: true``), so :func:`check_class_paths` walks the
   whole tree *before* anything is imported and refuses every class path (and every other string that names an
   importable object) outside the trusted modules: ``gan_lightning``, ``torch`` and ``torchvision`` (except torch's
   own code loaders such as ``torch.hub``), plus the modules a user trusts by name with ``--trusted_modules``
   (``sample``, ``evaluate``) or the ``GAN_LIGHTNING_TRUSTED_MODULES`` environment variable (every command).
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import os
import pickle
import re
from pathlib import Path
from typing import IO, Any, Iterable, Iterator, Mapping, Optional, Sequence, Union

import torch

from gan_lightning.errors import CheckpointError, ConfigurationError, UnsafeCheckpointError

TRUSTED_MODULES_ENV = "GAN_LIGHTNING_TRUSTED_MODULES"

#: Modules whose classes may be rebuilt from any file.
DEFAULT_TRUSTED_MODULES = ("gan_lightning", "torch", "torchvision")

#: Parts of torch that load or run code, a process or a connection by themselves: never trusted by default
#: (a user may still trust one of them by naming it exactly).
CODE_LOADERS_IN_TORCH = (
    "torch.hub",
    "torch.package",
    "torch.jit",
    "torch.load",
    "torch.serialization",
    "torch.utils.cpp_extension",
    "torch.utils.model_dump",
    "torch.ops",
    "torch.classes",
    "torch.library",
    "torch.distributed",
    "torch.multiprocessing",
)

#: What the ``trainer`` section of a run's ``config.yaml`` names (callbacks, loggers, strategies, ...).
LIGHTNING_TRAINER_MODULES = (
    "lightning.pytorch.callbacks",
    "lightning.pytorch.loggers",
    "lightning.pytorch.strategies",
    "lightning.pytorch.plugins",
    "lightning.pytorch.profilers",
    "lightning.pytorch.accelerators",
)

#: Hyper-parameter keys Lightning itself resolves (with its own allow-list, lightning.pytorch.core.saving).
_LIGHTNING_INSTANTIATORS = frozenset({"lightning.pytorch.cli.instantiate_module", "pytorch_lightning.cli.instantiate_module"})

#: Where Lightning keeps the model's init arguments (the first two in checkpoints of old versions).
_MODEL_HPARAMS_KEYS = ("hparams", "module_arguments", "hyper_parameters")

_DOTTED = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)+")
_IDENTIFIER = re.compile(r"[A-Za-z_]\w*")
_HOW_TO_TRUST = "--trusted_modules {top} (sample, evaluate) or the environment variable " + TRUSTED_MODULES_ENV + "={top} (every command)"


def _split_names(text: str, source: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    for name in names:
        if not _DOTTED.fullmatch(name) and not _IDENTIFIER.fullmatch(name):
            raise ConfigurationError(
                f"{source}: {name!r} is not a module name; give importable module names separated by commas, "
                "e.g. mypkg,other.module."
            )
    return names


class TrustedModules:
    """Which dotted import paths may be imported from a file. The most specific entry decides, so the default
    ``torch`` entry trusts ``torch.nn.Linear`` while ``torch.hub`` stays refused unless it is trusted by name."""

    def __init__(self, extra: Union[str, Sequence[str], None] = None, *, trainer_modules: bool = False):
        self.user: list[str] = _split_names(os.environ.get(TRUSTED_MODULES_ENV, ""), f"${TRUSTED_MODULES_ENV}")
        if extra:
            given = extra if isinstance(extra, str) else ",".join(extra)
            self.user += _split_names(given, "--trusted_modules")
        self.verdicts: dict[str, bool] = {name: False for name in CODE_LOADERS_IN_TORCH}
        for name in (*DEFAULT_TRUSTED_MODULES, *(LIGHTNING_TRAINER_MODULES if trainer_modules else ()), *self.user):
            self.verdicts[name] = True

    def allows(self, path: str) -> bool:
        parts = path.split(".")
        for n in range(len(parts), 0, -1):
            verdict = self.verdicts.get(".".join(parts[:n]))
            if verdict is not None:
                return verdict
        return False


def is_plain(value: Any) -> bool:
    """True for values that survive ``torch.load(weights_only=True)`` as they are (configs, numbers, strings)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return True
    if isinstance(value, (list, tuple)):
        return all(is_plain(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and is_plain(v) for k, v in value.items())
    return False


def import_trusted(path: str, key: str, source: str, trusted: TrustedModules) -> Any:
    """The object a dotted path names (a module attribute or a nested class), imported only if ``path`` is trusted."""
    if not _DOTTED.fullmatch(path) or not trusted.allows(path):
        _refuse(source, key, path, trusted)
    parts = path.split(".")
    for n in range(len(parts) - 1, 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:n]))
        except ModuleNotFoundError:
            continue
        try:
            for attr in parts[n:]:
                obj = getattr(obj, attr)
        except AttributeError:
            break
        return obj
    raise ConfigurationError(f"{source}: cannot import {path!r} at {key}; is the module that defines it installed?")


def _names_an_importable_object(text: str) -> bool:
    """A dotted path whose top-level package is installed: jsonargparse (or our own loaders) could import it.
    ``find_spec`` of a top-level name only searches ``sys.path``; it imports nothing."""
    if not _DOTTED.fullmatch(text):
        return False
    try:
        return importlib.util.find_spec(text.split(".", 1)[0]) is not None
    except (ImportError, ValueError):
        return False


def check_class_paths(tree: Any, key: str, source: str, trusted: TrustedModules) -> None:
    """Refuse, before any import, a class path or importable name in ``tree`` that is not trusted.

    ``key`` is where ``tree`` sits (``model``, ``data``, ...) so that the message names e.g.
    ``model.generator.class_path``; ``source`` names the file. Nested ``init_args`` and lists are walked too.
    """
    if isinstance(tree, Mapping):
        for name, value in tree.items():
            where = f"{key}.{name}" if key else str(name)
            if name == "_instantiator":
                if value not in _LIGHTNING_INSTANTIATORS:
                    _refuse(source, where, value, trusted)
            elif name in ("class_path", "_class_path"):
                if not (isinstance(value, str) and (_IDENTIFIER.fullmatch(value) or trusted.allows(value))):
                    _refuse(source, where, value, trusted)  # a bare name resolves among imported subclasses only
            else:
                check_class_paths(value, where, source, trusted)
    elif isinstance(tree, (list, tuple)):
        for index, value in enumerate(tree):
            check_class_paths(value, f"{key}[{index}]", source, trusted)
    elif isinstance(tree, str) and _names_an_importable_object(tree) and not trusted.allows(tree):
        _refuse(source, key, tree, trusted)


def _refuse(source: str, key: str, value: Any, trusted: TrustedModules) -> None:
    top = str(value).split(".", 1)[0] if isinstance(value, str) and _DOTTED.fullmatch(value) else "MODULE"
    allowed = ", ".join(DEFAULT_TRUSTED_MODULES + tuple(trusted.user))
    raise UnsafeCheckpointError(
        f"{source} names {value!r} at {key}, outside the modules trusted to be rebuilt from a file ({allowed}; "
        f"not torch's code loaders such as torch.hub); nothing was imported. If you trust this file and that code, "
        f"add {_HOW_TO_TRUST.format(top=top)}."
    )


def check_checkpoint(checkpoint: Mapping[str, Any], source: str, trusted: TrustedModules) -> None:
    """The class paths a checkpoint's hyper-parameters name: the model's (``model.*``, also under the keys of old
    Lightning versions) and the datamodule's (``data.*``)."""
    for section in _MODEL_HPARAMS_KEYS:
        if section in checkpoint:
            check_class_paths(checkpoint[section], "model", source, trusted)
    if "datamodule_hyper_parameters" in checkpoint:
        check_class_paths(checkpoint["datamodule_hyper_parameters"], "data", source, trusted)


def _refusal_reason(err: BaseException) -> str:
    """torch's short reason for a weights_only refusal (e.g. ``unsupported global posix.system``)."""
    text = str(err)
    found = re.search(r"(?:unsupported GLOBAL|Unsupported global: GLOBAL) ([\w.]+)", text)
    if found:
        return f"unsupported global {found.group(1)}"
    if "TorchScript" in text:
        return "a TorchScript archive, which is a program"
    for line in text.splitlines():
        if "WeightsUnpickler error:" in line:
            return line.split("WeightsUnpickler error:", 1)[1].strip()[:200]
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return (lines[-1] if lines else type(err).__name__)[:200]


def load_file(path: Union[str, Path, IO[bytes]], map_location: Any = "cpu", what: str = "checkpoint",
              advice: Optional[str] = None, name: Optional[str] = None) -> Any:
    """``torch.load(path, weights_only=True)``; a file it refuses raises :class:`UnsafeCheckpointError` (one line,
    naming torch's reason), any other unreadable file a :class:`CheckpointError`. Never falls back to full unpickling.
    ``name`` is how messages name an open file (default: its path)."""
    if name is None and isinstance(path, (str, Path)):
        name = str(path)
    label = f"{what} {name!r}" if name else what
    if isinstance(path, (str, Path)) and not Path(path).expanduser().is_file():
        raise CheckpointError(f"The {label} does not exist.")
    source = str(Path(path).expanduser()) if isinstance(path, (str, Path)) else path
    try:
        return torch.load(source, map_location=map_location, weights_only=True)
    except Exception as err:  # noqa: BLE001 - a corrupt file raises many kinds of errors
        if is_weights_only_refusal(err):
            raise unsafe_file_error(label, err, advice) from None  # torch's long text is summed up in one line
        raise CheckpointError(f"Cannot read the {label}: {_first_line(err)}") from err


def is_weights_only_refusal(err: BaseException) -> bool:
    """True when ``torch.load(weights_only=True)`` refused a file because of what it holds (not because it is corrupt)."""
    return isinstance(err, pickle.UnpicklingError) or (isinstance(err, RuntimeError) and "weights_only" in str(err))


def unsafe_file_error(label: str, err: BaseException, advice: Optional[str] = None) -> UnsafeCheckpointError:
    """One line for a file that ``torch.load(weights_only=True)`` refused: what, torch's reason, what to do."""
    return UnsafeCheckpointError(
        f"The {label} contains objects that cannot be loaded safely (torch.load with weights_only=True refused it: "
        f"{_refusal_reason(err)}); it may not come from gan_lightning, or it may be malicious, and nothing in it was "
        "run. "
        + (advice or "Load only checkpoints written by gan_lightning (they hold only tensors and plain values); if "
           "you made this file yourself, save it again with tensors and plain values only.")
    )


def _first_line(err: BaseException) -> str:
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return lines[0][:300] if lines else type(err).__name__


def read_bytes(path: Union[str, Path, IO[bytes]]) -> bytes:
    """The bytes of a local file, an fsspec URL or an open binary file, read once (so the checked and the loaded
    contents are the same bytes)."""
    if not isinstance(path, (str, Path)):
        return path.read()
    if "://" in str(path):
        from lightning.fabric.utilities.cloud_io import get_filesystem

        with get_filesystem(str(path)).open(str(path), "rb") as f:
            return f.read()
    file = Path(path).expanduser()
    if not file.is_file():
        raise CheckpointError(f"Checkpoint {str(file)!r} does not exist; give the path of a .ckpt file.")
    return file.read_bytes()


def load_checked_checkpoint(path: Union[str, Path, IO[bytes]], trusted: TrustedModules, map_location: Any = "cpu",
                            overridden: Iterable[str] = ()) -> tuple[dict[str, Any], bytes]:
    """Read a checkpoint once, load it with weights_only=True and check its class paths: the dict and its bytes.
    ``overridden``: model hyper-parameters the caller replaces (they are not rebuilt from the file)."""
    raw = read_bytes(path)
    name = str(path) if isinstance(path, (str, Path)) else None
    checkpoint = load_file(io.BytesIO(raw), map_location=map_location, name=name)
    source = f"Checkpoint {name!r}" if name else "The checkpoint"
    if not isinstance(checkpoint, dict):
        raise CheckpointError(f"{source} holds a {type(checkpoint).__name__}, not a Lightning checkpoint.")
    skip = set(overridden)
    checked = dict(checkpoint)
    for key in _MODEL_HPARAMS_KEYS:
        if isinstance(checked.get(key), Mapping):
            checked[key] = {k: v for k, v in checked[key].items() if k not in skip}
    check_checkpoint(checked, source, trusted)
    return checkpoint, raw


def check_hparams_file(path: Union[str, Path], trusted: TrustedModules) -> None:
    """An ``hparams_file`` given to ``load_from_checkpoint``: plain YAML whose class paths are trusted."""
    import yaml

    try:
        hparams = yaml.safe_load(Path(path).expanduser().read_text())
    except (OSError, yaml.YAMLError) as err:
        raise CheckpointError(f"Cannot read the hparams file {str(path)!r} as plain YAML: {_first_line(err)}") from err
    check_class_paths(hparams, "model", f"The hparams file {str(path)!r}", trusted)


@contextlib.contextmanager
def forced_weights_only() -> Iterator[None]:
    """Make third-party loaders that call ``torch.load(weights_only=False)`` (torch-fidelity's InceptionV3) load
    with ``weights_only=True``: torch's documented ``TORCH_FORCE_WEIGHTS_ONLY_LOAD`` switch, for this block only."""
    saved = {k: os.environ.get(k) for k in ("TORCH_FORCE_WEIGHTS_ONLY_LOAD", "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD")}
    os.environ["TORCH_FORCE_WEIGHTS_ONLY_LOAD"] = "1"
    os.environ.pop("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", None)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
