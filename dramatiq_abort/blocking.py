"""Blocking work that an abort cuts short: sleeping, and running a subprocess.

An :class:`~dramatiq_abort.Abort` is raised when its thread next runs Python
code, so a thread blocked in ``time.sleep()`` or ``Popen.wait()`` only sees
it once the call returns. These helpers wait in ways an abort wakes.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Sequence
from typing import Any

from .middleware import Abortable, default_abortable

#: How often :func:`run_subprocess` looks whether its child has exited, in seconds.
SUBPROCESS_POLL = 0.01


def sleep(seconds: float, middleware: Abortable | None = None) -> bool:
    """Sleep like ``time.sleep``, but wake at once when the current message
    is asked to abort.

    Returns ``True`` when cut short by an abort request (and at once while
    one is in force), ``False`` after sleeping the whole time. A forced
    abort raises :class:`~dramatiq_abort.Abort` as soon as it wakes. Outside
    an abortable message it is ``time.sleep``.

    :param middleware: As in :func:`~dramatiq_abort.abort`.
    """
    if middleware is None:
        middleware = default_abortable()
    execution = middleware.executions.current()
    if execution is None:
        time.sleep(seconds)
        return False
    woken = middleware.executions.abort_event(execution).wait(seconds)
    if woken:
        execution.told = True
    return woken


def run_subprocess(
    args: str | Sequence[str],
    *,
    input: bytes | str | None = None,
    check: bool = False,
    grace: float = 5.0,
    **popen_kwargs: Any,
) -> subprocess.CompletedProcess[Any]:
    """``subprocess.run`` for actors: when the message is aborted while the
    child runs, the child is sent SIGTERM, then SIGKILL if it has not
    exited after ``grace`` seconds, and is reaped before
    :class:`~dramatiq_abort.Abort` propagates.

    Takes ``subprocess.Popen``'s arguments; ``stdout``/``stderr`` set to
    ``subprocess.PIPE`` are captured as with ``subprocess.run``.
    """
    with subprocess.Popen(
        args, stdin=subprocess.PIPE if input is not None else None, **popen_kwargs
    ) as child:
        try:
            pending_input = input
            while True:
                try:
                    # Short waits: the Abort lands between two of them.
                    stdout, stderr = child.communicate(pending_input, timeout=SUBPROCESS_POLL)
                    break
                except subprocess.TimeoutExpired:
                    pending_input = None
        except BaseException:
            _stop(child, grace)
            raise
    completed = subprocess.CompletedProcess(child.args, child.returncode, stdout, stderr)
    if check:
        completed.check_returncode()
    return completed


def _stop(child: subprocess.Popen[Any], grace: float) -> None:
    if child.poll() is not None:
        return
    child.terminate()
    try:
        child.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()
