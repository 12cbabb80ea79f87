"""The ``dramatiq-abort`` command: the demo and the operators' ``abort`` and ``list``."""

from __future__ import annotations

import datetime
import getpass
import importlib.metadata
import io
import json
import math
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import dramatiq
import pytest
import redis
from dramatiq.brokers.stub import StubBroker

from dramatiq_abort import Abortable, Event, __version__, abort
from dramatiq_abort.backends import PostgresBackend, RedisBackend
from dramatiq_abort.checks import MAX_MESSAGE_ID_LENGTH
from dramatiq_abort.cli import ACTOR_CHECK_WAIT, REDIS_URL_VARIABLE, default_reason, main
from dramatiq_abort.cli.demo import run
from dramatiq_abort.settings import URL_VARIABLE

from ..support import (
    ROOT,
    WAIT,
    assert_refused,
    free_port,
    require_mark,
    start_worker,
    status_of,
    wait_until,
)

pytestmark = pytest.mark.timeout(60)


@pytest.mark.processes
def test_the_demo_runs_in_memory_as_a_console_script() -> None:
    require_mark("processes")
    finished = subprocess.run(
        [sys.executable, "-m", "dramatiq_abort.cli", "demo"],
        capture_output=True,
        text=True,
        timeout=50,
        check=False,
    )
    assert finished.returncode == 0, finished.stdout + finished.stderr
    assert "StubBroker + StubBackend" in finished.stdout
    assert "all steps behaved as documented" in finished.stdout
    assert "FAIL" not in finished.stdout
    # Nothing at WARNING: an intended abort is not a warning.
    assert finished.stderr == ""


def test_a_plain_install_brings_everything_every_command_needs() -> None:
    # `pip install .` with no extra: the CLI imports redis-py for its Redis
    # commands, and a newcomer's first `dramatiq-abort demo` must not fail.
    required = {
        re.split(r"[<>=!~ ;\[]", line, maxsplit=1)[0].lower()
        for line in importlib.metadata.requires("dramatiq-abort") or []
        if "extra ==" not in line
    }
    assert {"dramatiq", "redis", "wrapt"} <= required


def test_the_demo_runs_on_redis_and_leaves_no_key(redis_url: str) -> None:
    out = io.StringIO()
    assert run(redis_url, out), out.getvalue()
    namespace = out.getvalue().split("namespace '")[1].split("'")[0]
    client = redis.Redis.from_url(redis_url)
    try:
        assert list(client.scan_iter(match=namespace + "*")) == []
    finally:
        client.close()


