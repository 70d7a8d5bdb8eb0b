"""``python -m jaxdqn.cli``: the same as the ``jaxdqn`` command."""

import sys

from jaxdqn.cli.app import main

sys.exit(main())
