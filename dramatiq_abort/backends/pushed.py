"""The JSON in which a backend pushes a batch of events to its subscribers."""

from __future__ import annotations

import json
import logging
from typing import Any

from ..backend import Event, TimedEvent

__all__ = ["decode_batch", "encode_batch", "encode_params"]

logger = logging.getLogger(__name__)


def encode_params(events: list[Event]) -> dict[int, str]:
    """The JSON of each distinct parameters dict of ``events``, by ``id()``:
    the events of one request share their dict, which is encoded once, not
    once per message."""
    encoded: dict[int, str] = {}
    for _, params in events:
        if id(params) not in encoded:
            encoded[id(params)] = json.dumps(params)
    return encoded


def encode_batch(events: list[Event], ttl: int, encoded: dict[int, str]) -> str:
    """The pushed form of ``events``, notified with ``ttl``, their parameters
    encoded by :func:`encode_params`. Pure ASCII."""
    pairs = ", ".join(f"[{json.dumps(key)}, {encoded[id(params)]}]" for key, params in events)
    return f'{{"ttl": {ttl}, "events": [{pairs}]}}'


def decode_batch(payload: Any) -> list[TimedEvent]:
    """The events of one pushed batch; a malformed one is logged and skipped."""
    try:
        data = json.loads(payload)
        ttl = data["ttl"]
        pairs = data["events"]
        if not isinstance(ttl, int) or ttl <= 0 or not isinstance(pairs, list):
            raise ValueError("bad ttl or events")
        events = []
        for key, params in pairs:
            if not isinstance(key, str) or not isinstance(params, dict):
                raise ValueError(f"bad event {key!r}")
            events.append(TimedEvent(Event(key, params), ttl, ttl))
        return events
    except (ValueError, TypeError, KeyError) as e:
        logger.warning("Skipping a malformed abort notification (%s): %.200r", e, payload)
        return []
