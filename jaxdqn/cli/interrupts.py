"""Ctrl-C without crashes: SIGINT only sets a flag, and the commands act on it at safe points.

A ``KeyboardInterrupt`` raised wherever Python happens to be (inside JAX's compiler callbacks,
an XLA execution, a file write) can abort the process ("pure virtual method called", exit -6) or
leave half a folder. With ``install()``, SIGINT sets a flag and nothing else; ``check()`` at the
commands' safe points (after compiling, between segments, before and after evaluating, between
sweep groups) raises ``KeyboardInterrupt`` there, where the command saves what it has and exits
with 130.
"""

from __future__ import annotations

import signal
import threading

_requested = threading.Event()


def _on_sigint(signum, frame) -> None:  # never raises: JAX or a write may be running
    _requested.set()


def install() -> None:
    """Defers SIGINT to the next ``check()`` (main thread only; a no-op elsewhere)."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, _on_sigint)


def requested() -> bool:
    return _requested.is_set()


def check() -> None:
    """Raises ``KeyboardInterrupt`` if Ctrl-C was pressed since ``install()``."""
    if _requested.is_set():
        raise KeyboardInterrupt


def reset() -> None:
    """Forgets a pending Ctrl-C (for in-process callers such as tests)."""
    _requested.clear()
