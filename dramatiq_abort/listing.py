"""Which messages run across every worker process: the inquiry a process
sends, and the listing made of the answers each worker's watcher makes (see
:mod:`dramatiq_abort.worker.answerer`)."""

from __future__ import annotations

import json
import logging
import math
import uuid
from typing import Any, NamedTuple

from dramatiq.common import q_name

from .backend import EventBackend
from .checks import check_bool, check_moment, check_name
from .wire import Inquiry, inquiry_event

__all__ = ["DELAYED", "RUNNING", "WAITING", "Listing", "RunningMessage"]

#: Longest text, in characters, that stands for a message's arguments in
#: a listing: enough to recognise them, bounded whatever they hold.
ARGS_LENGTH = 200
#: The :attr:`RunningMessage.state` of a message that runs in a worker thread.
RUNNING = "running"
#: That of a message a worker process fetched and holds until a thread is
#: free: dramatiq prefetches up to twice as many messages as it has threads.
WAITING = "waiting"
#: That of a delayed message a worker process fetched and holds until its ETA.
DELAYED = "delayed"
#: How grace left for ever (``math.inf``) is written in an answer and in
#: ``dramatiq-abort list --json``: JSON has no infinity.
FOREVER = "inf"

logger = logging.getLogger(__name__)


class RunningMessage(NamedTuple):
    """One message that a worker process was running, or held to run, when
    it answered: see :attr:`state`."""

    message_id: str
    actor: str
    #: Its queue; a delayed message's too, not the delay queue's.
    queue: str
    #: ``time.time()`` on the worker when the message started; ``None``
    #: unless it runs.
    started_at: float | None
    #: When the message was sent: its ``message_timestamp``, in seconds
    #: since the epoch, as every time point of a listing.
    sent_at: float
    #: The host name of the worker process, and its pid.
    host: str
    pid: int
    #: Whether an abort request (not a mere cancel) is in force for it.
    abort_requested: bool
    #: Milliseconds of grace it has left before it is interrupted;
    #: ``math.inf`` when it is asked to stop and never forced; ``None`` when
    #: no grace runs (no abort requested, or it is being interrupted).
    grace_left: float | None
    #: Why the abort request in force was sent, if it said.
    reason: str | None
    #: Its arguments, shortened to at most ``ARGS_LENGTH`` characters;
    #: ``None`` unless they were asked for.
    args: str | None
    #: :data:`RUNNING`; :data:`WAITING` when the worker process fetched it
    #: and waits for a free thread to run it; :data:`DELAYED` when it holds
    #: it until its ETA. An abort or a rule reaches a held message too: it
    #: is cancelled as it starts.
    state: str = RUNNING
    #: When a delayed message is due, in seconds since the epoch (dramatiq's
    #: ``eta`` option, which counts milliseconds, over 1,000).
    eta: float | None = None


class Listing(NamedTuple):
    """What the worker processes that answered in time were running, and
    the messages they had fetched to run.

    A worker process that did not answer is not in :attr:`answered`: its
    messages are missing, not known to be none.
    """

    #: The messages that match: the running ones, oldest start first, then
    #: the waiting ones, then the delayed ones, soonest due first.
    messages: list[RunningMessage]
    #: How many worker processes answered in time.
    answered: int
    #: How many worker processes listened when the question was sent, when
    #: the backend can tell (``None`` on a Redis Cluster, for one).
    expected: int | None
    #: The host name and pid of each worker process that answered, those
    #: that run nothing included.
    workers: tuple[tuple[str, int], ...] = ()
    #: The names of the actors that the worker processes that answered
    #: declare, when the inquiry asked for them; ``None`` when it did not,
    #: or when one of them did not say.
    actors: frozenset[str] | None = None

    @property
    def complete(self) -> bool:
        """Whether every worker process known to listen answered."""
        return self.expected is not None and self.answered >= self.expected

    def as_json(self, with_args: bool = False) -> dict[str, Any]:
        """The listing as ``dramatiq-abort list --json`` prints it and the
        web page's API gives it: every time point in seconds since the
        epoch, as in :class:`RunningMessage`, a grace that never ends
        :data:`FOREVER`, each worker ``host:pid``, and a message's arguments
        only ``with_args``."""
        messages = []
        for message in self.messages:
            entry = message._asdict()
            if message.grace_left == math.inf:
                entry["grace_left"] = FOREVER
            if not with_args:
                del entry["args"]
            messages.append(entry)
        return {
            "answered": self.answered,
            "expected": self.expected,
            "workers": [f"{host}:{pid}" for host, pid in self.workers],
            "messages": messages,
        }


