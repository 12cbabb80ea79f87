"""Which messages run across every worker process: the inquiry a process
sends, the answer each worker's watcher makes from what it runs, and the
listing made of the answers."""

from __future__ import annotations

import json
import logging
import math
import os
import reprlib
import socket
import time
import uuid
from collections.abc import Iterable
from typing import Any, NamedTuple

from dramatiq.common import q_name

from .backend import EventBackend
from .checks import check_bool, check_moment, check_name
from .execution import Execution
from .requests import AbortRequests
from .rules import message_matches
from .wire import Inquiry, inquiry_event

__all__ = ["Listing", "RunningMessage"]

#: Longest text, in characters, that stands for a message's arguments in
#: a listing: enough to recognise them, bounded whatever they hold.
ARGS_LENGTH = 200
#: How grace left for ever (``math.inf``) is written in an answer and in
#: ``dramatiq-abort list --json``: JSON has no infinity.
FOREVER = "inf"

logger = logging.getLogger(__name__)

_args_repr = reprlib.Repr()
_args_repr.maxstring = 60
_args_repr.maxother = 60


class RunningMessage(NamedTuple):
    """One message that a worker process was running when it answered."""

    message_id: str
    actor: str
    queue: str
    #: ``time.time()`` on the worker when the message started.
    started_at: float
    #: When the message was sent: its ``message_timestamp``, milliseconds
    #: since the epoch.
    sent_at: int
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


class Listing(NamedTuple):
    """What the worker processes that answered in time were running.

    A worker process that did not answer is not in :attr:`answered`: its
    messages are missing, not known to be none.
    """

    #: The messages that match, oldest start first.
    messages: list[RunningMessage]
    #: How many worker processes answered in time.
    answered: int
    #: How many worker processes listened when the question was sent, when
    #: the backend can tell (``None`` on a Redis Cluster, for one).
    expected: int | None

    @property
    def complete(self) -> bool:
        """Whether every worker process known to listen answered."""
        return self.expected is not None and self.answered >= self.expected


def check_inquiry(actor: object, queue: object, sent_before: object, args: object) -> Inquiry:
    """The inquiry these filters make, with a new reply address; raises
    ``TypeError`` or ``ValueError`` naming a bad filter."""
    return Inquiry(
        uuid.uuid4().hex,
        check_name("actor", actor),
        _canonical(check_name("queue", queue)),
        _check_sent_before(sent_before),
        check_bool("args", args),
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
    # A worker that reconnected while the inquiry was pushed may answer twice.
    by_process: dict[str, list[RunningMessage]] = {}
    for answer in answers:
        decoded = _decode(answer)
        if decoded is not None:
            by_process[decoded[0]] = decoded[1]
    messages = sorted(
        (message for listed in by_process.values() for message in listed),
        key=lambda message: message.started_at,
    )
    return Listing(messages, len(by_process), expected)


class Answerer:
    """Makes a worker process's answer to an inquiry from what it runs;
    used by its watcher. Reads only the snapshot the process keeps in memory."""

    def __init__(self, requests: AbortRequests) -> None:
        self.requests = requests
        #: Names this process in its answers, so that the asker counts it
        #: once, even if it answers twice or shares a host name and pid.
        self.process = uuid.uuid4().hex
        self.host = socket.gethostname()

    def answer(self, inquiry: Inquiry, running: Iterable[Execution]) -> str:
        """The answer to ``inquiry``, ``running`` being the executions of this process."""
        now = time.monotonic()
        messages = []
        for execution in running:
            message = execution.message
            if not message_matches(message, inquiry.actor, inquiry.queue, inquiry.sent_before):
                continue
            request = execution.request or self.requests.get(execution.message_id)
            requested = request is not None and request.interrupts
            grace: float | str | None = None
            if request is not None and requested and request.abort_at > now:
                left = request.abort_at - now
                grace = FOREVER if left == math.inf else round(left * 1000)
            listed: dict[str, Any] = {
                "id": execution.message_id,
                "actor": message.actor_name,
                "queue": message.queue_name,
                "started_at": execution.started_at,
                "sent_at": message.message_timestamp,
                "abort_requested": requested,
                "grace_left": grace,
                "reason": request.reason if requested and request is not None else None,
            }
            if inquiry.args:
                listed["args"] = shortened_args(message.args, message.kwargs)
            messages.append(listed)
        return json.dumps(
            {"process": self.process, "host": self.host, "pid": os.getpid(), "messages": messages}
        )


def shortened_args(args: Iterable[Any], kwargs: dict[str, Any]) -> str:
    """``args`` and ``kwargs`` as a call would show them, each value
    shortened, the whole cut to at most ``ARGS_LENGTH`` characters."""
    parts = [_args_repr.repr(value) for value in args]
    parts += [f"{name}={_args_repr.repr(value)}" for name, value in kwargs.items()]
    shown = ", ".join(parts)
    return shown if len(shown) <= ARGS_LENGTH else shown[: ARGS_LENGTH - 3] + "..."


def _decode(answer: str) -> tuple[str, list[RunningMessage]] | None:
    """The process an answer comes from and the messages it lists; a
    malformed answer is logged and skipped."""
    try:
        data = json.loads(answer)
        host, pid = data["host"], data["pid"]
        if not isinstance(host, str) or type(pid) is not int:
            raise ValueError("bad host or pid")
        messages = []
        for listed in data["messages"]:
            grace = listed["grace_left"]
            messages.append(
                RunningMessage(
                    str(listed["id"]),
                    str(listed["actor"]),
                    str(listed["queue"]),
                    float(listed["started_at"]),
                    int(listed["sent_at"]),
                    host,
                    pid,
                    bool(listed["abort_requested"]),
                    math.inf if grace == FOREVER else None if grace is None else float(grace),
                    None if listed.get("reason") is None else str(listed["reason"]),
                    None if listed.get("args") is None else str(listed["args"]),
                )
            )
        return str(data["process"]), messages
    except (ValueError, TypeError, KeyError) as e:
        logger.warning("Skipping a malformed answer to a listing (%s): %.200r", e, answer)
        return None
