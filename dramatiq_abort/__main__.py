"""``python -m dramatiq_abort``: the ``dramatiq-abort`` command."""

import sys

from .cli import main

sys.exit(main())
