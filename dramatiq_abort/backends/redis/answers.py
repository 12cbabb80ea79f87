"""How the Redis backend carries the workers' answers to a listing's
inquiry back to the process that asked: a list per reply address."""

from __future__ import annotations

import logging
import time
from typing import Any

from ...checks import check_milliseconds
from ..files import shipped_text
from .channels import text

__all__ = ["BLOCK_SHARE", "MIN_BLOCK", "Answers"]

#: Shortest wait, in seconds, for which :meth:`Answers.collect` still
#: blocks on Redis: what is left of a wait below it is not waited for.
MIN_BLOCK = 0.001
#: The share of the client's socket timeout that one blocking command of
#: :meth:`Answers.collect` lasts at most: redis-py fails a read that waits
#: longer than the socket timeout, so a longer wait is made of several,
#: each answered by Redis well before the client gives up.
BLOCK_SHARE = 0.5

#: The backend's logger, under the name it has had since 2.0.
logger = logging.getLogger("dramatiq_abort.backends.redis")

_ANSWER = shipped_text(__package__, "scripts/answer.lua")


class Answers:
    """The answers' lists, each a key of ``client``; none read is larger
    than ``max_payload`` bytes. ``timeout`` is the socket timeout of the
    client's connections, in seconds (``None``: for ever)."""

    def __init__(self, client: Any, max_payload: int, timeout: float | None) -> None:
        self.client = client
        self.max_payload = max_payload
        #: Longest block of one BLPOP of :meth:`collect`, in seconds (see
        #: ``BLOCK_SHARE``); ``None`` for no limit. Never 0, which BLPOP
        #: reads as for ever.
        self._longest_block = None if not timeout else max(timeout * BLOCK_SHARE, MIN_BLOCK)
        self._answer = client.register_script(_ANSWER)

    def answer(self, key: str, payload: str, ttl: int) -> None:
        """See :meth:`~dramatiq_abort.backend.EventBackend.answer`; ``key``
        is the list of the reply address."""
        ttl = check_milliseconds("ttl", ttl, positive=True)
        self._answer(keys=[key], args=[payload, ttl])

    def collect(self, key: str, expected: int | None, timeout: float) -> list[str]:
        """See :meth:`~dramatiq_abort.backend.EventBackend.collect_answers`;
        ``key`` is the list of the reply address, deleted once read."""
        answers: list[str] = []
        deadline = time.monotonic() + timeout
        try:
            while expected is None or len(answers) < expected:
                left = deadline - time.monotonic()
                # BLPOP reads a timeout of 0 as for ever.
                if left < MIN_BLOCK:
                    break
                block = left if self._longest_block is None else min(left, self._longest_block)
                popped = self.client.blpop([key], timeout=block)
                if popped is None:
                    continue
                value = popped[1]
                if len(value) > self.max_payload:
                    logger.warning("Skipping an answer of %d bytes: too large.", len(value))
                    continue
                answers.append(text(value))
        finally:
            self.client.delete(key)
        return answers
