"""What an abort request stops."""

from __future__ import annotations

from enum import Enum

__all__ = ["AbortMode"]


class AbortMode(Enum):
    """What an abort request stops.

    ``CANCEL`` stops a message that has not started; ``ABORT`` stops it too,
    and interrupts it while it runs.
    """

    ABORT = "abort"
    CANCEL = "cancel"
