"""Import paths from before the layout by concept, so old YAML files and checkpoints keep loading.

Configs and checkpoints name classes by module path (``gan_lightning.multi_generator.MultiGenerator``). When a
module moved, its old name is mapped here to the new module object: ``import gan_lightning.multi_generator`` returns
``gan_lightning.variants.mgan`` itself (no copy, so ``isinstance`` and registries see one class).
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
from types import ModuleType
from typing import Optional, Sequence

#: old module path -> new module path
MOVED_MODULES: dict[str, str] = {
    "gan_lightning.discriminator_inputs": "gan_lightning.tricks.discriminator_inputs",
    "gan_lightning.ema": "gan_lightning.tricks.ema",
    "gan_lightning.unrolled": "gan_lightning.tricks.unrolled",
    "gan_lightning.multi_discriminator": "gan_lightning.variants.gman",
    "gan_lightning.multi_generator": "gan_lightning.variants.mgan",
    "gan_lightning.collapse_signals": "gan_lightning.collapse.signals",
    "gan_lightning.remedies": "gan_lightning.collapse.remedies",
    "gan_lightning.callbacks.mode_collapse": "gan_lightning.collapse.monitor",
    "gan_lightning.rng": "gan_lightning.runtime.rng",
    "gan_lightning.resume": "gan_lightning.runtime.resume",
    "gan_lightning.nonfinite": "gan_lightning.runtime.nonfinite",
    "gan_lightning.strategies": "gan_lightning.runtime.ddp",
    "gan_lightning.callbacks.checkpoint": "gan_lightning.runtime.checkpointing",
    "gan_lightning.cli": "gan_lightning.commands.cli",
    "gan_lightning.sampling": "gan_lightning.commands.sample",
    "gan_lightning.evaluate": "gan_lightning.commands.evaluate",
}


class _AliasLoader(importlib.abc.Loader):
    def __init__(self, target: str):
        self.target = target
        self.target_spec = None

    def create_module(self, spec) -> ModuleType:
        module = importlib.import_module(self.target)
        self.target_spec = module.__spec__
        return module

    def exec_module(self, module: ModuleType) -> None:
        # Already executed; importlib has just set __spec__ to the alias's spec: give the module its own back.
        module.__spec__ = self.target_spec


class _MovedModuleFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname: str, path: Optional[Sequence[str]] = None, target: Optional[ModuleType] = None):
        new = MOVED_MODULES.get(fullname)
        if new is None:
            return None
        return importlib.util.spec_from_loader(fullname, _AliasLoader(new))


def install() -> None:
    if not any(isinstance(finder, _MovedModuleFinder) for finder in sys.meta_path):
        sys.meta_path.insert(0, _MovedModuleFinder())
