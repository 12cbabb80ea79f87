"""Checks of the arguments given by callers: each returns the value it
accepts, or raises ``TypeError`` or ``ValueError`` saying what is wrong."""

from __future__ import annotations

import math

from .mode import AbortMode


def check_message_id(message_id: object) -> str:
    """Return ``message_id`` when it can name a message, else raise."""
    if not isinstance(message_id, str):
        raise TypeError(f"message_id must be a str, not {message_id!r}")
    if not message_id:
        raise ValueError(f"message_id must not be empty: {message_id!r}")
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
        raise TypeError(f"{name} must be a number of milliseconds, not {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, not {value!r}")
    if value < 0 or (positive and value == 0):
        bound = "greater than 0" if positive else "0 or more"
        raise ValueError(f"{name} must be {bound}, not {value!r}")
    return int(value)


def check_abort_timeout(value: object) -> float:
    """Milliseconds of grace, or ``math.inf``: ask the message to stop, never force it."""
    if isinstance(value, float) and value == math.inf:
        return value
    return check_milliseconds("abort_timeout", value)
