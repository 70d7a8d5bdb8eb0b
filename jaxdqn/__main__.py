"""``python -m jaxdqn``: the same as the ``jaxdqn`` command."""

import sys

from jaxdqn.cli import main

sys.exit(main())
