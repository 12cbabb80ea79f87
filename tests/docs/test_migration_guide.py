"""Every ``python`` block of migration_guide.md runs, in order, against a
Redis of the test's own and a real ``dramatiq`` worker process: the guide
cannot rot.

The worker imports a module made of the guide's definitions: every block
before the worker-start marker, and the imports, functions and classes of
the blocks after it. The test process runs the blocks themselves, as the
producer.
"""

from __future__ import annotations

import ast
import os
import re
from pathlib import Path
from typing import Any

import dramatiq
import pytest

from ..support import ROOT, PrivateRedis
from .test_examples import dramatiq_worker

GUIDE = ROOT / "migration_guide.md"
START_WORKER = "<!-- guide-test: start worker -->"
BLOCK = re.compile(r"^```python\n(.*?)^```$|^" + re.escape(START_WORKER) + "$", re.M | re.S)
#: What the worker keeps of the blocks after the marker.
DEFINITIONS = (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)


def guide_steps() -> list[tuple[int, str | None]]:
    """(line, code) for each python block; code None where a worker starts."""
    text = GUIDE.read_text()
    return [
        (text.count("\n", 0, match.start()) + 2, match.group(1)) for match in BLOCK.finditer(text)
    ]


def worker_module(steps: list[tuple[int, str | None]]) -> str:
    """The source of the module the worker imports: the guide's config and
    task definitions, without the code that sends tasks."""
    kept: list[ast.stmt] = []
    started = False
    for _, code in steps:
        if code is None:
            started = True
            continue
        body = ast.parse(code).body
        kept += [node for node in body if isinstance(node, DEFINITIONS)] if started else body
    return ast.unparse(ast.Module(body=kept, type_ignores=[]))


def test_the_guide_has_python_blocks_and_starts_a_worker_after_its_config() -> None:
    blocks = [code for _, code in guide_steps()]
    assert len(blocks) - blocks.count(None) >= 15
    assert blocks.count(None) == 1
    config = blocks[0]
    assert config is not None and 'app = Celery("proj", broker=REDIS_URL' in config
    assert "@app.task" in "".join(code for code in blocks[: blocks.index(None)] if code)


def test_the_worker_module_keeps_definitions_and_drops_what_sends_tasks() -> None:
    source = worker_module(
        [
            (1, "import os\nbroker = make()\n"),
            (5, None),
            (9, "import time\n\n@task\ndef f():\n    pass\n\nf.delay()\nx = 1\n"),
        ]
    )
    assert source.splitlines() == [
        "import os",
        "broker = make()",
        "import time",
        "",
        "@task",
        "def f():",
        "    pass",
    ]


@pytest.mark.processes
@pytest.mark.servers
@pytest.mark.timeout(180)
def test_every_python_block_of_the_guide_runs_against_a_dramatiq_worker_process(
    private_redis: PrivateRedis, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    steps = guide_steps()
    (tmp_path / "guide_tasks.py").write_text(worker_module(steps))
    monkeypatch.setenv("REDIS_URL", private_redis.url)
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    # The producer's tasks are the worker's: Celery names them after their module.
    scope: dict[str, Any] = {"__name__": "guide_tasks"}
    previous_broker = dramatiq.broker.global_broker
    ran_after_start = 0
    try:
        for index, (line, code) in enumerate(steps):
            if code is None:
                with dramatiq_worker("guide_tasks", tmp_path / "worker.log", env=env):
                    for line, code in steps[index + 1 :]:
                        assert code is not None
                        exec(compile(code, f"{GUIDE.name}:{line}", "exec"), scope)
                        ran_after_start += 1
                break
            exec(compile(code, f"{GUIDE.name}:{line}", "exec"), scope)
        assert ran_after_start > 0
    finally:
        if "app" in scope:
            scope["app"].broker.close()
        dramatiq.set_broker(previous_broker)
