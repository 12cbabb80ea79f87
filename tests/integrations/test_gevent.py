"""gevent workers: in a monkey-patched process of its own, an abort kills
exactly the greenlet running the aborted message."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest

from ..support import ROOT, require_mark

pytest.importorskip("gevent")
pytestmark = [pytest.mark.timeout(90), pytest.mark.processes]

PROGRAM = ROOT / "tests" / "programs" / "gevent_worker.py"


@pytest.fixture(params=["stub", "redis"])
def backend_args(request: pytest.FixtureRequest) -> list[str]:
    """The worker's event backend: in memory, or the test Redis in a namespace of its own."""
    if request.param == "stub":
        return []
    request.getfixturevalue("redis_client")  # deletes the namespace's keys afterwards
    return [request.getfixturevalue("redis_url"), request.getfixturevalue("namespace")]


def run_program(backend_args: list[str]) -> dict[str, Any]:
    """The report of the gevent worker program, run on ``backend_args``."""
    require_mark("processes")
    finished = subprocess.run(
        [sys.executable, str(PROGRAM), "300", *backend_args],
        capture_output=True,
        text=True,
        timeout=80,
        check=False,
        cwd=ROOT,
    )
    assert finished.returncode == 0, finished.stderr[-3000:]
    report: dict[str, Any] = json.loads(finished.stdout.strip().splitlines()[-1])
    return report


def test_an_abort_hits_exactly_the_greenlet_of_its_message(backend_args: list[str]) -> None:
    report = run_program(backend_args)
    assert report["all_started"]
    assert report["aborted"] == [report["victim"]]
    assert report["noticed"] == [report["polite"]]


def test_an_abort_after_a_greenlets_time_limit_fired_is_not_raised_in_its_cleanup(
    backend_args: list[str],
) -> None:
    report = run_program(backend_args)
    assert report["cleanup_seen"] and report["cleanup_ended"]
    assert report["raised_in_cleanup"] == []
