"""What became of a message that an abort request reached."""

from __future__ import annotations

from enum import Enum

__all__ = ["Outcome"]


class Outcome(Enum):
    """What became of a message that an abort request reached."""

    #: The request was in force before the actor started: it never ran.
    CANCELLED = "cancelled"
    #: :class:`Abort` was raised while the actor ran and ended it.
    ABORTED = "aborted"
    #: The actor ended by itself after it was told of the request
    #: (``abort_requested()`` answered it): it stopped cooperatively.
    STOPPED = "stopped"
    #: The actor ended by itself, never told of the request.
    FINISHED = "finished"
