"""``python -m dramatiq_abort.cli``: the ``dramatiq-abort`` command, as
``python -m dramatiq_abort`` is."""

import sys

from .commands import main

sys.exit(main())
