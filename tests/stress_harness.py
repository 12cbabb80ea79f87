"""The stress tests' shared harness: the plan, each message's record, and the checks."""

from __future__ import annotations

import os
import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import dramatiq
from dramatiq.broker import MessageProxy
from dramatiq.middleware import Middleware

from dramatiq_abort import Abortable, AbortMode
from dramatiq_abort.watcher import SYNC_TIMEOUT

#: Multiplies the number of messages of every run (``STRESS_SCALE``).
SCALE = float(os.environ.get("STRESS_SCALE", "1"))
#: Fixes the plan of a run when set (``STRESS_SEED``); its timings still vary.
SEED = os.environ.get("STRESS_SEED")

#: When a message is aborted: never, or before it is even sent. Each test
#: adds its own moments (while it runs, as it ends...).
NEVER = "never"
PRE = "pre"

#: How a worker let go of a message: dramatiq processed it (its body ran to
#: its end, or it failed), or skipped it (Abortable cancelled or aborted it).
PROCESSED = "processed"
SKIPPED = "skipped"

#: A few aborts may be lost once Abortable's pre-start check gave up
#: waiting (it documents that it waits at most ``SYNC_TIMEOUT`` for the
#: events on their way): at most this many...
LOST_AFTER_TIMEOUT_FLOOR = 2
#: ... or one in this many of the aborts that returned before processing began.
LOST_AFTER_TIMEOUT_RATIO = 20
LOST_AFTER_TIMEOUT = "lost once the pre-start check timed out"


def run_seed() -> int:
    """The seed of a run's plan: ``STRESS_SEED``, or a fresh one."""
    return int(SEED) if SEED is not None else random.randrange(2**32)


