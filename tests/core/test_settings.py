"""Abortable() with no backend outside Django: the ``DRAMATIQ_ABORT_URL``
environment variable, and Django left alone (tests/integrations/test_django.py has the
Django settings)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from dramatiq_abort import Abortable
from dramatiq_abort.backends import StubBackend

from ..support import ROOT, WAIT


def run_python(code: str, **env: str) -> str:
    """What ``code`` prints, run by a fresh interpreter with ``env`` added
    to an environment without ``DRAMATIQ_ABORT_URL`` and Django's settings."""
    clean = {
        name: value
        for name, value in os.environ.items()
        if name not in ("DRAMATIQ_ABORT_URL", "DJANGO_SETTINGS_MODULE")
    }
    done = subprocess.run(
        [sys.executable, "-c", code],
        env={**clean, **env, "PYTHONPATH": str(ROOT)},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=WAIT * 3,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_without_django_the_environment_variable_names_the_backend_and_django_stays_unimported(
    redis_url: str,
) -> None:
    printed = run_python(
        "import sys\n"
        "from dramatiq_abort import Abortable\n"
        "m = Abortable(abort_ttl=1000)\n"
        "print(type(m.backend).__name__, m.backend.namespace,"
        " m.backend.client.connection_pool.connection_kwargs['db'], m.abort_ttl,"
        " 'django' in sys.modules)\n",
        DRAMATIQ_ABORT_URL=redis_url,
    )
    assert printed == "RedisBackend dramatiq:aborts: 15 1000 False"


def test_django_imported_but_not_configured_is_left_alone() -> None:
    # Reading the settings would import this module, which does not exist.
    printed = run_python(
        "import django.conf\n"
        "from dramatiq_abort import Abortable\n"
        "m = Abortable()\n"
        "print(type(m.backend).__name__, django.conf.settings.configured)\n",
        DRAMATIQ_ABORT_URL="memory://",
        DJANGO_SETTINGS_MODULE="tests.programs.no_such_settings",
    )
    assert printed == "StubBackend False"


def test_the_arguments_given_apply_with_the_environment_variables_backend(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DRAMATIQ_ABORT_URL", "memory://")
    middleware = Abortable(abortable=False, boot_timeout=0.5)
    assert isinstance(middleware.backend, StubBackend)
    assert middleware.abortable is False and middleware.boot_timeout == 0.5


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("", "DRAMATIQ_ABORT_URL is empty: give the backend's URL"),
        (
            "localhost:6379",
            "DRAMATIQ_ABORT_URL must be the backend's URL, such as 'redis://localhost:6379/0',"
            " not 'localhost:6379'",
        ),
        (
            "amqp://guest:s3cret@localhost:5672",
            "no abort backend can be built from DRAMATIQ_ABORT_URL ="
            " 'amqp://guest:***@localhost:5672': the backend URL must start with one of",
        ),
        (
            "redis://:s3cret@localhost:6379/zero",
            "no abort backend can be built from DRAMATIQ_ABORT_URL ="
            " 'redis://:***@localhost:6379/zero': the URL's database 'zero' is not a number",
        ),
    ],
)
def test_a_bad_environment_variable_is_refused_naming_it(
    monkeypatch: pytest.MonkeyPatch, url: str, words: str
) -> None:
    monkeypatch.setenv("DRAMATIQ_ABORT_URL", url)
    with pytest.raises(ValueError) as refused:
        Abortable()
    assert words in str(refused.value) and "s3cret" not in str(refused.value)


def test_with_nothing_configured_the_error_says_each_way_to_configure_a_backend(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("DRAMATIQ_ABORT_URL", raising=False)
    with pytest.raises(TypeError) as refused:
        Abortable()
    assert str(refused.value) == (
        "Abortable() was given no backend, and nothing configures one: pass backend=...,"
        " set the Django setting DRAMATIQ_ABORT = {'BACKEND': 'redis://localhost:6379/0'},"
        " or set the environment variable DRAMATIQ_ABORT_URL=redis://localhost:6379/0"
    )


def test_a_url_given_as_the_backend_is_refused_without_its_password() -> None:
    with pytest.raises(TypeError) as refused:
        Abortable(backend="redis://:s3cret@localhost:6379/0")  # type: ignore[arg-type]
    assert str(refused.value) == (
        "backend must be an EventBackend, such as backends.from_url(url), or None to build"
        " it from the settings, not 'redis://:***@localhost:6379/0'"
    )
