"""Blocking work cut short by an abort: dramatiq_abort.sleep and run_subprocess."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import dramatiq
import pytest
from dramatiq.brokers.stub import StubBroker

from dramatiq_abort import Abort, abort, run_subprocess, sleep

from ..support import WAIT, wait_until

pytestmark = pytest.mark.timeout(60)


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


def kill_child(pid_file: Path) -> None:
    """Kill the child whose pid ``pid_file`` holds, if it wrote one and runs:
    a failed test must not leave it behind."""
    with contextlib.suppress(FileNotFoundError, ValueError, ProcessLookupError):
        os.kill(int(pid_file.read_text()), signal.SIGKILL)


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
    try:
        wait_until(lambda: pid_file.exists() and pid_file.read_text(), "the child started")
        pid = int(pid_file.read_text())
        abort(message.message_id)
        assert interrupted.wait(WAIT)
        assert gone(pid), "the child was left running or unreaped"
    finally:
        kill_child(pid_file)


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


def test_run_subprocess_takes_what_subprocess_run_takes(tmp_path: Path) -> None:
    script = "import sys; print(sys.stdin.read().upper()); print('to stderr', file=sys.stderr)"
    done = run_subprocess(
        [sys.executable, "-c", script], input="quiet", capture_output=True, text=True, timeout=WAIT
    )
    assert isinstance(done, subprocess.CompletedProcess)
    assert (done.returncode, done.stdout, done.stderr) == (0, "QUIET\n", "to stderr\n")
    with pytest.raises(subprocess.CalledProcessError) as failed:
        run_subprocess(
            [sys.executable, "-c", "print('out'); raise SystemExit(3)"],
            capture_output=True,
            check=True,
        )
    assert (failed.value.returncode, failed.value.stdout) == (3, b"out\n")
    with pytest.raises(ValueError, match="capture_output"):
        run_subprocess(["true"], capture_output=True, stdout=subprocess.PIPE)


def test_a_timeout_kills_the_child_and_raises_timeout_expired(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pid_file = tmp_path / "child.pid"
    # The child as started: on a busy machine the timeout may come before
    # it could write its pid.
    children: list[subprocess.Popen[Any]] = []

    class Recorded(subprocess.Popen[Any]):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            children.append(self)

    monkeypatch.setattr(subprocess, "Popen", Recorded)
    try:
        with pytest.raises(subprocess.TimeoutExpired) as expired:
            run_subprocess(child_command(pid_file, ignore_term=True), timeout=0.5)
        assert expired.value.timeout == 0.5
        [child] = children
        assert gone(child.pid), "the child was left running or unreaped"
    finally:
        for child in children:
            child.kill()


@pytest.mark.parametrize(
    ("arguments", "error", "says"),
    [
        ({"grace": -1}, ValueError, "grace must be finite and 0 or more, not -1"),
        ({"grace": float("inf")}, ValueError, "grace must be finite"),
        ({"grace": "5"}, TypeError, "grace must be a number of seconds, not '5'"),
        ({"timeout": "1"}, TypeError, "timeout must be a number of seconds, not '1'"),
        ({"timeout": -1}, ValueError, "timeout must be 0 or more"),
    ],
)
def test_run_subprocess_refuses_bad_arguments_before_starting_the_child(
    tmp_path: Path, arguments: dict[str, Any], error: type[Exception], says: str
) -> None:
    marker = tmp_path / "ran"
    with pytest.raises(error, match=says):
        run_subprocess([sys.executable, "-c", f"open({str(marker)!r}, 'w')"], **arguments)
    assert not marker.exists()


@pytest.mark.parametrize(
    ("seconds", "error", "says"),
    [
        ("1", TypeError, "seconds must be a number of seconds, not '1'"),
        (-1, ValueError, "seconds must be finite and 0 or more, not -1"),
        (None, TypeError, "seconds must be a number of seconds, not None"),
    ],
)
def test_sleep_names_a_bad_duration(
    stub_broker: StubBroker,
    worker: dramatiq.Worker,
    seconds: object,
    error: type[Exception],
    says: str,
) -> None:
    with pytest.raises(error, match=says):
        sleep(seconds)  # type: ignore[arg-type]
