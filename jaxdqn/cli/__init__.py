"""The ``jaxdqn`` command: ``train``, ``evaluate``, ``sweep`` and ``suite``, each writing a folder
of results.

One module per command (``train``, ``evaluate``, ``sweep``, ``suite``, ``config``), beside the
shared pieces: ``parser`` (the one-line-error parser and exit codes), ``options`` (config
resolution), ``outputs`` (output folders), ``reports`` (tables), ``progress`` and ``segments``
(the segment loop of ``train`` and ``sweep``: progress, loggers, Ctrl-C safe points); ``app``
builds the parser and runs a command.

Every user mistake (unknown env or field, a bad value, an unreadable checkpoint, a folder that
already holds a run) is found before anything compiles and reported as one line on stderr with
exit code 2; Ctrl-C exits with 130 after saving what is done. Set ``JAXDQN_DEBUG=1`` to see the
traceback of an unexpected internal error instead of its one-line summary.
"""

from jaxdqn.cli.app import build_parser, main
from jaxdqn.cli.evaluate import gymnasium_returns
from jaxdqn.cli.options import parse_field_value, resolve_config
from jaxdqn.cli.parser import (
    EXIT_FAILURE,
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    PROG,
    OneLineParser,
    UserError,
)
from jaxdqn.cli.sweep import parse_grid, split_values

__all__ = [
    "EXIT_FAILURE",
    "EXIT_INTERRUPTED",
    "EXIT_USAGE",
    "PROG",
    "OneLineParser",
    "UserError",
    "build_parser",
    "gymnasium_returns",
    "main",
    "parse_field_value",
    "parse_grid",
    "resolve_config",
    "split_values",
]