def check_inquiry(
    actor: object, queue: object, sent_before: object, args: object, actors: bool = False
) -> Inquiry:
    """The inquiry these filters make, with a new reply address, asking
    which actors each process declares if ``actors``; raises ``TypeError``
    or ``ValueError`` naming a bad filter."""
    return Inquiry(
        uuid.uuid4().hex,
        check_name("actor", actor),
        _canonical(check_name("queue", queue)),
        _check_sent_before(sent_before),
        check_bool("args", args),
        actors,
    )


def _canonical(queue: str | None) -> str | None:
    # A delay queue's name means its queue, as in abort_where().
    return None if queue is None else q_name(queue)


def _check_sent_before(value: object) -> int | None:
    # In milliseconds since the epoch, as message_timestamp.
    return None if value is None else int(check_moment("sent_before", value) * 1000)


def ask(backend: EventBackend, inquiry: Inquiry, timeout: float) -> Listing:
    """Send ``inquiry`` to every worker process and collect their answers
    for up to ``timeout`` seconds, or until every listening one answered."""
    expected = backend.subscribers()
    # The inquiry lives as long as the asker waits: a worker that
    # (re)connects meanwhile answers it too.
    backend.notify([inquiry_event(inquiry)], ttl=max(1, math.ceil(timeout * 1000)))
    answers = backend.collect_answers(inquiry.reply_to, expected, timeout)
    by_process: dict[str, _Answer] = {}
    for answer in answers:
        decoded = _decode(answer)
        if decoded is not None:
            by_process[decoded.process] = decoded
    messages = sorted(
        (message for answer in by_process.values() for message in answer.messages),
        key=_listing_order,
    )
    workers = tuple(answer.worker for answer in by_process.values())
    actors = None
    if inquiry.actors and all(answer.actors is not None for answer in by_process.values()):
        actors = frozenset(name for answer in by_process.values() for name in answer.actors or ())
    return Listing(messages, len(by_process), expected, workers, actors)


def _listing_order(message: RunningMessage) -> tuple[int, float]:
    if message.started_at is not None:
        return 0, message.started_at
    if message.eta is None:
        return 1, 0.0
    return 2, message.eta


class _Answer(NamedTuple):
    """What one worker process answered."""

    #: Names the process (see ``Answerer.process``).
    process: str
    #: Its host name and pid.
    worker: tuple[str, int]
    messages: list[RunningMessage]
    #: The actors it declares; ``None`` unless the inquiry asked, or when
    #: it did not say.
    actors: list[str] | None


def _decode(answer: str) -> _Answer | None:
    """What ``answer`` says; a malformed answer is logged and skipped."""
    try:
        data = json.loads(answer)
        host, pid, actors = data["host"], data["pid"], data.get("actors")
        if not isinstance(host, str) or type(pid) is not int:
            raise ValueError("bad host or pid")
        if actors is not None and not (
            isinstance(actors, list) and all(isinstance(name, str) for name in actors)
        ):
            raise ValueError("bad actors")
        messages = []
        for listed in data["messages"]:
            grace = listed["grace_left"]
            started_at, eta = listed.get("started_at"), listed.get("eta")
            messages.append(
                RunningMessage(
                    str(listed["id"]),
                    str(listed["actor"]),
                    str(listed["queue"]),
                    None if started_at is None else float(started_at),
                    # Answers carry dramatiq's milliseconds.
                    int(listed["sent_at"]) / 1000,
                    host,
                    pid,
                    bool(listed["abort_requested"]),
                    math.inf if grace == FOREVER else None if grace is None else float(grace),
                    None if listed.get("reason") is None else str(listed["reason"]),
                    None if listed.get("args") is None else str(listed["args"]),
                    # Workers of earlier versions list running messages only.
                    str(listed.get("state", RUNNING)),
                    None if eta is None else int(eta) / 1000,
                )
            )
        return _Answer(str(data["process"]), (host, pid), messages, actors)
    except (ValueError, TypeError, KeyError) as e:
        logger.warning("Skipping a malformed answer to a listing (%s): %.200r", e, answer)
        return None
