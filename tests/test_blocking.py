"""Blocking work cut short by an abort: dramatiq_abort.sleep and run_subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import dramatiq
import pytest
from dramatiq.brokers.stub import StubBroker

from dramatiq_abort import Abort, abort, run_subprocess, sleep

pytestmark = pytest.mark.timeout(60)
WAIT = 10.0


def test_sleep_wakes_on_a_request_and_on_a_forced_abort(
    stub_broker: StubBroker, worker: dramatiq.Worker
) -> None:
    asleep, interrupted = threading.Semaphore(0), threading.Event()

    @dramatiq.actor(store_results=True)
    def naps() -> str:
        asleep.release()
        if sleep(60):
            return "woken by the request"
        return "slept"

    @dramatiq.actor(store_results=True)
    def naps_until_forced() -> None:
        try:
            asleep.release()
            sleep(60)
        except Abort:
            interrupted.set()
            raise

    polite = naps.send()
    assert asleep.acquire(timeout=WAIT)
    abort(polite.message_id, abort_timeout=60_000)
    assert polite.get_result(block=True, timeout=int(WAIT * 1000)) == "woken by the request"

    forced = naps_until_forced.send()
    assert asleep.acquire(timeout=WAIT)
    abort(forced.message_id)
    assert interrupted.wait(WAIT)


def test_a_forced_abort_raises_in_sleep_and_never_lets_it_return(
    stub_broker: StubBroker, worker: dramatiq.Worker
) -> None:
    rounds = 200
    asleep, done = threading.Semaphore(0), threading.Semaphore(0)
    outcomes: list[str] = []

    @dramatiq.actor(max_retries=0)
    def naps() -> None:
        try:
            asleep.release()
            outcomes.append("returned True" if sleep(60) else "slept")
        except Abort:
            outcomes.append("aborted")
            raise
        finally:
            done.release()

    # Threads switching as often as the interpreter allows: the sleeper
    # must not wake before the Abort is set in its thread.
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        for _ in range(rounds):
            message = naps.send()
            assert asleep.acquire(timeout=WAIT)
            abort(message.message_id)
            assert done.acquire(timeout=WAIT)
    finally:
        sys.setswitchinterval(interval)
    assert outcomes == ["aborted"] * rounds


def test_sleep_outside_a_message_sleeps(stub_broker: StubBroker, worker: dramatiq.Worker) -> None:
    started = time.monotonic()
    assert sleep(0.02) is False
    assert time.monotonic() - started >= 0.02


def child_command(pid_file: Path, *, ignore_term: bool) -> list[str]:
    code = (
        "import os, signal, sys, time\n"
        + ("signal.signal(signal.SIGTERM, signal.SIG_IGN)\n" if ignore_term else "")
        + f"open({str(pid_file)!r}, 'w').write(str(os.getpid()))\n"
        + "time.sleep(60)\n"
    )
    return [sys.executable, "-c", code]


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


@pytest.mark.parametrize("ignore_term", [False, True], ids=["terminated", "killed"])
def test_an_abort_stops_and_reaps_the_child(
    stub_broker: StubBroker, worker: dramatiq.Worker, tmp_path: Path, ignore_term: bool
) -> None:
    pid_file = tmp_path / "child.pid"
    interrupted = threading.Event()

    @dramatiq.actor(store_results=True)
    def tool() -> None:
        try:
            run_subprocess(child_command(pid_file, ignore_term=ignore_term), grace=0.2)
        except Abort:
            interrupted.set()
            raise

    message = tool.send()
    deadline = time.monotonic() + WAIT
    while not pid_file.exists() or not pid_file.read_text():
        assert time.monotonic() < deadline, "the child never started"
        time.sleep(0.01)
    pid = int(pid_file.read_text())
    abort(message.message_id)
    assert interrupted.wait(WAIT)
    assert gone(pid), "the child was left running or unreaped"


def test_run_subprocess_behaves_like_subprocess_run(
    stub_broker: StubBroker, worker: dramatiq.Worker
) -> None:
    @dramatiq.actor(store_results=True)
    def echo(text: str) -> str:
        done = run_subprocess(
            [sys.executable, "-c", "import sys; sys.stdout.write(sys.stdin.read().upper())"],
            input=text,
            text=True,
            stdout=subprocess.PIPE,
            check=True,
        )
        return str(done.stdout)

    assert echo.send("quiet").get_result(block=True, timeout=int(WAIT * 1000)) == "QUIET"
    with pytest.raises(subprocess.CalledProcessError):
        run_subprocess([sys.executable, "-c", "raise SystemExit(3)"], check=True)
