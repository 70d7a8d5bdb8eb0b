"""Ctrl-C without crashes: the first press stops at the next safe point, a second exits at once.

A ``KeyboardInterrupt`` raised wherever Python happens to be (inside JAX's compiler callbacks,
an XLA execution, a file write) can abort the process ("pure virtual method called", exit -6) or
leave half a folder. With ``install()``, SIGINT sets a flag and nothing else; ``check()`` at the
commands' safe points (after compiling, between segments, before and after evaluating, between
sweep groups, each step of a Gymnasium evaluation) raises ``KeyboardInterrupt`` there, where the
command saves what it has and exits with 130.

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
from typing import Callable

EXIT_INTERRUPTED = 130  # as jaxdqn.cli.parser's (not imported: this module stays import-light)

_requested = threading.Event()
_lock = threading.Lock()  # guards the counters and the force-exit slot
_writing = threading.RLock()  # held while a command writes files: a forced exit waits for it
_presses = 0
_force_exit: tuple[str, Callable[[], None] | None] = ("", None)
_watch: dict = {}  # while installed with a watcher: the pipe, the thread, the previous wakeup fd


def _say(line: str) -> None:
    """One line on stderr without Python's buffered stream (which the main thread may hold)."""
    lead = "\n" if sys.stderr is not None and sys.stderr.isatty() else ""
    try:
        os.write(2, f"{lead}jaxdqn: {line}\n".encode())
    except OSError:
        pass


def _press() -> None:
    global _presses
    with _lock:
        _presses += 1
        first = _presses == 1
    if first:
        _requested.set()
        _say("Ctrl-C: stopping at the next safe point (press Ctrl-C again to exit at once)")
        return
    with _writing:  # a file being written is finished first, and may change the slot
        with _lock:
            message, cleanup = _force_exit
        if cleanup is not None:
            try:
                cleanup()
            except OSError:
                pass
        _say("interrupted again: exited at once" + (f"; {message}" if message else ""))
        os._exit(EXIT_INTERRUPTED)


def _on_sigint(signum, frame) -> None:  # never raises: JAX or a write may be running
    if _watch:  # the watcher counts the presses; this sets the flag as soon as Python runs
        _requested.set()
    else:  # no watcher thread: count them here
        _press()


def _watcher(fd: int) -> None:
    while True:
        try:
            data = os.read(fd, 64)
        except OSError:
            return
        if not data:  # the write end was closed: uninstalled
            return
        for _ in range(data.count(bytes([signal.SIGINT]))):
            _press()


def install() -> None:
    """Defers SIGINT to the next ``check()`` (main thread only; a no-op elsewhere)."""
    if threading.current_thread() is not threading.main_thread():
        return
    signal.signal(signal.SIGINT, _on_sigint)
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
    """Stops the watcher thread and restores the previous wakeup fd (the caller restores the
    previous SIGINT handler); forgets pending presses and the force-exit slot."""
    if _watch and threading.current_thread() is threading.main_thread():
        signal.set_wakeup_fd(_watch["previous"])
        os.close(_watch["write"])
        _watch["thread"].join(timeout=5)
        os.close(_watch["read"])
        _watch.clear()
    reset()


def requested() -> bool:
    return _requested.is_set()


def check() -> None:
    """Raises ``KeyboardInterrupt`` if Ctrl-C was pressed since ``install()``."""
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
    global _presses, _force_exit
    with _lock:
        _presses = 0
        _force_exit = ("", None)
    _requested.clear()
