"""How a configured loss, regularizer, input transform or remedy prints: ``ClassName(option=value, ...)``."""

from __future__ import annotations


class ConfigRepr:
    """``repr`` from the instance's attributes, so logs and error messages show the options in effect."""

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({args})"
