"""examples/: a Celery project and its port to dramatiq, and the README's
first run.

The port runs end to end against the real Redis, with a ``dramatiq``
worker process; and the diff between the two versions is imports and
decorators only, the config module apart. The README's first run (its
``app.py`` and the code that sends and aborts) runs as written, with a
``dramatiq app`` worker process.
"""

from __future__ import annotations

import ast
import contextlib
import difflib
import importlib
import os
import re
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import dramatiq
import pytest
import redis

from compat import AbortableAsyncResult

from ..support import (
    ROOT,
    WAIT,
    PrivateRedis,
    delete_namespace,
    start_dramatiq,
    stop_process_group,
)

EXAMPLES = ROOT / "examples"
CELERY_VERSION = EXAMPLES / "celery_version"
DRAMATIQ_VERSION = EXAMPLES / "dramatiq_version"
#: The module that sets the app or broker up: it has no line-for-line port.
CONFIG = "celery_app.py"
#: The example's own modules, imported by plain names.
MODULES = ("celery_app", "tasks", "web")
#: How long a ``dramatiq`` command may take to boot on a busy machine.
BOOT = 60.0
README = ROOT / "README.md"
#: A README block the tests run: the marker names it (``app.py`` is written
#: as that module, ``send`` runs in the test process).
#: Every python block of the README, marked or not.
ANY_README_BLOCK = re.compile(r"^```python\n(.*?)^```$", re.M | re.S)
README_BLOCK = re.compile(r"^<!-- readme-test: (\S+) -->\n```python\n(.*?)^```$", re.M | re.S)


@contextlib.contextmanager
def dramatiq_worker(
    module: str, log: Path, *, env: dict[str, str], threads: int = 4
) -> Iterator[None]:
    """A ``dramatiq <module> --processes 1`` command, in a process group of
    its own, ready to consume; stopped, group and all, on the way out. Its
    output goes to ``log``, which is printed if the block fails."""
    with log.open("wb") as output:
        process = start_dramatiq(module, 1, threads, env=env, stdout=output, stderr=output)
    try:
        deadline = time.monotonic() + BOOT
        while "ready for action" not in log.read_text(errors="replace"):
            assert process.poll() is None, f"dramatiq {module} exited:\n{log.read_text()}"
            assert time.monotonic() < deadline, (
                f"dramatiq {module} did not boot:\n{log.read_text()}"
            )
            time.sleep(0.05)
        yield
    except BaseException:
        print(f"--- output of dramatiq {module} ---\n{log.read_text(errors='replace')}")
        raise
    finally:
        stop_process_group(process)


def poll_until(read: Callable[[], Any], holds: Callable[[Any], bool], what: str) -> Any:
    """Call ``read`` until ``holds`` its value, and return that value; fail
    after ``WAIT`` seconds, showing the last value read."""
    deadline = time.monotonic() + WAIT
    while True:
        value = read()
        if holds(value):
            return value
        assert time.monotonic() < deadline, f"timed out waiting until {what}; last read {value!r}"
        time.sleep(0.02)


