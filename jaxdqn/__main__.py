"""``python -m jaxdqn``: the same as the ``jaxdqn`` command."""

import signal
import sys

# Ctrl-C from here on only sets a flag that the command checks at safe points
# (jaxdqn.cli.interrupts).
signal.signal(signal.SIGINT, lambda signum, frame: _pending.append(signum))
_pending: list = []

from jaxdqn.cli import (
    interrupts,
    main,
)

interrupts.install()
if _pending:  # Ctrl-C while importing
    print("jaxdqn: interrupted", file=sys.stderr, flush=True)
    sys.exit(130)
sys.exit(main())
