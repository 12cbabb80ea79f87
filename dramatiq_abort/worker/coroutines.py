"""Async actors: an abort cancels the actor's coroutine on dramatiq's event
loop, and reaches it as :class:`~dramatiq_abort.errors.AsyncAbort`."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Generator
from typing import Any, Generic, TypeVar

from dramatiq.asyncio import get_event_loop_thread

from ..errors import Abort, AsyncAbort
from .execution import Execution
from .executions import Executions
from .interrupters import AsyncioInterrupter

__all__ = ["runner"]

R = TypeVar("R")


def runner(
    executions: Executions,
    execution: Execution,
    async_fn: Callable[..., Coroutine[Any, Any, R]],
) -> Callable[..., R]:
    """A function that runs ``async_fn`` for ``execution`` on the event
    loop of dramatiq's ``AsyncIO`` middleware and waits for it.

    Called before the execution runs: from then on, an abort cancels the
    coroutine's task instead of raising in the waiting thread.
    """
    loop_thread = get_event_loop_thread()
    if loop_thread is None:
        raise RuntimeError("async actors need the AsyncIO middleware on the broker")
    interrupter = AsyncioInterrupter(executions.internals, loop_thread.loop)
    execution.interrupt_with(interrupter)

    def run(*args: Any, **kwargs: Any) -> R:
        coroutine = async_fn(*args, **kwargs)
        return loop_thread.run_coroutine(_guarded(executions, interrupter, execution, coroutine))

    return run


async def _guarded(
    executions: Executions,
    interrupter: AsyncioInterrupter,
    execution: Execution,
    coroutine: Coroutine[Any, Any, R],
) -> R:
    task = asyncio.current_task()
    assert task is not None
    executions.adopt(execution)
    interrupter.attach(execution, task)
    try:
        return await _Interruptible(coroutine, execution)
    except AsyncAbort:
        # Leave the task failed with Abort rather than cancelled, so that
        # the waiting worker thread sees the abort for what it is.
        raise Abort.of(execution.message_id, execution.reason) from None


class _Interruptible(Generic[R]):
    """Drives a coroutine, turning the cancellation of an aborted execution
    into an :class:`AsyncAbort` thrown where the coroutine waits."""

    def __init__(self, coroutine: Coroutine[Any, Any, R], execution: Execution) -> None:
        self.coroutine = coroutine
        self.execution = execution

    def __await__(self) -> Generator[Any, Any, R]:
        coroutine = self.coroutine
        sent: Any = None
        thrown: BaseException | None = None
        while True:
            try:
                yielded = coroutine.send(sent) if thrown is None else coroutine.throw(thrown)
            except StopIteration as stop:
                result: R = stop.value
                return result
            sent, thrown = None, None
            try:
                sent = yield yielded
            except asyncio.CancelledError as cancelled:
                if self.execution.interrupted and not isinstance(cancelled, AsyncAbort):
                    thrown = AsyncAbort.of(self.execution.message_id, self.execution.reason)
                else:
                    thrown = cancelled
            except BaseException as error:
                thrown = error