def test_abort_sends_each_id_in_the_mode_asked(
    redis_url: str, redis_client: redis.Redis, namespace: str, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["abort", "id-1", "id-2", "--redis", redis_url, "--namespace", namespace]
    assert main([*argv, "--mode", "abort", "--timeout", "250", "--ttl", "5000"]) == 0
    out = capsys.readouterr().out
    assert "sent abort for 2 message(s): a running message has 250 ms to stop" in out
    assert "recorded even for an id no worker knows (yet), and expires after 5,000 ms" in out
    backend = RedisBackend(client=redis_client, namespace=namespace)
    for message_id in ("id-1", "id-2"):
        assert backend.poll(f"abort:{message_id}") == Event(
            f"abort:{message_id}", {"abort_timeout": 250, "reason": default_reason()}
        )
        assert 0 < redis_client.pttl(f"{backend.prefix}abort:{message_id}") <= 5000

    assert (
        main(["abort", "id-3", "--mode", "cancel", "--redis", redis_url, "--namespace", namespace])
        == 0
    )
    assert backend.poll("cancel:id-3") is not None
    assert backend.poll("abort:id-3") is None


def test_abort_records_an_id_that_is_not_a_uuid_and_says_it_may_be_a_mistake(
    redis_url: str, redis_client: redis.Redis, namespace: str, capsys: pytest.CaptureFixture[str]
) -> None:
    real = "1fb41096-c021-4710-9b70-6369c44a32dd"
    argv = ["abort", real, "--redis", redis_url, "--namespace", namespace]
    assert main(argv) == 0
    assert "Note:" not in capsys.readouterr().out

    # An actor's name, and an id pasted from a Python repr with its quotes;
    # given after the options, as an operator may add ids to a command.
    assert main([*argv, "crunch_numbers", f"'{real}',"]) == 0
    out = capsys.readouterr().out
    assert f"Note: 'crunch_numbers', \"'{real}',\" are not UUIDs, as dramatiq's" in out
    assert "--actor NAME stops the messages of an actor" in out
    # Recorded all the same: ids of an application's own making are not UUIDs.
    backend = RedisBackend(client=redis_client, namespace=namespace)
    assert backend.poll("abort:crunch_numbers") is not None
    assert backend.poll(f"abort:'{real}',") is not None


@pytest.mark.parametrize(
    ("extra", "says"),
    [
        (["--timeout", "-1"], "argument --timeout: '-1' is less than 0: give 0 to interrupt"),
        (["--ttl", "0"], "argument --ttl: '0' is not a whole number of milliseconds greater"),
        (["--ttl", "1.5"], "argument --ttl: '1.5' is not a whole number of milliseconds"),
        (["--reason", " "], "argument --reason: ' ' is blank: give a few words, or leave"),
        (["--reason", "y" * 1001], "argument --reason: --reason must be at most 1,000 characters"),
        # redis-py would read this path as no database, and write to database 0.
        (
            ["--redis", "redis://127.0.0.1:6379/cache"],
            "argument --backend/--redis: the URL's database 'cache' is not a number",
        ),
    ],
    ids=[
        "negative-timeout",
        "zero-ttl",
        "fractional-ttl",
        "blank-reason",
        "long-reason",
        "db",
    ],
)
def test_abort_rejects_bad_values_naming_the_option_and_sends_nothing(
    redis_url: str,
    redis_client: redis.Redis,
    namespace: str,
    capsys: pytest.CaptureFixture[str],
    extra: list[str],
    says: str,
) -> None:
    argv = ["abort", "some-id", "--redis", redis_url, "--namespace", namespace, *extra]
    assert_refused(argv, says, capsys, redis_client, namespace)


def test_abort_requires_a_redis_url(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(URL_VARIABLE, raising=False)
    monkeypatch.delenv(REDIS_URL_VARIABLE, raising=False)
    with pytest.raises(SystemExit) as exit_info:
        main(["abort", "some-id"])
    assert exit_info.value.code == 2
    assert f"--backend URL is required, unless ${URL_VARIABLE} is set" in capsys.readouterr().err


@pytest.mark.parametrize("variable", [URL_VARIABLE, REDIS_URL_VARIABLE])
def test_a_bad_url_in_the_environment_is_named_by_its_variable_not_by_the_option(
    variable: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(URL_VARIABLE, raising=False)
    monkeypatch.delenv(REDIS_URL_VARIABLE, raising=False)
    monkeypatch.setenv(variable, "http://user:secret@host/0")
    with pytest.raises(SystemExit) as exit_info:
        main(["list"])
    assert exit_info.value.code == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert f"error: ${variable}: " in line and "--backend" not in line.partition(";")[0]
    assert "secret" not in line
    # Given on the command line, the option wins and the variable is not read.
    with pytest.raises(SystemExit):
        main(["list", "--backend", "memory://"])
    assert "argument --backend/--redis: memory://" in capsys.readouterr().err


@pytest.mark.parametrize("variable", [URL_VARIABLE, REDIS_URL_VARIABLE])
def test_abort_takes_the_backend_url_from_the_environment(
    variable: str,
    redis_url: str,
    redis_client: redis.Redis,
    namespace: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(URL_VARIABLE, raising=False)
    monkeypatch.setenv(variable, redis_url)
    assert main(["abort", "id-from-env", "--namespace", namespace]) == 0
    backend = RedisBackend(client=redis_client, namespace=namespace)
    assert backend.poll("abort:id-from-env") is not None


def test_backend_and_redis_are_one_option(
    redis_url: str, redis_client: redis.Redis, namespace: str
) -> None:
    assert main(["abort", "by-backend", "--backend", redis_url, "--namespace", namespace]) == 0
    assert main(["abort", "by-redis", "--redis", redis_url, "--namespace", namespace]) == 0
    backend = RedisBackend(client=redis_client, namespace=namespace)
    assert backend.poll("abort:by-backend") is not None
    assert backend.poll("abort:by-redis") is not None


@pytest.mark.parametrize(
    ("ids", "says"),
    [
        (["first-id", "", "third-id"], "message_id must not be empty"),
        (["first-id", "x" * (MAX_MESSAGE_ID_LENGTH + 1)], "at most 255 characters"),
    ],
    ids=["empty", "too-long"],
)
def test_abort_checks_every_id_before_it_sends_any(
    redis_url: str,
    redis_client: redis.Redis,
    namespace: str,
    capsys: pytest.CaptureFixture[str],
    ids: list[str],
    says: str,
) -> None:
    argv = ["abort", *ids, "--redis", redis_url, "--namespace", namespace]
    assert_refused(argv, says, capsys, redis_client, namespace)


def test_a_timeout_of_inf_asks_and_never_forces(
    redis_url: str, redis_client: redis.Redis, namespace: str, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["abort", "polite", "--timeout", "inf", "--redis", redis_url, "--namespace", namespace]
    assert main([*argv, "--reason", "deploy 42"]) == 0
    assert "asked to stop and never forced" in capsys.readouterr().out
    backend = RedisBackend(client=redis_client, namespace=namespace)
    assert backend.poll("abort:polite") == Event(
        "abort:polite", {"abort_timeout": None, "reason": "deploy 42"}
    )


@pytest.mark.parametrize(
    ("argv", "status", "says"),
    [
        (
            ["abort", "an-id", "--redis", "redis://127.0.0.1:6379/9?cluster=true"],
            1,
            "dramatiq-abort: Redis error: Redis Cluster: ",
        ),
        (["abort", "an-id", "--redis", "notaurl"], 2, "URL must start with one of redis://"),
        (["list", "--backend", "memory://"], 2, "memory:// lives inside one process"),
        (["list", "--backend", "mysql://u:secret@h/x"], 2, "not mysql://"),
        (["demo", "--redis", "notaurl"], 2, "url must start with redis://"),
        (["demo", "--redis", "http://user:secret@h/0"], 2, "not http://"),
        (["abort", "an-id", "--timeout", "soon"], 2, "'soon' is neither a whole number"),
        (
            ["list", "--redis", "redis://user:secret@127.0.0.1:6379/cache"],
            2,
            "the URL's database 'cache' is not a number",
        ),
        (["list", "--redis", "redis://user:secret@[::1"], 2, "the URL cannot be parsed"),
        (["demo", "--redis", "redis://user:secret@127.0.0.1:6379/x"], 2, "database 'x'"),
        ([], 2, "the following arguments are required: {demo,abort,list,web}"),
        (["stop"], 2, "invalid choice: 'stop'"),
        (["abort", "an-id", "--actor", "export"], 2, "give either message IDs or --actor"),
        (["list", "--wait", "0"], 2, "'0' is not a number of seconds greater than 0"),
        (["web", "--port", "70000"], 2, "--port must be a TCP port from 0 (any free one) to 65535"),
        (["list", "--json", "yes"], 2, "unrecognized arguments: yes"),
    ],
)
def test_errors_are_one_line_without_a_traceback(
    argv: list[str], status: int, says: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(REDIS_URL_VARIABLE, "redis://127.0.0.1:6379/15")
    finished = subprocess.run(
        [sys.executable, "-m", "dramatiq_abort", *argv],
        capture_output=True,
        text=True,
        timeout=WAIT * 3,
        check=False,
        cwd=ROOT,
    )
    assert finished.returncode == status, finished.stderr
    assert finished.stdout == ""
    (line,) = finished.stderr.splitlines()
    assert line.startswith("dramatiq-abort: ") and says in line, finished.stderr
    assert "secret" not in line
    if line.startswith("dramatiq-abort: error: "):
        # An argument's error, without argparse's usage block: where to read it.
        known = argv[:1] if argv[:1] in (["demo"], ["abort"], ["list"], ["web"]) else []
        command = " ".join(["dramatiq-abort", *known])
        assert line.endswith(f"; see '{command} --help'"), line


def test_a_redis_that_cannot_be_reached_or_refuses_the_password_says_what_to_check(
    redis_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    closed_port = free_port()
    assert main(["list", "--redis", f"redis://127.0.0.1:{closed_port}/0"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("dramatiq-abort: Redis error: ") and f"127.0.0.1:{closed_port}" in err
    assert err.endswith(
        f": check that Redis runs at the host and port that --backend (or ${URL_VARIABLE}) names\n"
    )

    # The suite's Redis has no such user: it refuses before any command.
    server = urlsplit(redis_url)
    url = f"redis://someone:not-the-password@{server.hostname}:{server.port}{server.path}"
    assert main(["abort", "an-id", "--redis", url]) == 1
    err = capsys.readouterr().err
    assert "check the user and password that --backend" in err
    assert "not-the-password" not in err


def test_usage_version_and_defaults_are_shown(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--version"])
    assert capsys.readouterr().out.strip() == f"dramatiq-abort {__version__}"
    with pytest.raises(SystemExit):
        main(["abort", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "[--backend URL]" in help_text
    assert "(--redis is the same option)" in help_text
    assert f"required unless ${URL_VARIABLE} is set" in help_text
    assert "(default: the backend's own)" in help_text
    assert "(default: 90000)" in help_text
    assert "'inf' asks it to stop and never forces it (default: 0)" in help_text
    assert "[--namespace NS]" in help_text
    assert "the ID column of list" in help_text
    with pytest.raises(SystemExit):
        main(["--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "demo needs no server. abort, list and web need the workers' backend" in help_text
    assert f"--backend URL, or ${URL_VARIABLE}" in help_text
    with pytest.raises(SystemExit):
        main(["demo", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "one aborted while it runs, one cancelled while queued" in help_text
    assert "in a key namespace of its own that is deleted at the end" in help_text


def test_ctrl_c_ends_the_command_with_one_line_and_status_130() -> None:
    # A server that accepts the connection and never answers: the command
    # waits for a reply until interrupted.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        port = silent.getsockname()[1]
        command = subprocess.Popen(
            [sys.executable, "-m", "dramatiq_abort", "abort", "an-id"],
            env={"PATH": "", REDIS_URL_VARIABLE: f"redis://127.0.0.1:{port}/0"},
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            silent.settimeout(WAIT * 3)
            connection, _ = silent.accept()
            with connection:
                # The command has sent its request and waits for the reply.
                connection.settimeout(WAIT)
                assert connection.recv(4096)
                command.send_signal(signal.SIGINT)
                out, err = command.communicate(timeout=WAIT)
        finally:
            if command.poll() is None:
                command.kill()
                command.communicate()
    assert command.returncode == 130, err
    assert out == ""
    assert err == "dramatiq-abort: interrupted; the request may have been recorded\n"


def test_abort_says_when_no_worker_listens_to_the_namespace(
    redis_url: str, redis_client: redis.Redis, namespace: str, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["abort", "an-id", "--redis", redis_url, "--namespace", namespace]
    assert main(argv) == 0
    assert f"No worker listens to namespace {namespace!r} of this backend now" in (
        capsys.readouterr().out
    )
    # A worker process's subscription, as its watcher holds it.
    subscription = RedisBackend(client=redis_client, namespace=namespace).subscribe()
    try:
        assert main(argv) == 0
        assert "No worker listens" not in capsys.readouterr().out
    finally:
        subscription.close()


#: A message that a worker runs until the event is set, and its actor.
Held = tuple[dramatiq.Message[Any], threading.Event, dramatiq.Actor[Any, Any]]


@pytest.fixture
def held_message(redis_client: redis.Redis, namespace: str) -> Iterator[Held]:
    """A message of actor ``export`` that a worker of this process runs on
    the test's namespace until the event is set, and the actor."""
    broker = StubBroker()
    started, release = threading.Event(), threading.Event()

    @dramatiq.actor(broker=broker, queue_name="nightly")
    def export(month: str) -> None:
        started.set()
        release.wait(WAIT)

    worker = start_worker(
        broker, Abortable(backend=RedisBackend(client=redis_client, namespace=namespace))
    )
    try:
        message = export.send("2024-01")
        assert started.wait(WAIT)
        yield message, release, export
    finally:
        release.set()
        worker.stop()
        broker.close()


def test_list_prints_what_runs_and_how_many_workers_answered(
    redis_url: str,
    namespace: str,
    held_message: Held,
    capsys: pytest.CaptureFixture[str],
) -> None:
    message, _, _ = held_message
    argv = ["list", "--redis", redis_url, "--namespace", namespace, "--wait", "5"]
    assert main(argv) == 0
    header, row, answered = capsys.readouterr().out.splitlines()
    assert header.split() == ["ID", "ACTOR", "QUEUE", "STARTED", "WORKER", "ABORT"]
    assert row.split()[:3] == [message.message_id, "export", "nightly"]
    assert row.split()[-2:] == [f"{socket.gethostname()}:{os.getpid()}", "-"]
    assert "s ago" in row and "2024-01" not in row
    assert answered == "1 of 1 worker processes answered."

    assert main([*argv, "--actor", "another"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "No matching abortable message runs in the worker processes that answered.",
        "1 of 1 worker processes answered.",
    ]


def test_a_dry_run_counts_the_running_messages_a_rule_would_stop_and_records_nothing(
    redis_url: str,
    redis_client: redis.Redis,
    namespace: str,
    held_message: Held,
    capsys: pytest.CaptureFixture[str],
) -> None:
    message, release, _ = held_message
    argv = ["abort", "--redis", redis_url, "--namespace", namespace, "--dry-run"]
    assert main([*argv, "--actor", "export"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("dry run, no rule recorded: 1 running message(s) match now")
    assert "(1 of 1 worker processes answered)" in out
    sent = message.message_timestamp / 1000
    assert main([*argv, "--actor", "export", "--mode", "cancel"]) == 0
    assert "1 running message(s) match now (--mode cancel would leave them running)" in (
        capsys.readouterr().out
    )
    for other in (["--queue", "daily"], ["--actor", "export", "--sent-before", str(sent - 1)]):
        assert main([*argv, *other]) == 0
        assert "no rule recorded: 0 running message(s) match now" in capsys.readouterr().out
    backend = RedisBackend(client=redis_client, namespace=namespace)
    assert [timed for timed in backend.recorded() if timed.event.key.startswith("rule:")] == []
    # Nothing was recorded: the message runs on to its end.
    assert backend.wait_outcome(message.message_id, 0) is None
    release.set()

    with pytest.raises(SystemExit) as exit_info:
        main(["abort", "--redis", redis_url, "--namespace", namespace, "some-id", "--dry-run"])
    assert exit_info.value.code == 2
    assert "--dry-run goes with --actor or --queue" in capsys.readouterr().err


def test_list_prints_one_json_document_with_the_arguments_when_asked(
    redis_url: str,
    namespace: str,
    held_message: Held,
    capsys: pytest.CaptureFixture[str],
) -> None:
    message, _, _ = held_message
    sender = _sender(redis_url, namespace)
    abort(message.message_id, abort_timeout=math.inf, middleware=sender, reason="bad deploy")
    argv = ["list", "--redis", redis_url, "--namespace", namespace, "--json", "--args"]
    assert main([*argv, "--queue", "nightly", "--wait", "5"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert (document["answered"], document["expected"]) == (1, 1)
    assert document["workers"] == [f"{socket.gethostname()}:{os.getpid()}"]
    (listed,) = document["messages"]
    assert listed["message_id"] == message.message_id
    assert listed["args"] == "'2024-01'"
    assert listed["sent_at"] == message.message_timestamp / 1000
    assert (listed["abort_requested"], listed["grace_left"]) == (True, "inf")
    assert listed["reason"] == "bad deploy"
    assert listed["pid"] == os.getpid()

    assert main(["list", "--redis", redis_url, "--namespace", namespace]) == 0
    assert "requested, asked to stop ('bad deploy')" in capsys.readouterr().out


#: Where the time points of a listing's message are.
TIME_POINTS = ("started_at", "sent_at", "eta")


def test_every_time_point_list_json_gives_is_in_seconds_since_the_epoch(
    redis_url: str, namespace: str, held_message: Held, capsys: pytest.CaptureFixture[str]
) -> None:
    message, _, export = held_message
    delayed = export.send_with_options(args=("2024-02",), delay=600_000)
    argv = ["list", "--redis", redis_url, "--namespace", namespace, "--json", "--wait", "5"]

    def listed() -> list[dict[str, Any]]:
        assert main(argv) == 0
        messages: list[dict[str, Any]] = json.loads(capsys.readouterr().out)["messages"]
        return messages

    wait_until(lambda: len(listed()) == 2, "the worker holds the delayed message")
    now = time.time()
    running, held = listed()
    assert (running["message_id"], held["message_id"]) == (message.message_id, delayed.message_id)
    assert running["sent_at"] <= running["started_at"] <= now
    assert held["sent_at"] <= now < held["eta"] == delayed.options["eta"] / 1000
    for shown in (running, held):
        for name in TIME_POINTS:
            # Within the hour: milliseconds, or a time of day, would be far off.
            assert shown[name] is None or abs(shown[name] - now) < 3600, (name, shown)


def _sender(redis_url: str, namespace: str) -> Abortable:
    return Abortable(backend=RedisBackend.from_url(redis_url, namespace=namespace))


def test_list_says_when_no_worker_listens_and_a_worker_that_does_not_answer(
    redis_url: str, redis_client: redis.Redis, namespace: str, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["list", "--redis", redis_url, "--namespace", namespace, "--wait", "0.2"]
    assert main(argv) == 0
    assert capsys.readouterr().out.splitlines() == [
        f"No worker listens to namespace {namespace!r} of this backend now: if workers run,"
        " check --namespace and the URL against those of their backend."
    ]
    # A worker process's subscription that nobody reads: a stuck worker.
    subscription = RedisBackend(client=redis_client, namespace=namespace).subscribe()
    try:
        assert main(argv) == 0
    finally:
        subscription.close()
    assert capsys.readouterr().out.splitlines() == [
        "0 of 1 worker processes answered; 1 did not within 0.2 s: what they run is not listed."
    ]


def test_abort_by_actor_and_queue_records_one_rule_and_says_its_id(
    redis_url: str, redis_client: redis.Redis, namespace: str, capsys: pytest.CaptureFixture[str]
) -> None:
    an_hour_ago = datetime.datetime.now().replace(microsecond=0) - datetime.timedelta(hours=1)
    in_utc = an_hour_ago.astimezone(datetime.timezone.utc).replace(tzinfo=None)
    argv = ["abort", "--redis", redis_url, "--namespace", namespace, "--actor", "export"]
    for sent_before in (
        an_hour_ago.isoformat(),
        in_utc.isoformat() + "Z",
        str(an_hour_ago.timestamp()),
    ):
        assert main([*argv, "--queue", "reports.DQ", "--sent-before", sent_before]) == 0
    out = capsys.readouterr().out
    backend = RedisBackend(client=redis_client, namespace=namespace)
    rules = [timed.event for timed in backend.recorded()]
    assert len(rules) == 3
    for rule in rules:
        assert rule.key.startswith("rule:")
        assert f"recorded rule {rule.key[len('rule:') :]}: abort every message" in out
        assert rule.params == {
            "actor": "export",
            "queue": "reports",
            "sent_before": int(an_hour_ago.timestamp() * 1000),
            "mode": "abort",
            "abort_timeout": 0,
            "reason": default_reason(),
        }
    assert "of actor 'export' and queue 'reports.DQ' sent before" in out
    assert "A message sent after that is never touched" in out


def test_abort_by_an_actor_no_worker_declares_warns_and_records_the_rule_all_the_same(
    redis_url: str,
    redis_client: redis.Redis,
    namespace: str,
    held_message: Held,
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = ["abort", "--redis", redis_url, "--namespace", namespace, "--actor"]
    assert main([*argv, "nosuch_actor"]) == 0
    out, err = capsys.readouterr()
    assert out.startswith("recorded rule ")
    assert err.startswith(
        "Warning: none of the 1 worker process(es) that answered declares actor 'nosuch_actor',"
        " so none of them runs its messages. Check the name: an actor is named after its"
        " function unless actor_name= says otherwise."
    )
    assert err.endswith("the rule is recorded anyway, for workers that may declare it.\n")
    backend = RedisBackend(client=redis_client, namespace=namespace)
    rules = [timed.event for timed in backend.recorded() if timed.event.key.startswith("rule:")]
    assert [rule.params["actor"] for rule in rules] == ["nosuch_actor"]

    # The worker declares export: no warning, as for a dry run of either.
    assert main([*argv, "export", "--mode", "cancel"]) == 0
    assert capsys.readouterr().err == ""
    assert main([*argv, "nosuch_actor", "--dry-run"]) == 0
    assert "the rule would be recorded anyway" in capsys.readouterr().err
    assert main([*argv, "export", "--dry-run"]) == 0
    assert capsys.readouterr().err == ""


def test_abort_by_an_actor_says_nothing_of_it_when_no_worker_answers_in_time(
    redis_url: str, redis_client: redis.Redis, namespace: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # A worker process's subscription that nobody reads: a stuck worker.
    subscription = RedisBackend(client=redis_client, namespace=namespace).subscribe()
    try:
        started = time.monotonic()
        argv = ["abort", "--redis", redis_url, "--namespace", namespace, "--actor", "export"]
        assert main(argv) == 0
        took = time.monotonic() - started
    finally:
        subscription.close()
    out, err = capsys.readouterr()
    assert out.startswith("recorded rule ") and err == ""
    # The wait for the answers is bounded, and comes after the rule is recorded.
    assert ACTOR_CHECK_WAIT <= took < ACTOR_CHECK_WAIT + WAIT


def test_abort_by_queue_defaults_to_now_and_takes_a_reason(
    redis_url: str, redis_client: redis.Redis, namespace: str
) -> None:
    before = time.time()
    argv = ["abort", "--queue", "reports", "--mode", "cancel", "--reason", "bad deploy"]
    assert main([*argv, "--redis", redis_url, "--namespace", namespace]) == 0
    (rule,) = [
        timed.event for timed in RedisBackend(client=redis_client, namespace=namespace).recorded()
    ]
    assert rule.params["actor"] is None and rule.params["mode"] == "cancel"
    assert rule.params["reason"] == "bad deploy"
    assert before * 1000 - 1 <= rule.params["sent_before"] <= time.time() * 1000


@pytest.mark.parametrize(
    ("extra", "says"),
    [
        (["--wait", "0"], "argument --wait: '0' is not a number of seconds greater than 0"),
        (["--wait", "nan"], "argument --wait: 'nan' is not a number of seconds greater than 0"),
        (["--wait", "soon"], "argument --wait: 'soon' is not a number of seconds"),
        (["--actor", ""], "argument --actor: '' is blank: give an actor's name, as the ACTOR"),
        (["--queue", " "], "argument --queue: ' ' is blank: give a queue's name, as the QUEUE"),
        (["--namespace", ""], "argument --namespace: '' is blank: give the namespace of the"),
    ],
)
def test_list_rejects_bad_values_and_sends_nothing(
    redis_url: str,
    redis_client: redis.Redis,
    namespace: str,
    capsys: pytest.CaptureFixture[str],
    extra: list[str],
    says: str,
) -> None:
    argv = ["list", "--redis", redis_url, "--namespace", namespace, *extra]
    assert_refused(argv, says, capsys, redis_client, namespace)


@pytest.mark.parametrize(
    ("extra", "says"),
    [
        (["some-id", "--actor", "export"], "either message IDs or --actor/--queue, not both"),
        ([], "give message IDs, or --actor and/or --queue"),
        (["some-id", "--sent-before", "1000"], "--sent-before goes with --actor or --queue"),
        (["--actor", "export", "--sent-before", "tomorrow"], "'tomorrow' is neither an ISO"),
    ],
)
def test_abort_refuses_ids_with_a_filter_or_neither_and_records_nothing(
    redis_url: str,
    redis_client: redis.Redis,
    namespace: str,
    capsys: pytest.CaptureFixture[str],
    extra: list[str],
    says: str,
) -> None:
    argv = ["abort", "--redis", redis_url, "--namespace", namespace, *extra]
    assert_refused(argv, says, capsys, redis_client, namespace)


@pytest.mark.parametrize(
    ("extra", "says"),
    [
        # A day ahead: these moments are taken when the tests are collected,
        # long before this one runs in a suite on a busy machine.
        (
            ["--sent-before", (datetime.datetime.now() + datetime.timedelta(days=1)).isoformat()],
            "s in the future, and no message was sent after now; omit it to mean now",
        ),
        (["--sent-before", str(time.time() + 86_400)], "s in the future"),
        (["--sent-before", "-1"], "argument --sent-before: --sent-before must be a finite number"),
        (["--sent-before", "1e300"], "from 0 (1970) to 253,402,300,800 (the end of 9999)"),
        (["--reason", "   "], "argument --reason: '   ' is blank"),
        (["--actor", ""], "argument --actor: '' is blank: give an actor's name"),
        (["--actor", "a" * 256], "--actor must be at most 255 characters, not 256"),
        (["--queue", " "], "argument --queue: ' ' is blank: give a queue's name"),
    ],
)
def test_abort_by_actor_rejects_bad_values_and_records_nothing(
    redis_url: str,
    redis_client: redis.Redis,
    namespace: str,
    capsys: pytest.CaptureFixture[str],
    extra: list[str],
    says: str,
) -> None:
    argv = ["abort", "--redis", redis_url, "--namespace", namespace, "--actor", "export"]
    assert_refused([*argv, *extra], says, capsys, redis_client, namespace)


def test_the_default_reason_names_the_user_and_the_host(monkeypatch: pytest.MonkeyPatch) -> None:
    assert default_reason() == f"{getpass.getuser()}@{socket.gethostname()} via dramatiq-abort"

    def fails() -> str:
        raise OSError("no such user")

    monkeypatch.setattr(getpass, "getuser", fails)
    monkeypatch.setattr(socket, "gethostname", fails)
    assert default_reason() == "unknown user@unknown host via dramatiq-abort"


def test_abort_and_list_reach_a_postgresql_backend(
    postgres_url: str,
    postgres_backend: PostgresBackend,
    postgres_namespace: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    backend_options = ["--backend", postgres_url, "--namespace", postgres_namespace]
    assert main(["abort", "pg-id", "--reason", "bad input", *backend_options]) == 0
    event = postgres_backend.poll("abort:pg-id")
    assert event is not None and event.params["reason"] == "bad input"
    capsys.readouterr()
    assert main(["list", "--wait", "0.2", *backend_options]) == 0
    assert f"No worker listens to namespace {postgres_namespace!r}" in capsys.readouterr().out


def test_a_postgresql_that_cannot_be_reached_says_what_to_check_without_the_password(
    capsys: pytest.CaptureFixture[str],
) -> None:
    closed_port = free_port()
    url = f"postgresql://someone:not-the-password@127.0.0.1:{closed_port}/test"
    assert main(["abort", "an-id", "--backend", url]) == 1
    err = capsys.readouterr().err
    assert err.startswith("dramatiq-abort: PostgreSQL error: ") and str(closed_port) in err
    assert err.endswith(
        "check the host, port, user, password and database that --backend"
        f" (or ${URL_VARIABLE}) gives\n"
    )
    assert "not-the-password" not in err


def test_a_postgresql_url_without_psycopg_says_which_extra_to_install(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # As after a plain install: the import of psycopg fails.
    monkeypatch.setitem(sys.modules, "psycopg", None)
    monkeypatch.setitem(sys.modules, "dramatiq_abort.backends.postgres", None)
    assert status_of(["list", "--backend", "postgresql://postgres@127.0.0.1/test"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("dramatiq-abort: PostgresBackend needs psycopg 3")
    assert err.endswith("install dramatiq-abort[postgres]\n") and err.count("\n") == 1
