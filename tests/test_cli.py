"""The ``dramatiq-abort`` command: the demo and the operators' ``abort``."""

from __future__ import annotations

import io
import subprocess
import sys

import pytest
import redis

from dramatiq_abort import Event
from dramatiq_abort.backends import RedisBackend
from dramatiq_abort.cli import REDIS_URL_VARIABLE, main
from dramatiq_abort.demo import run

pytestmark = pytest.mark.timeout(60)


def test_the_demo_runs_in_memory_as_a_console_script() -> None:
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
    assert "sent abort for 2 message(s)" in capsys.readouterr().out
    backend = RedisBackend(client=redis_client, namespace=namespace)
    for message_id in ("id-1", "id-2"):
        assert backend.poll(f"abort:{message_id}") == Event(
            f"abort:{message_id}", {"abort_timeout": 250}
        )
        assert 0 < redis_client.pttl(f"{backend.prefix}abort:{message_id}") <= 5000

    assert (
        main(["abort", "id-3", "--mode", "cancel", "--redis", redis_url, "--namespace", namespace])
        == 0
    )
    assert backend.poll("cancel:id-3") is not None
    assert backend.poll("abort:id-3") is None


@pytest.mark.parametrize(
    ("extra", "says"),
    [
        (["--timeout", "-1"], "abort_timeout must be 0 or more, not -1"),
        (["--ttl", "0"], "abort_ttl"),
    ],
)
def test_abort_rejects_bad_values_and_sends_nothing(
    redis_url: str,
    redis_client: redis.Redis,
    namespace: str,
    capsys: pytest.CaptureFixture[str],
    extra: list[str],
    says: str,
) -> None:
    assert main(["abort", "some-id", "--redis", redis_url, "--namespace", namespace, *extra]) == 2
    assert says in capsys.readouterr().err
    assert list(redis_client.scan_iter(match=namespace + "*")) == []


def test_abort_requires_a_redis_url(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(REDIS_URL_VARIABLE, raising=False)
    with pytest.raises(SystemExit) as exit_info:
        main(["abort", "some-id"])
    assert exit_info.value.code == 2
    assert "--redis" in capsys.readouterr().err


def test_abort_takes_the_redis_url_from_the_environment(
    redis_url: str, redis_client: redis.Redis, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(REDIS_URL_VARIABLE, redis_url)
    assert main(["abort", "id-from-env", "--namespace", namespace]) == 0
    backend = RedisBackend(client=redis_client, namespace=namespace)
    assert backend.poll("abort:id-from-env") is not None
