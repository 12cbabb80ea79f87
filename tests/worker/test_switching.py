"""The shorter switch interval while an Abort is on its way: put back on
every path, however aborts overlap, even when the target never raises."""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator

import dramatiq
import pytest
from dramatiq.brokers.stub import StubBroker

from dramatiq_abort import Abort, Abortable, abort
from dramatiq_abort.worker import switching
from dramatiq_abort.worker.switching import FAST_INTERVAL, MAX_WAIT, FastSwitching

from ..support import WAIT, spin_until_aborted, wait_until

pytestmark = pytest.mark.timeout(60)

#: An interval no test sets, to tell it apart.
USERS_INTERVAL = 0.004


@pytest.fixture
def users_interval() -> Iterator[None]:
    previous = sys.getswitchinterval()
    sys.setswitchinterval(USERS_INTERVAL)
    try:
        yield
    finally:
        sys.setswitchinterval(previous)


def test_overlapping_holds_put_the_interval_back_once_the_last_is_released(
    users_interval: None,
) -> None:
    switching = FastSwitching()
    switching.hold(1)
    switching.hold(2)
    assert sys.getswitchinterval() == pytest.approx(FAST_INTERVAL)
    switching.release(1)
    switching.release(1)  # twice: harmless
    assert sys.getswitchinterval() == pytest.approx(FAST_INTERVAL)
    switching.release(2)
    assert sys.getswitchinterval() == pytest.approx(USERS_INTERVAL)
    assert switching.expires_at is None


def test_a_hold_never_released_expires(users_interval: None) -> None:
    switching = FastSwitching()
    switching.hold(1)
    expires_at = switching.expires_at
    assert expires_at is not None
    switching.expire(expires_at - MAX_WAIT / 2)
    assert sys.getswitchinterval() == pytest.approx(FAST_INTERVAL)
    switching.expire(expires_at)
    assert sys.getswitchinterval() == pytest.approx(USERS_INTERVAL)


def test_the_interval_is_back_once_aborts_landed_or_a_target_never_raises(
    users_interval: None,
    stub_broker: StubBroker,
    worker: dramatiq.Worker,
    abortable: Abortable,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    started, interrupted = threading.Semaphore(0), threading.Semaphore(0)
    blocked, release_blocked = threading.Event(), threading.Event()
    raised_late: list[str] = []

    @dramatiq.actor(max_retries=0)
    def crunch() -> None:
        spin_until_aborted(started.release, interrupted.release)

    @dramatiq.actor(max_retries=0)
    def stuck() -> None:
        try:
            blocked.set()
            release_blocked.wait(WAIT)  # in C: the Abort waits until this returns
        except Abort:
            raised_late.append("Abort")
            raise

    # Two aborts on their way at once, both landing: they, not the
    # expiry, put the interval back.
    monkeypatch.setattr(switching, "MAX_WAIT", 2 * WAIT)
    first, second = crunch.send(), crunch.send()
    assert started.acquire(timeout=WAIT) and started.acquire(timeout=WAIT)
    abort(first.message_id)
    abort(second.message_id)
    assert interrupted.acquire(timeout=WAIT) and interrupted.acquire(timeout=WAIT)
    wait_until(lambda: sys.getswitchinterval() == USERS_INTERVAL, "the interval is put back")

    # A target that does not raise: the expiry puts the interval back.
    monkeypatch.setattr(switching, "MAX_WAIT", 0.1)
    message = stuck.send()
    assert blocked.wait(WAIT)
    abort(message.message_id)
    wait_until(lambda: sys.getswitchinterval() == USERS_INTERVAL, "the hold expires")
    release_blocked.set()
    wait_until(lambda: raised_late, "the Abort lands once the wait returns")
