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

from .checks import check_seconds
from .middleware import Abortable, resolve

__all__ = ["SUBPROCESS_POLL", "run_subprocess", "sleep"]

#: How often :func:`run_subprocess` looks whether its child has exited, in seconds.
SUBPROCESS_POLL = 0.01


def sleep(seconds: float, middleware: Abortable | None = None) -> bool:
    """Sleep like ``time.sleep``, but wake at once when the current message
    is asked to abort.

    Returns ``True`` when cut short by an abort request (and at once while
    one is in force), ``False`` after sleeping the whole time. A forced
    abort raises :class:`~dramatiq_abort.Abort` as soon as it wakes. Outside
    an abortable message it is ``time.sleep``.

    :param seconds: How long to sleep, in seconds (not milliseconds).
    :param middleware: As in :func:`~dramatiq_abort.abort`.
    """
    checked = check_seconds("seconds", seconds)
    middleware = resolve(middleware)
    execution = middleware.executions.current()
    if execution is None:
        time.sleep(checked)
        return False
    woken = execution.abort_signal().wait(checked)
    if woken:
        execution.note_told()
    return woken


def run_subprocess(
    args: str | Sequence[str],
    *,
    grace: float = 5.0,
    input: bytes | str | None = None,
    capture_output: bool = False,
    timeout: float | None = None,
    check: bool = False,
    **popen_kwargs: Any,
) -> subprocess.CompletedProcess[Any]:
    """``subprocess.run`` for actors: when the message is aborted while the
    child runs, the child is sent SIGTERM, then SIGKILL if it has not
    exited after ``grace`` seconds, and is reaped before
    :class:`~dramatiq_abort.Abort` propagates.

    Takes what ``subprocess.run`` takes (``input``, ``capture_output``,
    ``timeout``, ``check``, and ``subprocess.Popen``'s arguments such as
    ``text``, ``cwd`` or ``env``) and returns a ``CompletedProcess``; like
    it, a ``timeout`` (seconds) that runs out kills the child and raises
    ``subprocess.TimeoutExpired``.

    :param grace: Seconds the child has to exit after SIGTERM, before SIGKILL.
    """
    grace_seconds = check_seconds("grace", grace)
    limit = check_seconds("timeout", timeout, forever=True)
    if input is not None:
        if "stdin" in popen_kwargs:
            raise ValueError("stdin and input arguments may not both be used")
        popen_kwargs["stdin"] = subprocess.PIPE
    if capture_output:
        if "stdout" in popen_kwargs or "stderr" in popen_kwargs:
            raise ValueError("stdout and stderr arguments may not be used with capture_output")
        popen_kwargs["stdout"] = popen_kwargs["stderr"] = subprocess.PIPE
    deadline = None if limit is None else time.monotonic() + limit
    with subprocess.Popen(args, **popen_kwargs) as child:
        try:
            pending_input = input
            while True:
                wait = SUBPROCESS_POLL
                if deadline is not None:
                    wait = min(wait, max(0.0, deadline - time.monotonic()))
                try:
                    # Short waits: the Abort lands between two of them.
                    stdout, stderr = child.communicate(pending_input, timeout=wait)
                    break
                except subprocess.TimeoutExpired:
                    pending_input = None
                    if deadline is not None and time.monotonic() >= deadline:
                        child.kill()
                        stdout, stderr = child.communicate()
                        raise subprocess.TimeoutExpired(
                            child.args, timeout or 0, output=stdout, stderr=stderr
                        ) from None
        except BaseException:
            _stop(child, grace_seconds)
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
