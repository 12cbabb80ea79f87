"""What the ``dramatiq-abort`` command prints: the table of ``list``, how
many workers answered, and what a request does."""

from __future__ import annotations

import argparse
import math

from ..listing import DELAYED, Listing, RunningMessage
from ..mode import AbortMode

__all__ = ["answered", "effect", "table"]


def answered(listed: Listing, wait: float) -> str:
    """How many worker processes answered, said so that silence is never
    read as nothing running."""
    if listed.expected is None:
        return f"{listed.answered} answered; how many worker processes listen is unknown"
    text = f"{listed.answered} of {listed.expected} worker processes answered"
    missing = listed.expected - listed.answered
    if missing > 0:
        text += f"; {missing} did not within {wait:g} s: what they run is not listed"
    return text


def effect(args: argparse.Namespace) -> str:
    """What the request or rule sent does to a matching message."""
    if args.mode == AbortMode.CANCEL.value:
        return "a message that has not started will not start; a running one is left alone"
    if args.timeout == math.inf:
        return "a running message is asked to stop and never forced; a queued one will not start"
    if args.timeout:
        return (
            f"a running message has {args.timeout:,} ms to stop before it is interrupted;"
            " a queued one will not start"
        )
    return "a running message is interrupted; a queued one will not start"


def table(messages: list[RunningMessage], with_args: bool, now: float) -> str:
    """One line per message under a header, in columns."""
    rows = [["ID", "ACTOR", "QUEUE", "STARTED", "WORKER", "ABORT"]]
    if with_args:
        rows[0].append("ARGS")
    for message in messages:
        row = [
            message.message_id,
            message.actor,
            message.queue,
            _started(message, now),
            f"{message.host}:{message.pid}",
            _abort_state(message),
        ]
        if with_args:
            row.append(message.args or "")
        rows.append(row)
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False)).rstrip()
        for row in rows
    )


def _started(message: RunningMessage, now: float) -> str:
    """When ``message`` started; for one held by a worker, what it waits for."""
    if message.started_at is not None:
        return _ago(now - message.started_at)
    if message.state == DELAYED and message.eta is not None:
        return f"delayed, due in {_duration(message.eta - now)}"
    return "waiting for a thread"


def _ago(seconds: float) -> str:
    return _duration(seconds) + " ago"


def _duration(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, seconds = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def _abort_state(message: RunningMessage) -> str:
    if not message.abort_requested:
        return "-"
    if message.grace_left is None:
        state = "requested, interrupting"
    elif message.grace_left == math.inf:
        state = "requested, asked to stop"
    else:
        state = f"requested, {message.grace_left:,.0f} ms of grace left"
    return state if message.reason is None else f"{state} ({message.reason!r})"
