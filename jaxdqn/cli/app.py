"""The ``jaxdqn`` entry point: the parser of every command and the one place that turns errors
and Ctrl-C into exit codes."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from jaxdqn.cli import config, distributed, evaluate, interrupts, suite, sweep, train
from jaxdqn.cli.parser import (
    EXIT_FAILURE,
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    PROG,
    OneLineParser,
    UserError,
    say,
)
from jaxdqn.runtime import fast_cpu_compile, use_all_cpu_cores

COMMANDS = (train, evaluate, sweep, suite, config)


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the command line ``argv`` (default ``sys.argv[1:]``); returns the exit code."""
    if "jax" not in sys.modules:  # an in-process caller (a test) has set up its JAX already
        fast_cpu_compile()
        use_all_cpu_cores()  # seeds split across cores: jaxdqn.runs.make_runs
    argv = list(sys.argv[1:] if argv is None else argv)
    interrupts.install()  # Ctrl-C and SIGTERM act at the commands' safe points, never inside JAX
    try:
        distributed.start_from_argv(argv)  # before any JAX computation, parsing's imports too
        args = build_parser().parse_args(argv)
        if args.command is None:
            raise UserError("choose a command: train, evaluate, sweep, suite or config "
                            f"(see '{PROG} --help')")
        code = args.handler(args, argv)
        if interrupts.requested() and code == 0:  # Ctrl-C after the last safe point
            say("interrupted (after the command had finished its work)")
            return interrupts.exit_code()
        return interrupts.exit_code() if code == EXIT_INTERRUPTED else code
    except UserError as e:
        say(f"error: {e}")
        return EXIT_USAGE
    except KeyboardInterrupt:
        say("interrupted")
        return interrupts.exit_code()
    except BrokenPipeError:  # output piped into a reader that stopped (| head): not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except SystemExit as e:  # --help and --version
        return e.code if isinstance(e.code, int) else 0
    except Exception as e:
        if os.environ.get("JAXDQN_DEBUG"):
            raise
        msg = str(e).strip().splitlines()[0] if str(e).strip() else ""
        say(f"error: {type(e).__name__}: {msg} (set JAXDQN_DEBUG=1 for the traceback)")
        return EXIT_FAILURE
    finally:
        interrupts.uninstall()


def build_parser() -> argparse.ArgumentParser:
    from jaxdqn import __version__

    parser = OneLineParser(
        prog=PROG,
        description="Deep Q-Networks in JAX: one jitted lax.scan per run, vmapped over seeds.",
        epilog=f"Run '{PROG} COMMAND --help' for a command's options. Docs: docs/cli.md",
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=OneLineParser)
    for command in COMMANDS:
        command.add_parser(sub)
    return parser
