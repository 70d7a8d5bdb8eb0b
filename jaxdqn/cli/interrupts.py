"""Ctrl-C and SIGTERM without crashes: the first signal stops at the next safe point, a second
exits at once.

A ``KeyboardInterrupt`` raised wherever Python happens to be (inside JAX's compiler callbacks,
an XLA execution, a file write) can abort the process ("pure virtual method called", exit -6) or
leave half a folder. With ``install()``, SIGINT sets a flag and nothing else; ``check()`` at the
commands' safe points (after compiling, between segments, before and after evaluating, between
sweep groups, each step of a Gymnasium evaluation) raises ``KeyboardInterrupt`` there, where the
command saves what it has and exits with 130.

SIGTERM (what ``kill``, ``timeout``, SLURM at its time limit, Kubernetes and job schedulers send)
and SIGUSR1 (SLURM's ``--signal=USR1@SECONDS`` warning) act as Ctrl-C does: the command saves what
it has, so that ``--resume`` continues it, and exits with 128 + the first signal's number (130
for SIGINT, 143 for SIGTERM, 138 for SIGUSR1; ``exit_code()``).

The first press also says that a second one forces the exit. Python runs signal handlers only
when the main thread is between bytecodes, which a long compilation or XLA call delays, so the
presses are counted by a thread that reads ``signal.set_wakeup_fd``'s pipe (written by the C-level
handler at once). The second press waits for a file write in progress (``writing()``), runs the
command's ``on_force_exit`` clean-up (e.g. removing the ``config.json`` of a run that saved
nothing, so the folder stays reusable), says so in one line and exits with 130 at once.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Callable

EXIT_INTERRUPTED = 130  # as jaxdqn.cli.parser's (not imported: this module stays import-light)
STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGUSR1")
                     if hasattr(signal, name))
"""The signals that stop a command at its next safe point (SIGUSR1 where the platform has it)."""

_requested = threading.Event()
_lock = threading.Lock()  # guards the counters and the force-exit slot
_writing = threading.RLock()  # held while a command writes files: a forced exit waits for it
_presses = 0
_first_signal = signal.SIGINT  # the signal that asked to stop (its number sets the exit code)
_previous: dict = {}  # while installed: each stop signal's previous handler
_force_exit: tuple[str, Callable[[], None] | None] = ("", None)
_watch: dict = {}  # while installed with a watcher: the pipe, the thread, the previous wakeup fd


def _say(line: str) -> None:
    """One line on stderr without Python's buffered stream (which the main thread may hold)."""
    lead = "\n" if sys.stderr is not None and sys.stderr.isatty() else ""
    with contextlib.suppress(OSError):
        os.write(2, f"{lead}jaxdqn: {line}\n".encode())


def _name(signum: int) -> str:
    return "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name


def exit_code() -> int:
    """128 + the number of the signal that stopped the command (130 for Ctrl-C)."""
    return 128 + int(_first_signal)


def _press(signum: int = signal.SIGINT) -> None:
    global _presses, _first_signal
    with _lock:
        _presses += 1
        first = _presses == 1
        if first:
            _first_signal = signum
    if first:
        _requested.set()
        _say(f"{_name(signum)}: stopping at the next safe point (press Ctrl-C again to exit at "
             "once)")
        return
    with _writing:  # a file being written is finished first, and may change the slot
        with _lock:
            message, cleanup = _force_exit
        if cleanup is not None:
            with contextlib.suppress(OSError):
                cleanup()
        _say("interrupted again: exited at once" + (f"; {message}" if message else ""))
        os._exit(exit_code())


def _on_signal(signum, frame) -> None:  # never raises: JAX or a write may be running
    global _first_signal
    if _watch:  # the watcher counts the presses; this sets the flag as soon as Python runs
        with _lock:
            if not _requested.is_set():
                _first_signal = signum
            _requested.set()
    else:  # no watcher thread: count them here
        _press(signum)


def _watcher(fd: int) -> None:
    while True:
        try:
            data = os.read(fd, 64)
        except OSError:
            return
        if not data:  # the write end was closed: uninstalled
            return
        for signum in data:
            if signum in STOP_SIGNALS:
                _press(signum)


def install() -> None:
    """Defers the ``STOP_SIGNALS`` to the next ``check()`` (main thread only; a no-op
    elsewhere). ``uninstall()`` restores their previous handlers."""
    if threading.current_thread() is not threading.main_thread():
        return
    for signum in STOP_SIGNALS:
        previous = signal.signal(signum, _on_signal)
        _previous.setdefault(signum, previous)
    if _watch:
        return
    read_fd, write_fd = os.pipe()
    os.set_blocking(write_fd, False)
    try:
        previous = signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
    except (ValueError, OSError):  # no wakeup fd here: the handler counts the presses
        os.close(read_fd)
        os.close(write_fd)
        return
    thread = threading.Thread(target=_watcher, args=(read_fd,), name="jaxdqn-ctrl-c",
                              daemon=True)
    _watch.update(read=read_fd, write=write_fd, thread=thread, previous=previous)
    thread.start()


def uninstall() -> None:
    """Stops the watcher thread, restores the previous wakeup fd and signal handlers; forgets
    pending presses and the force-exit slot."""
    if threading.current_thread() is threading.main_thread():
        if _watch:
            signal.set_wakeup_fd(_watch["previous"])
            os.close(_watch["write"])
            _watch["thread"].join(timeout=5)
            os.close(_watch["read"])
            _watch.clear()
        for signum, previous in _previous.items():
            if previous is not None:
                signal.signal(signum, previous)
        _previous.clear()
    reset()


def requested() -> bool:
    return _requested.is_set()


def check() -> None:
    """Raises ``KeyboardInterrupt`` if a stop signal (Ctrl-C, SIGTERM, SIGUSR1) came since
    ``install()``."""
    if _requested.is_set():
        raise KeyboardInterrupt


def on_force_exit(message: str = "", cleanup: Callable[[], None] | None = None) -> None:
    """What a second Ctrl-C leaves: ``cleanup()`` runs (say, removing a ``config.json`` that no
    result came with) and ``message`` (what the folder holds now) ends its line. Each call
    replaces the previous one, as the command's folder changes."""
    global _force_exit
    with _lock:
        _force_exit = (message, cleanup)


@contextlib.contextmanager
def writing():
    """Holds off a forced exit while files that belong together are written."""
    with _writing:
        yield


def reset() -> None:
    """Forgets a pending Ctrl-C and the force-exit slot (for in-process callers such as tests)."""
    global _presses, _force_exit, _first_signal
    with _lock:
        _presses = 0
        _force_exit = ("", None)
        _first_signal = signal.SIGINT
    _requested.clear()
