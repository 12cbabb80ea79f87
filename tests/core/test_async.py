"""Async actors (dramatiq's AsyncIO middleware): cooperative checks and
forced aborts reach the coroutine, and only it."""

from __future__ import annotations

import asyncio
import threading

import dramatiq
import pytest
from dramatiq.brokers.stub import StubBroker

from dramatiq_abort import Abort, abort, abort_requested

from ..support import WAIT

pytestmark = pytest.mark.timeout(60)


def test_an_async_actor_catches_the_abort_and_its_cleanup_runs(
    stub_broker: StubBroker, async_worker: dramatiq.Worker
) -> None:
    started = threading.Event()
    events: list[str] = []

    class Resource:
        async def __aenter__(self) -> Resource:
            return self

        async def __aexit__(self, *exc_info: object) -> None:
            events.append("async with exited")

    @dramatiq.actor(store_results=True)
    async def waits_on_io() -> None:
        async with Resource():
            try:
                started.set()
                await asyncio.sleep(60)
            except Abort:
                events.append("caught Abort")
                raise
            finally:
                events.append("finally ran")

    message = waits_on_io.send()
    assert started.wait(WAIT)
    abort(message.message_id)
    with pytest.raises(dramatiq.results.ResultFailure) as failure:
        message.get_result(block=True, timeout=int(WAIT * 1000))
    assert failure.value.orig_exc_type == "MessageAborted"
    assert events == ["caught Abort", "finally ran", "async with exited"]


def test_abort_requested_works_inside_a_coroutine_and_aborting_one_spares_another(
    stub_broker: StubBroker, async_worker: dramatiq.Worker
) -> None:
    started = threading.Semaphore(0)
    release = threading.Event()

    @dramatiq.actor(store_results=True)
    async def polite(tag: str) -> str:
        started.release()
        while abort_requested() is None:
            await asyncio.sleep(0.001)
        return f"{tag} stopped"

    @dramatiq.actor(store_results=True)
    async def stubborn() -> str:
        started.release()
        await asyncio.sleep(WAIT)
        return "not stopped"

    @dramatiq.actor(store_results=True)
    async def bystander() -> str:
        started.release()
        # Runs on the same loop until both aborts are over.
        while not release.is_set():
            await asyncio.sleep(0.001)
        return "untouched"

    asked = polite.send("first")
    other = bystander.send()
    assert started.acquire(timeout=WAIT) and started.acquire(timeout=WAIT)
    abort(asked.message_id, abort_timeout=60_000)
    assert asked.get_result(block=True, timeout=int(WAIT * 1000)) == "first stopped"
    # An actor that does not ask: only the forced abort stops it. (One that
    # asks may see the request and return before the abort lands.)
    forced = stubborn.send()
    assert started.acquire(timeout=WAIT)
    abort(forced.message_id)
    with pytest.raises(dramatiq.results.ResultFailure, match="MessageAborted"):
        forced.get_result(block=True, timeout=int(WAIT * 1000))
    release.set()
    assert other.get_result(block=True, timeout=int(WAIT * 1000)) == "untouched"
