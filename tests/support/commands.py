"""The ``dramatiq-abort`` command run in the test's own process."""

from __future__ import annotations

import pytest
import redis

from dramatiq_abort.cli import main


def status_of(argv: list[str]) -> int:
    """The exit status of the command: what ``main`` returns, or the code
    of argparse's exit on a bad argument."""
    try:
        return main(argv)
    except SystemExit as e:
        return int(str(e.code))


def assert_refused(
    argv: list[str],
    says: str,
    capsys: pytest.CaptureFixture[str],
    redis_client: redis.Redis,
    namespace: str,
) -> None:
    """The command exits with status 2, its error says ``says``, and it
    wrote nothing under ``namespace``."""
    assert status_of(argv) == 2
    assert says in capsys.readouterr().err
    assert list(redis_client.scan_iter(match=namespace + "*")) == []
