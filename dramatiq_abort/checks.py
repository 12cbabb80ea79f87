"""Checks of the arguments given by callers: each returns the value it
accepts, or raises ``TypeError`` or ``ValueError`` saying what is wrong."""

from __future__ import annotations

import math
from typing import Literal, overload

from .mode import AbortMode

#: Longest message id accepted, in characters. dramatiq's ids are UUIDs (36
#: characters); 255 leaves room for ids of other schemes (prefixed, ULIDs,
#: Celery task ids) and fits a ``VARCHAR(255)`` column, while a hostile id
#: cannot make every abort write and push megabytes to each worker.
MAX_MESSAGE_ID_LENGTH = 255


def check_message_id(message_id: object) -> str:
    """Return ``message_id`` when it can name a message, else raise."""
    if not isinstance(message_id, str):
        raise TypeError(f"message_id must be a str, not {message_id!r:.100}")
    if not message_id:
        raise ValueError(f"message_id must not be empty: {message_id!r}")
    if len(message_id) > MAX_MESSAGE_ID_LENGTH:
        raise ValueError(
            f"message_id must be at most {MAX_MESSAGE_ID_LENGTH} characters, not"
            f" {len(message_id):,}: {message_id[:40]!r}..."
        )
    return message_id


def check_mode(mode: object) -> AbortMode:
    """Accept an :class:`AbortMode` or its value (``"abort"``, ``"cancel"``)."""
    if isinstance(mode, AbortMode):
        return mode
    try:
        return AbortMode(mode)
    except ValueError:
        choices = ", ".join(repr(m.value) for m in AbortMode)
        raise ValueError(
            f"unknown abort mode {mode!r}: use AbortMode or one of {choices}"
        ) from None


def check_milliseconds(name: str, value: object, *, positive: bool = False) -> int:
    """Return ``value`` as a whole number of milliseconds, else raise naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number of milliseconds, not {value!r:.100}")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, not {value!r}")
    if value < 0 or (positive and value == 0):
        bound = "greater than 0" if positive else "0 or more"
        raise ValueError(f"{name} must be {bound}, not {value!r}")
    return int(value)


@overload
def check_seconds(name: str, value: object, *, forever: Literal[False] = False) -> float: ...


@overload
def check_seconds(name: str, value: object, *, forever: bool) -> float | None: ...


def check_seconds(name: str, value: object, *, forever: bool = False) -> float | None:
    """Return ``value`` as seconds, else raise naming ``name``; with
    ``forever``, ``None`` and ``math.inf`` mean no limit (``None``)."""
    if forever and (value is None or (isinstance(value, float) and value == math.inf)):
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number of seconds, not {value!r:.100}")
    if not math.isfinite(value) or value < 0:
        bound = "0 or more, or None for no limit" if forever else "finite and 0 or more"
        raise ValueError(f"{name} must be {bound}, not {value!r}")
    return float(value)


def check_bool(name: str, value: object) -> bool:
    """Return ``value`` when it is a bool, else raise naming ``name``: a
    string such as ``"false"`` would otherwise count as true."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, not {value!r:.100}")
    return value


def check_abort_timeout(value: object) -> float:
    """Milliseconds of grace, or ``math.inf``: ask the message to stop, never force it."""
    if isinstance(value, float) and value == math.inf:
        return value
    return check_milliseconds("abort_timeout", value)
