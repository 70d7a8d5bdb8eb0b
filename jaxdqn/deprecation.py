"""Renamed public names keep working for a while: each old name warns once, naming the new one."""

from __future__ import annotations

import warnings
from typing import Any

_warned: set[str] = set()


def warn_renamed(old: str, new: str) -> None:
    """A ``DeprecationWarning`` the first time ``old`` is used in this process."""
    if old not in _warned:
        _warned.add(old)
        warnings.warn(f"{old} is deprecated: use {new}", DeprecationWarning, stacklevel=3)


def renamed_kwarg(kwargs: dict[str, Any], old: str, new: str, value: Any, where: str) -> Any:
    """``value`` of ``new``, or the deprecated ``old`` keyword popped from ``kwargs`` (warning
    once); both given is a ``TypeError``."""
    if old not in kwargs:
        return value
    warn_renamed(f"{where}({old}=...)", f"{where}({new}=...)")
    if value is not None:
        raise TypeError(f"{where}() got both {old} and {new}; pass only {new}")
    return kwargs.pop(old)
