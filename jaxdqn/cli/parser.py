"""The one-line-error argument parser shared by the ``jaxdqn`` command and the scripts.

argparse prints the usage and the message and exits on a bad argument; jaxdqn's commands report
every user mistake as one line instead, so the parser raises ``UserError`` and the entry point
prints it.
"""

from __future__ import annotations

import argparse
import sys

PROG = "jaxdqn"
EXIT_USAGE, EXIT_FAILURE, EXIT_INTERRUPTED = 2, 1, 130


class UserError(Exception):
    """A mistake in the command line or its inputs, shown as one line (exit code 2)."""


class OneLineParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors raise ``UserError("... (see 'PROG --help')")``."""

    def error(self, message):
        raise UserError(f"{message} (see '{self.prog} --help')")


class DefaultsHelpFormatter(argparse.RawDescriptionHelpFormatter,
                            argparse.ArgumentDefaultsHelpFormatter):
    """``--help`` for the scripts: the description as written, and each option's default after
    its help, except a default that shows nothing (None, a flag's False, an empty list): the
    help of such an option says what leaving it out does."""

    def _get_help_string(self, action):
        if action.default is None or action.default is False or action.default == []:
            return action.help
        return super()._get_help_string(action)


def positive_int(text: str) -> int:
    """An argparse ``type`` for counts: an int > 0, else an error the parser reports in one line."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an int") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is invalid: must be > 0")
    return value


def say(message: str, prog: str = PROG) -> None:
    """Prints ``prog: message`` on stderr at once (progress, notes and errors)."""
    print(f"{prog}: {message}", file=sys.stderr, flush=True)
