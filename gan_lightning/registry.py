"""Short names for the classes of an extension point (``--model.loss=hinge``, ``--model.augment=ada``).

Registration is the extension point, as in torch-fidelity's ``registry.py``: a new loss or augmentation is one class
with a decorator, and every way of naming it (short name, class name, import path, instance) resolves here.
"""

from __future__ import annotations

import importlib
from typing import Any, Callable

from gan_lightning.errors import ConfigurationError


class Registry:
    """Classes of one kind by short name; ``base`` is a callable returning the base class (it may be defined later)."""

    def __init__(self, kind: str, base: Callable[[], type], hint: str, normalise: Callable[[str], str] = str.lower):
        self.kind, self._base, self.hint, self.normalise = kind, base, hint, normalise
        self.classes: dict[str, type] = {}
        self.primary_names: list[str] = []

    def register(self, *names: str) -> Callable[[type], type]:
        """Class decorator: the first name is the one listed by :meth:`available`, the others are aliases."""

        def decorate(cls: type) -> type:
            self.primary_names.append(names[0])
            for name in names:
                if name in self.classes and self.classes[name] is not cls:
                    raise ValueError(f"{self.kind} name {name!r} is already registered to {self.classes[name].__name__}")
                self.classes[name] = cls
            return cls

        return decorate

    def available(self) -> list[str]:
        return list(self.primary_names)

    def build(self, spec: Any) -> Any:
        """An instance from an instance, a subclass, a short name, a class name or an import path."""
        base = self._base()
        if isinstance(spec, base):
            return spec
        if isinstance(spec, type) and issubclass(spec, base):
            return spec()
        if isinstance(spec, str):
            key = self.normalise(spec.strip())
            if key in self.classes:
                return self.classes[key]()
            by_class_name = {cls.__name__.lower(): cls for cls in self.classes.values()}
            if spec.strip().lower() in by_class_name:
                return by_class_name[spec.strip().lower()]()
            if "." in spec:
                module_name, _, class_name = spec.strip().rpartition(".")
                try:
                    cls = getattr(importlib.import_module(module_name), class_name)
                except (ImportError, AttributeError):
                    cls = None
                if isinstance(cls, type) and issubclass(cls, base):
                    return cls()
        raise ConfigurationError(f"Unknown {self.kind} {spec!r}. Use one of: {', '.join(self.available())}; {self.hint}")
