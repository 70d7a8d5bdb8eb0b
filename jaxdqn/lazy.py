"""Modules imported on their first use.

What ``jaxdqn --help``, ``jaxdqn config`` and config validation import must not pay for JAX
(about a second): ``jaxdqn.config`` reads the estimator records, whose target functions use JAX
only when they run.
"""

from __future__ import annotations

import importlib
from types import ModuleType


class LazyModule(ModuleType):
    """A stand-in for the module ``name`` that imports it at its first attribute access and then
    holds its attributes, so later lookups cost what a module's do."""

    def __getattr__(self, attr: str):
        module = importlib.import_module(self.__name__)
        self.__dict__.update(module.__dict__)
        return getattr(module, attr)
