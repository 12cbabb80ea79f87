"""A worker process's answer to a listing's inquiry, made from what it
runs and holds (see :mod:`dramatiq_abort.listing` for the asking side)."""

from __future__ import annotations

import json
import logging
import math
import os
import reprlib
import socket
import time
import uuid
from collections.abc import Callable, Collection, Iterable
from typing import Any

from dramatiq.common import q_name

from ..backend import EventBackend, TimedEvent
from ..listing import ARGS_LENGTH, DELAYED, FOREVER, RUNNING, WAITING
from ..wire import Inquiry, parse_inquiry
from .execution import Execution
from .requests import AbortRequests
from .rules import message_matches

__all__ = ["Answerer", "shortened_args"]

_args_repr = reprlib.Repr()
_args_repr.maxstring = 60
_args_repr.maxother = 60


class Answerer:
    """Answers the inquiries of which messages run in a worker process,
    once each, from what it runs; used by its watcher. Reads only the
    snapshot the process keeps in memory."""

    def __init__(
        self,
        backend: EventBackend,
        requests: AbortRequests,
        logger: logging.Logger,
        running: Callable[[], Iterable[Execution]],
        held: Callable[[], Iterable[tuple[bool, Any]]],
        actors: Collection[str] = (),
    ) -> None:
        """``running``: the executions of this process; ``held``: the
        messages it fetched and has not started, each with whether it is
        delayed; ``actors``: the names of the actors it declares, as they
        are declared (read at each answer that asks for them)."""
        self.backend = backend
        self.requests = requests
        self.logger = logger
        self.running = running
        self.held = held
        self.actors = actors
        #: Names this process in its answers, so that the asker counts it
        #: once, even if it answers twice or shares a host name and pid.
        self.process = uuid.uuid4().hex
        self.host = socket.gethostname()
        #: The reply addresses of the inquiries answered, with when each
        #: inquiry expires: catching up after a reconnect finds an inquiry
        #: that may have been answered already, and an asker that counts a
        #: second answer as another process would stop waiting too soon.
        self._answered: dict[str, float] = {}

    def reply(self, timed: TimedEvent) -> None:
        """Tell the asker of the inquiry ``timed`` which messages run here,
        unless this process answered it already; a failure is logged, and
        the asker counts this process as not answering."""
        try:
            inquiry = parse_inquiry(timed.event)
            now = time.monotonic()
            self._answered = {
                reply_to: expires for reply_to, expires in self._answered.items() if expires > now
            }
            if inquiry.reply_to in self._answered:
                return
            # Held before running: a message that starts between the two
            # reads is in both, and listed once, rather than in neither.
            held = self.held()
            payload = self.answer(inquiry, self.running(), held)
            self.backend.answer(inquiry.reply_to, payload, max(1, timed.ttl_left))
            self._answered[inquiry.reply_to] = now + timed.ttl_left / 1000
        except Exception as e:
            self.logger.warning(
                "Abort watcher could not answer inquiry %.100r (%s: %.200s).",
                timed.event.key,
                type(e).__name__,
                e,
            )
            self.logger.debug("Answering failed with:", exc_info=e)

    def answer(
        self,
        inquiry: Inquiry,
        running: Iterable[Execution],
        held: Iterable[tuple[bool, Any]] = (),
    ) -> str:
        """The answer to ``inquiry``: ``running`` being the executions of this
        process, and ``held`` the messages it fetched and has not started,
        each with whether it is delayed. A message in both is listed running."""
        now = time.monotonic()
        listed: dict[str, dict[str, Any]] = {}
        for execution in running:
            entry = self._entry(inquiry, execution.message, now)
            if entry is not None:
                entry.update(state=RUNNING, started_at=execution.started_at)
                listed[execution.message_id] = entry
        for delayed, message in held:
            if message.message_id in listed:
                continue
            entry = self._entry(inquiry, message, now)
            if entry is not None:
                entry["state"] = DELAYED if delayed else WAITING
                if delayed:
                    entry["eta"] = message.options.get("eta")
                listed[message.message_id] = entry
        answer: dict[str, Any] = {
            "process": self.process,
            "host": self.host,
            "pid": os.getpid(),
            "messages": list(listed.values()),
        }
        if inquiry.actors:
            answer["actors"] = sorted(self.actors)
        return json.dumps(answer)

    def _entry(self, inquiry: Inquiry, message: Any, now: float) -> dict[str, Any] | None:
        """What an answer says of ``message``; ``None`` when the inquiry's
        filters leave it out."""
        if not message_matches(message, inquiry.actor, inquiry.queue, inquiry.sent_before):
            return None
        request = self.requests.get(message.message_id)
        requested = request is not None and request.interrupts
        grace: float | str | None = None
        if request is not None and requested and request.abort_at > now:
            left = request.abort_at - now
            grace = FOREVER if left == math.inf else round(left * 1000)
        entry: dict[str, Any] = {
            "id": message.message_id,
            "actor": message.actor_name,
            "queue": q_name(message.queue_name),
            "sent_at": message.message_timestamp,
            "abort_requested": requested,
            "grace_left": grace,
            "reason": request.reason if requested and request is not None else None,
        }
        if inquiry.args:
            entry["args"] = shortened_args(message.args, message.kwargs)
        return entry


def shortened_args(args: Iterable[Any], kwargs: dict[str, Any]) -> str:
    """``args`` and ``kwargs`` as a call would show them, each value
    shortened, the whole cut to at most ``ARGS_LENGTH`` characters."""
    parts = [_args_repr.repr(value) for value in args]
    parts += [f"{name}={_args_repr.repr(value)}" for name, value in kwargs.items()]
    shown = ", ".join(parts)
    return shown if len(shown) <= ARGS_LENGTH else shown[: ARGS_LENGTH - 3] + "..."