@pytest.fixture
def dramatiq_version(
    redis_url: str, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[dict[str, str]]:
    """The port's environment (its keys in the test's namespace), with its
    modules importable here; removed again, keys and all, afterwards."""
    settings = {
        "EXPORTS_REDIS_URL": redis_url,
        "EXPORTS_NAMESPACE": namespace,
        "EXPORTS_CHUNK_SECONDS": "0.1",
    }
    for name, value in settings.items():
        monkeypatch.setenv(name, value)
    monkeypatch.syspath_prepend(str(DRAMATIQ_VERSION))
    previous_broker = dramatiq.broker.global_broker
    try:
        yield {**os.environ, "PYTHONPATH": str(DRAMATIQ_VERSION)}
    finally:
        config = sys.modules.get("celery_app")
        for name in MODULES:
            sys.modules.pop(name, None)
        if config is not None:
            config.app.broker.close()
        dramatiq.set_broker(previous_broker)  # type: ignore[arg-type]
        client = redis.Redis.from_url(redis_url)
        delete_namespace(client, namespace)
        client.close()


@pytest.mark.processes
@pytest.mark.timeout(120)
def test_the_dramatiq_version_starts_follows_and_aborts_exports_with_a_worker_process(
    dramatiq_version: dict[str, str], tmp_path: Path
) -> None:
    with dramatiq_worker("celery_app", tmp_path / "worker.log", env=dramatiq_version):
        web: ModuleType = importlib.import_module("web")
        sent: list[str] = []
        try:
            check_exports(web, sent)
        finally:
            # dramatiq names result keys by a hash, outside the namespace:
            # forget() drops them with the rest.
            for task_id in sent:
                AbortableAsyncResult(task_id).forget()


def check_exports(web: ModuleType, sent: list[str]) -> None:
    """Start, follow and abort one export; run another to its end."""
    aborted = web.start_export("orders", chunks=200)["task_id"]
    sent.append(aborted)
    running = poll_until(
        lambda: web.export_status(aborted),
        lambda body: body["state"] == "PROGRESS" and body["progress"]["current"] >= 2,
        "the export reports progress",
    )
    assert running["done"] is False
    assert running["progress"]["total"] == 200
    assert running["progress"]["rows"] == running["progress"]["current"] * 100

    assert web.cancel_export(aborted) == {"task_id": aborted, "aborting": True}
    stopped = poll_until(
        lambda: web.export_status(aborted),
        lambda body: body["done"],
        "the aborted export stops",
    )
    assert stopped["state"] == "ABORTED"
    # It stopped where it saw the abort, far from the end.
    assert running["progress"]["current"] <= stopped["progress"]["current"] < 200
    assert web.export_status(aborted) == stopped

    finished = web.start_export("customers", chunks=3)["task_id"]
    sent.append(finished)
    # Its state and ready() are two reads: wait for both to say it is over.
    done = poll_until(
        lambda: web.export_status(finished),
        lambda body: body["done"] and body["state"] == "SUCCESS",
        "the second export ends",
    )
    assert done == {
        "task_id": finished,
        "state": "SUCCESS",
        "done": True,
        "result": {"table": "customers", "rows": 300, "task_id": finished},
    }


def is_import_or_decorator(lines: list[str]) -> list[bool]:
    """For each line of a module: whether it imports (continuation lines of
    a parenthesised import too) or decorates."""
    flags: list[bool] = []
    in_import = False
    for line in lines:
        text = line.strip()
        if in_import:
            flags.append(True)
            in_import = not text.startswith(")")
        elif text.startswith("import ") or (text.startswith("from ") and " import " in text):
            flags.append(True)
            in_import = text.endswith("(")
        else:
            flags.append(text.startswith("@"))
    return flags


def other_changes(celery: list[str], port: list[str]) -> list[str]:
    """The lines that difflib finds changed between two versions of a
    module and that neither import nor decorate."""
    celery_ok, port_ok = is_import_or_decorator(celery), is_import_or_decorator(port)
    found: list[str] = []
    matcher = difflib.SequenceMatcher(a=celery, b=port, autojunk=False)
    for tag, a_start, a_end, b_start, b_end in matcher.get_opcodes():
        if tag != "equal":
            found += [f"- {celery[i]}" for i in range(a_start, a_end) if not celery_ok[i]]
            found += [f"+ {port[i]}" for i in range(b_start, b_end) if not port_ok[i]]
    return found


def example_pairs() -> list[tuple[Path, Path]]:
    celery_files = sorted(p.relative_to(CELERY_VERSION) for p in CELERY_VERSION.rglob("*.py"))
    dramatiq_files = sorted(p.relative_to(DRAMATIQ_VERSION) for p in DRAMATIQ_VERSION.rglob("*.py"))
    assert celery_files == dramatiq_files, "both versions have the same modules"
    return [(CELERY_VERSION / p, DRAMATIQ_VERSION / p) for p in celery_files if p.name != CONFIG]


def test_the_port_changes_only_import_and_decorator_lines() -> None:
    pairs = example_pairs()
    assert {celery.name for celery, _ in pairs} >= {"tasks.py", "web.py"}
    for celery, port in pairs:
        celery_lines = celery.read_text().splitlines()
        port_lines = port.read_text().splitlines()
        assert other_changes(celery_lines, port_lines) == [], port.name
        # The port imports compat where the Celery version imports celery.
        flags = is_import_or_decorator(port_lines)
        imported = {
            line.split()[1].split(".")[0]
            for line, flag in zip(port_lines, flags, strict=False)
            if flag and line.startswith(("import ", "from "))
        }
        assert "celery" not in imported, port.name
    assert any(p.read_text() != c.read_text() for c, p in pairs), "the port changes imports"


def test_the_diff_check_catches_a_change_outside_imports_and_decorators() -> None:
    celery = ["from celery import shared_task", "", "@shared_task(bind=True)", "def f(self):"]
    port = ["from compat import (", "    shared_task,", ")", "", "@shared_task(bind=True, x=1)"]
    assert other_changes(celery, [*port, "def f(self):"]) == []
    assert other_changes(celery, [*port, "def f(self, x):"]) == [
        "- def f(self):",
        "+ def f(self, x):",
    ]
    assert other_changes(celery, [*port, "    shared_task,", "def f(self):"]) == [
        "+     shared_task,"
    ]


def readme_blocks() -> dict[str, tuple[int, str]]:
    """The README's marked blocks, by name: (line, code)."""
    text = README.read_text()
    return {
        match.group(1): (text.count("\n", 0, match.start()) + 3, match.group(2))
        for match in README_BLOCK.finditer(text)
    }


@pytest.mark.processes
@pytest.mark.servers
@pytest.mark.timeout(120)
def test_the_readme_first_run_aborts_a_running_message_in_a_dramatiq_app_worker(
    private_redis: PrivateRedis,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    blocks = readme_blocks()
    assert sorted(blocks) == ["app.py", "send"]
    (tmp_path / "app.py").write_text(blocks["app.py"][1])
    monkeypatch.setenv("REDIS_URL", private_redis.url)
    monkeypatch.syspath_prepend(str(tmp_path))
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    log = tmp_path / "worker.log"
    previous_broker = dramatiq.broker.global_broker
    try:
        with dramatiq_worker("app", log, env=env, threads=2):
            line, code = blocks["send"]
            exec(compile(code, f"{README.name}:{line}", "exec"), {"__name__": "readme"})
            printed = capsys.readouterr().out
            assert "actor raised MessageAborted: message '" in printed
            assert "' was aborted: wrong dataset" in printed
            poll_until(
                lambda: log.read_text(errors="replace"),
                lambda text: (
                    "crunch_numbers(42) aborted" in text
                    and "was aborted (reason: 'wrong dataset')." in text
                ),
                "the worker logs the abort",
            )
    finally:
        app = sys.modules.pop("app", None)
        if app is not None:
            app.broker.close()
        dramatiq.set_broker(previous_broker)  # type: ignore[arg-type]


def test_every_python_block_of_the_readme_parses_and_its_imports_resolve() -> None:
    # The blocks other than the first run's are fragments around names of
    # the reader's own (an actor, a message); what they import must exist.
    text = README.read_text()
    blocks = [
        (text.count("\n", 0, match.start()) + 2, match.group(1))
        for match in ANY_README_BLOCK.finditer(text)
    ]
    assert len(blocks) >= 15
    imported = 0
    for line, code in blocks:
        tree = ast.parse(code, f"{README.name}:{line}")
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)) and not (
                isinstance(node, ast.ImportFrom) and node.module == "app"
            ):
                statement = ast.Module(body=[node], type_ignores=[])
                exec(compile(statement, f"{README.name}:{line + node.lineno - 1}", "exec"), {})
                imported += 1
    assert imported >= 20
