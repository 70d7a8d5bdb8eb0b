"""A Ctrl-C at a chosen point of a command run in this process, for the resume tests."""

import os
import signal

import jaxdqn.runs


def interrupt_after(monkeypatch, segments: int) -> None:
    """Sends this process SIGINT as the ``segments``-th segment of the call comes back (counted
    over every run of the call; the handler the CLI's ``main`` installs only sets a flag, so the
    command stops at its next safe point)."""
    real = jaxdqn.runs.run_in_segments
    seen = [0]

    def run_in_segments(*args, **kwargs):
        for segment in real(*args, **kwargs):
            seen[0] += 1
            if seen[0] == segments:
                os.kill(os.getpid(), signal.SIGINT)
            yield segment

    monkeypatch.setattr(jaxdqn.runs, "run_in_segments", run_in_segments)
