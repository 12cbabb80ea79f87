"""Every ``python`` block of migration_guide.md runs, in order, against a
Redis of the test's own: the guide cannot rot."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import dramatiq
import pytest

from .conftest import PrivateRedis

GUIDE = Path(__file__).resolve().parent.parent / "migration_guide.md"
START_WORKER = "<!-- guide-test: start worker -->"
BLOCK = re.compile(r"^```python\n(.*?)^```$|^" + re.escape(START_WORKER) + "$", re.M | re.S)


def guide_steps() -> list[tuple[int, str | None]]:
    """(line, code) for each python block; code None where a worker starts."""
    text = GUIDE.read_text()
    return [
        (text.count("\n", 0, match.start()) + 2, match.group(1)) for match in BLOCK.finditer(text)
    ]


def test_the_guide_has_python_blocks_and_starts_a_worker() -> None:
    steps = guide_steps()
    assert sum(code is not None for _, code in steps) >= 8
    assert [code for _, code in steps].count(None) == 1


@pytest.mark.timeout(120)
def test_every_python_block_of_the_guide_runs(
    private_redis: PrivateRedis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REDIS_URL", private_redis.url)
    scope: dict[str, Any] = {"__name__": "migration_guide"}
    worker: dramatiq.Worker | None = None
    try:
        for line, code in guide_steps():
            if code is None:
                worker = dramatiq.Worker(scope["broker"], worker_timeout=100, worker_threads=4)
                worker.start()
                continue
            exec(compile(code, f"{GUIDE.name}:{line}", "exec"), scope)
        assert worker is not None
    finally:
        if worker is not None:
            worker.stop()
        if "broker" in scope:
            scope["broker"].close()