def scaled(base: int) -> int:
    """``base`` messages times ``STRESS_SCALE``, and at least a tenth of ``base``."""
    return max(base // 10, int(base * SCALE))


@dataclass
class Plan:
    """What a message's body does, and which abort it gets, and when."""

    index: int
    #: What its body does; each test has its kinds.
    kind: str
    #: How long its body works, unless it ``holds``.
    millis: float
    message: dramatiq.Message[Any]
    #: Its body runs until its Abort comes (at most some bound of the test's).
    holds: bool = False
    when: str = NEVER
    mode: AbortMode | None = None
    #: Seconds past the moment ``when`` names at which the abort is sent.
    delay: float = 0.0
    #: Which process sends its abort, where a test has several.
    source: str = ""

    @property
    def message_id(self) -> str:
        return self.message.message_id

    def __str__(self) -> str:
        mode = self.mode.value if self.mode else ""
        return (
            f"message {self.index} ({self.kind} {self.millis:.2f} ms, {self.when} {mode} "
            f"+{self.delay * 1000:.2f} ms {self.source}, id {self.message_id})"
        )


class SentAbort(NamedTuple):
    """One abort call, as its sender saw it."""

    when: str
    mode: AbortMode
    source: str
    #: ``time.monotonic()``, which every process of the machine shares, just
    #: before the call and once it returned.
    called: float
    returned: float
    #: What the call raised, or "".
    error: str


class AbortLog:
    """Every abort sent, by message index; at most one per message."""

    def __init__(self) -> None:
        self.sent: dict[int, SentAbort] = {}
        #: Messages an abort was sent for a second time: each is a violation.
        self.twice: list[int] = []
        self._changed = threading.Condition()

    def record(self, indexes: list[int], sent: SentAbort) -> None:
        with self._changed:
            for index in indexes:
                if index in self.sent:
                    self.twice.append(index)
                self.sent[index] = sent
            self._changed.notify_all()

    def wait_for(self, count: int, timeout: float) -> bool:
        """Whether ``count`` messages have had their abort sent within ``timeout``."""
        with self._changed:
            return self._changed.wait_for(lambda: len(self.sent) >= count, timeout)

    def wait_for_message(self, index: int, timeout: float) -> bool:
        with self._changed:
            return self._changed.wait_for(lambda: index in self.sent, timeout)


class Handling(NamedTuple):
    """What a worker thread saw of one processing of a message:
    ``time.monotonic()`` of each step, 0.0 for a step it did not reach."""

    how: str
    #: The worker began processing it, just before Abortable's pre-start check...
    began: float
    #: ... which then let it go on.
    synced: float
    #: Its body started, then ended or caught Abort.
    started: float
    ended: float
    interrupted: float
    #: dramatiq was done with it (every middleware's after hook ran).
    finished: float

    def dumps(self, index: int) -> str:
        return " ".join([str(index), self.how, *(repr(at) for at in self[1:])])

    @classmethod
    def loads(cls, text: str) -> tuple[int, Handling]:
        index, how, *times = text.split()
        began, synced, started, ended, interrupted, finished = map(float, times)
        return int(index), cls(how, began, synced, started, ended, interrupted, finished)


class _Steps(threading.local):
    """The steps of the message the calling worker thread processes."""

    index = -1
    began = synced = started = ended = interrupted = 0.0


class Recorder:
    """Notes each step of every message in the worker thread that takes it
    (worker threads only set their own attributes, one step an Abort cannot
    split), and hands one :class:`Handling` per processing to ``keep``.

    ``index_of`` tells a planned message's index, or None for any other."""

    def __init__(
        self,
        index_of: Callable[[MessageProxy], int | None],
        keep: Callable[[int, Handling], None],
    ) -> None:
        self._index_of = index_of
        self._keep = keep
        self._steps = _Steps()

    def install(self, broker: dramatiq.Broker) -> None:
        """Around ``broker``'s Abortable, to time its pre-start check, and
        first of all, so that a message is kept once every other middleware
        (Results too) is done with it."""
        steps = self._steps
        recorder = self

        class Began(Middleware):
            def before_process_message(
                self, broker: dramatiq.Broker, message: MessageProxy
            ) -> None:
                index = recorder._index_of(message)
                steps.index = -1 if index is None else index
                steps.began = time.monotonic()
                steps.synced = steps.started = steps.ended = steps.interrupted = 0.0

        class Synced(Middleware):
            def before_process_message(
                self, broker: dramatiq.Broker, message: MessageProxy
            ) -> None:
                steps.synced = time.monotonic()

        class Finished(Middleware):
            def after_process_message(
                self,
                broker: dramatiq.Broker,
                message: MessageProxy,
                *,
                result: Any | None = None,
                exception: BaseException | None = None,
            ) -> None:
                how = PROCESSED if exception is None else f"failed:{type(exception).__name__}"
                recorder._finish(message, how)

            def after_skip_message(self, broker: dramatiq.Broker, message: MessageProxy) -> None:
                recorder._finish(message, SKIPPED)

        broker.add_middleware(Finished(), before=type(broker.middleware[0]))
        broker.add_middleware(Began(), before=Abortable)
        broker.add_middleware(Synced(), after=Abortable)

    def started(self) -> float:
        """Call as the body starts; returns the time noted."""
        self._steps.started = at = time.monotonic()
        return at

    def ended(self) -> float:
        """Call as the body ends; returns the time noted."""
        self._steps.ended = at = time.monotonic()
        return at

    def interrupted(self) -> None:
        """Call as the body catches Abort."""
        self._steps.interrupted = time.monotonic()

    def _finish(self, message: MessageProxy, how: str) -> None:
        steps = self._steps
        # A message that a middleware before Began skipped was never begun:
        # it is left out, and so found missing.
        if steps.index < 0 or steps.index != self._index_of(message):
            return
        handling = Handling(
            how,
            steps.began,
            steps.synced,
            steps.started,
            steps.ended,
            steps.interrupted,
            time.monotonic(),
        )
        index, steps.index = steps.index, -1
        self._keep(index, handling)


def check_message(
    plan: Plan,
    handlings: list[Handling],
    sent: SentAbort | None,
    stats: Counter[str],
    *,
    ttl: float,
    said_cancelled: bool = True,
) -> list[str]:
    """One message's history against the guarantees every run keeps: no
    wrong-message abort, no lost abort, handled exactly once. ``ttl`` is
    the seconds an abort request lives; ``said_cancelled`` whether what
    the test saw besides (a result) agrees that it was cancelled."""
    found: list[str] = []
    if plan.when != NEVER and sent is None:
        found.append("its abort was never sent")
    if not handlings:
        found.append("never accounted for (lost)")
    elif len(handlings) > 1:
        found.append(f"handled {len(handlings)} times (retried or redelivered)")
    else:
        found.extend(_check_handling(plan, handlings[0], sent, stats, ttl, said_cancelled))
    return [f"{plan}, abort {sent}: {problem}" for problem in found]


def _check_handling(
    plan: Plan,
    handling: Handling,
    sent: SentAbort | None,
    stats: Counter[str],
    ttl: float,
    said_cancelled: bool,
) -> list[str]:
    found: list[str] = []
    ran = handling.started > 0
    if handling.how not in (PROCESSED, SKIPPED):
        found.append(f"{handling.how} (an exception left the actor or its middleware)")
    if sent is None:
        stats["never aborted"] += 1
        if handling.interrupted:
            found.append("never aborted, yet Abort raised in its body (wrong message)")
        if handling.how == SKIPPED:
            found.append(
                "never aborted, yet skipped "
                + ("after its body started" if ran else "(cancelled)")
                + " (wrong message)"
            )
        elif not handling.ended and not handling.interrupted:
            found.append(f"never aborted, yet its body did not end ({handling.how})")
        return found
    stats[f"aborted {sent.when} {sent.mode.value} {sent.source}".rstrip()] += 1
    if sent.error:
        found.append(f"its abort failed: {sent.error}")

    # When the abort found it...
    end = handling.interrupted or handling.ended or handling.finished
    if sent.called < handling.began:
        stats["abort sent while it was queued"] += 1
    elif not ran or sent.called < handling.started:
        stats["abort sent as it was starting"] += 1
    elif sent.called < end:
        stats["abort sent while it was running"] += 1
    else:
        stats["abort sent after its body ended"] += 1
    # ... and what became of it.
    if handling.how == SKIPPED and not ran:
        stats["cancelled"] += 1
    elif handling.interrupted:
        stats["interrupted in its body"] += 1
    elif handling.how == SKIPPED:
        stats["aborted as its body ended"] += 1
    else:
        stats["ran to its end though aborted"] += 1

    # No wrong-message abort: Abort only in the body of a message aborted
    # (not cancelled), and only once its abort was sent.
    cancel = sent.mode is AbortMode.CANCEL
    if handling.interrupted and cancel:
        found.append("only cancelled, yet Abort was raised in its body")
    if handling.how == SKIPPED and ran and cancel:
        found.append("only cancelled, yet skipped after its body started")
    if handling.interrupted and handling.interrupted < sent.called:
        found.append(
            f"Abort raised {(sent.called - handling.interrupted) * 1000:.3f} ms before its "
            "abort was sent (wrong-message abort)"
        )
    if handling.how == SKIPPED and handling.finished < sent.called:
        found.append("skipped before its abort was sent (wrong-message abort)")

    # No lost abort: once the abort returned, the message never starts...
    if sent.returned < handling.began:
        stats["abort returned before processing began"] += 1
        if ran or not (handling.how == SKIPPED and said_cancelled):
            waited = handling.synced - handling.began
            if handling.began - sent.returned > ttl:
                stats["queued for longer than the TTL"] += 1
            elif waited >= SYNC_TIMEOUT:
                stats[LOST_AFTER_TIMEOUT] += 1
            else:
                found.append(
                    f"its abort returned {(handling.began - sent.returned) * 1000:.3f} ms before "
                    f"processing began, yet it was {handling.how}, its body "
                    f"{'ran' if ran else 'did not run'} and the test saw it "
                    f"{'' if said_cancelled else 'not '}cancelled (lost abort; the pre-start "
                    f"check took {waited * 1000:.1f} ms)"
                )
    # ... and a body that runs until its Abort comes is interrupted.
    if plan.holds and handling.ended:
        found.append("its body ran until it gave up: its Abort never came (lost abort)")
    elif plan.holds and ran and not handling.interrupted:
        found.append("its body started, yet was neither interrupted nor ended")
    return found


def check_run(stats: Counter[str], exercised: list[str]) -> list[str]:
    """What the whole run must show: few aborts lost to a timed-out
    pre-start check, and every case in ``exercised`` met at least once."""
    violations = []
    lost = stats[LOST_AFTER_TIMEOUT]
    returned_before = stats["abort returned before processing began"]
    if lost > max(LOST_AFTER_TIMEOUT_FLOOR, returned_before // LOST_AFTER_TIMEOUT_RATIO):
        violations.append(
            f"{lost} aborts were lost after Abortable's pre-start check gave up waiting "
            f"(SYNC_TIMEOUT): more than the machine's load explains"
        )
    violations.extend(f"no message was {what}" for what in exercised if not stats[what])
    return violations


def assert_no_violations(violations: list[str], summary: str) -> None:
    """Print the run's figures; fail with the first violations, if any."""
    print(summary)
    assert not violations, f"{len(violations)} violation(s); {summary}\n" + "\n".join(
        violations[:40]
    )
