"""What several test modules share."""

from __future__ import annotations

import time
from typing import Callable

from dramatiq_abort import Abort

#: How long a test waits for anything before it calls it a failure.
WAIT = 10.0


def spin_until_aborted(started: Callable[[], object], interrupted: Callable[[], object]) -> None:
    """Call ``started``, then run pure Python (for at most ``WAIT`` seconds)
    until an Abort stops it; call ``interrupted`` and let the Abort go on."""
    try:
        started()
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            pass
    except Abort:
        interrupted()
        raise
