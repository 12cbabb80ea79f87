"""Cancel queued and abort running dramatiq messages from any process."""

from .backend import Event, EventBackend, MessageRecords, Subscription, TimedEvent
from .blocking import run_subprocess, sleep
from .errors import Abort, MessageAborted
from .listing import Listing, RunningMessage
from .middleware import (
    Abortable,
    abort,
    abort_many,
    abort_requested,
    abort_where,
    running_messages,
    wait_outcome,
)
from .mode import AbortMode
from .outcome import Outcome

__all__ = [
    "Abort",
    "AbortMode",
    "Abortable",
    "Event",
    "EventBackend",
    "Listing",
    "MessageAborted",
    "MessageRecords",
    "Outcome",
    "RunningMessage",
    "Subscription",
    "TimedEvent",
    "abort",
    "abort_many",
    "abort_requested",
    "abort_where",
    "run_subprocess",
    "running_messages",
    "sleep",
    "wait_outcome",
]

__version__ = "2.0.0.dev0"
