"""Cancel queued and abort running dramatiq messages from any process."""

from .backend import Event, EventBackend, Subscription, TimedEvent
from .blocking import run_subprocess, sleep
from .errors import Abort, MessageAborted
from .middleware import Abortable, abort, abort_requested
from .mode import AbortMode
from .outcome import Outcome

__all__ = [
    "Abort",
    "AbortMode",
    "Abortable",
    "Event",
    "EventBackend",
    "MessageAborted",
    "Outcome",
    "Subscription",
    "TimedEvent",
    "abort",
    "abort_requested",
    "run_subprocess",
    "sleep",
]

__version__ = "2.0.0.dev0"
