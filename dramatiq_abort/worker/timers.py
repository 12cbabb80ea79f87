"""The watcher's timers: the graces that run out, and the requests and
rules whose TTL ends, with what each calls for when it comes."""

from __future__ import annotations

import heapq
import time
from collections.abc import Callable

from dramatiq.broker import MessageProxy

from .execution import Execution
from .executions import Executions
from .lineage import ANCESTRY, check_ancestry
from .requests import AbortRequest, AbortRequests
from .rules import AbortRule, AbortRules

__all__ = ["FORGET_DELAY", "LEFT_CHECK_INTERVAL", "Timers"]

#: Seconds the watcher lets expired requests wait before it forgets them.
FORGET_DELAY = 1.0
#: Seconds between two looks for the messages gone from the process that
#: requests were kept for past their TTL.
LEFT_CHECK_INTERVAL = 1.0


class Timers:
    """What the watcher does when a moment comes rather than an event:
    interrupt a message whose grace ran out, keep a request whose TTL ends
    for the message this process holds, forget what expired, put the switch
    interval back. Only the watcher's thread uses it."""

    def __init__(
        self,
        executions: Executions,
        requests: AbortRequests,
        rules: AbortRules,
        held: Callable[[], list[tuple[bool, MessageProxy]]],
    ) -> None:
        """``held``: the messages this process fetched and has not started,
        each with whether it is delayed."""
        self.executions = executions
        self.requests = requests
        self.rules = rules
        self.held = held
        #: Graceful aborts of running messages: (abort_at, message_id).
        self.deadlines: list[tuple[float, str]] = []
        #: ``time.monotonic()`` of the next look for messages gone from the
        #: process, while requests are kept for some.
        self._left_check_at = 0.0

    def deliver(self, execution: Execution, request: AbortRequest, now: float) -> None:
        """Apply ``request`` to ``execution`` (see :meth:`Executions.deliver`),
        and interrupt it later if its grace is not over yet."""
        if self.executions.deliver(execution, request, now):
            heapq.heappush(self.deadlines, (request.abort_at, request.message_id))

    def deliver_due(self) -> None:
        """Interrupt the messages whose grace ran out."""
        now = time.monotonic()
        deadlines = self.deadlines
        while deadlines and deadlines[0][0] <= now:
            _, message_id = heapq.heappop(deadlines)
            self.executions.deliver_due(message_id, now)

    def expire(self, now: float) -> None:
        """Forget the requests and rules past their expiry, once the
        requests for messages this process holds are kept (see
        :meth:`_keep_for_held`); put the switch interval back when due."""
        requests, rules = self.requests.ending(now), self.rules.ending(now)
        if requests or rules:
            self._keep_for_held(requests, rules)
        if self.requests.kept and now >= self._left_check_at:
            self._left_check_at = now + LEFT_CHECK_INTERVAL
            self.requests.forget_left()
        self.requests.forget_expired(now)
        self.rules.forget_expired(now)
        self.executions.switching.expire(now)

    def _keep_for_held(self, requests: list[AbortRequest], rules: list[AbortRule]) -> None:
        """Keep in force, until they start or leave the process, the
        ``requests`` and ``rules`` whose TTL ends, for the messages waiting
        here for a thread that they stop: the message of a request, its
        descendants, those a rule matches. A delayed message is not kept
        for: at its ETA it goes back to its queue, and leaves the process."""
        by_message = {request.message_id: request for request in requests}
        for delayed, message in self.held():
            if delayed:
                continue
            message_id = message.message_id
            request = by_message.get(message_id)
            if request is not None:
                self.requests.keep(request, message)
            ancestry = message.options.get(ANCESTRY) if by_message else None
            if ancestry is not None:
                try:
                    ancestors = check_ancestry(ancestry)
                except ValueError:
                    ancestors = ()  # Warned of as it starts: no abort reaches it.
                for ancestor in ancestors:
                    if (request := by_message.get(ancestor)) is not None:
                        self.requests.keep(request.for_descendant(message_id), message)
            rule = next((rule for rule in rules if rule.matches(message)), None)
            if rule is not None:
                self.requests.keep(rule.request_for(message_id), message)

    def seconds_to_next(self) -> float | None:
        """Seconds until the watcher has something to do without an event:
        a grace that runs out, a TTL that ends, requests to forget, a
        switch interval to put back; ``None`` while nothing is due."""
        moments = []
        if self.deadlines:
            moments.append(self.deadlines[0][0])
        switching_expires_at = self.executions.switching.expires_at
        if switching_expires_at is not None:
            moments.append(switching_expires_at)
        # On time: a request may have to be kept before its grace runs out.
        for look in (self.requests.next_look(), self.rules.next_look()):
            if look is not None:
                moments.append(look)
        if self.requests.kept:
            moments.append(self._left_check_at)
        for expiry in (self.requests.next_expiry(), self.rules.next_expiry()):
            if expiry is not None:
                # Late on purpose, so that requests expiring together are
                # forgotten in one wake-up.
                moments.append(expiry + FORGET_DELAY)
        if not moments:
            return None
        return max(0.0, min(moments) - time.monotonic())
