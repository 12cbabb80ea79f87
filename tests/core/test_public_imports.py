"""Every import path users write keeps working, whatever module the code
moves to: the package's names, the 1.x paths, the backends, compat under
both its names, the command's entry points and the logger names."""

from __future__ import annotations

import importlib
import importlib.metadata
import subprocess
import sys
import types

import dramatiq
import pytest

import dramatiq_abort
import dramatiq_abort.backends
from dramatiq_abort.backends import StubBackend

from ..support import ROOT, WAIT

#: What ``from dramatiq_abort import *`` gives: 2.0's public names.
PACKAGE_NAMES = {
    "Abort",
    "AbortMode",
    "Abortable",
    "Event",
    "EventBackend",
    "Listing",
    "MessageAborted",
    "MessageRecords",
    "Outcome",
    "RunningMessage",
    "Subscription",
    "TimedEvent",
    "abort",
    "abort_many",
    "abort_requested",
    "abort_where",
    "run_subprocess",
    "running_messages",
    "sleep",
    "wait_outcome",
}

#: Module paths and the names imported from them, each the object of the
#: same name at the top of the package (or of ``dramatiq_abort.backends``).
PATHS = [
    # dramatiq-abort 1.x's documented imports.
    ("dramatiq_abort.middleware", "Abortable"),
    ("dramatiq_abort.middleware", "AbortMode"),
    ("dramatiq_abort.middleware", "abort"),
    ("dramatiq_abort.middleware", "abort_requested"),
    ("dramatiq_abort.backend", "Event"),
    ("dramatiq_abort.backend", "EventBackend"),
    ("dramatiq_abort.backends", "RedisBackend"),
    ("dramatiq_abort.backends", "StubBackend"),
    ("dramatiq_abort.backends.redis", "RedisBackend"),
    ("dramatiq_abort.backends.stub", "StubBackend"),
    # 2.0's.
    ("dramatiq_abort.backends", "PostgresBackend"),
    ("dramatiq_abort.backends", "from_url"),
]

#: Celery's module names under ``compat``, and the names projects import from each.
COMPAT_MODULES = {
    "compat.states": [
        "ABORTED",
        "ALL_STATES",
        "EXCEPTION_STATES",
        "FAILURE",
        "IGNORED",
        "PENDING",
        "PROPAGATE_STATES",
        "READY_STATES",
        "RECEIVED",
        "REJECTED",
        "RETRY",
        "REVOKED",
        "STARTED",
        "SUCCESS",
        "UNREADY_STATES",
        "precedence",
        "state",
    ],
    "compat.exceptions": [
        "Ignore",
        "MaxRetriesExceededError",
        "Retry",
        "SoftTimeLimitExceeded",
        "TaskAborted",
        "TaskRevokedError",
        "TimeLimitExceeded",
        "TimeoutError",
    ],
    "compat.result": ["AbortableGroupResult", "AbortableResult", "AsyncResult"],
    "compat.contrib.abortable": ["ABORTED", "AbortableAsyncResult", "AbortableTask"],
}


def test_the_package_exports_its_public_names_and_its_version() -> None:
    assert set(dramatiq_abort.__all__) == PACKAGE_NAMES
    namespace: dict[str, object] = {}
    exec("from dramatiq_abort import *", namespace)
    assert namespace.keys() >= PACKAGE_NAMES
    assert dramatiq_abort.__version__ == importlib.metadata.version("dramatiq-abort")


@pytest.mark.parametrize(("module", "name"), PATHS)
def test_each_documented_path_gives_the_packages_own_object(module: str, name: str) -> None:
    found = getattr(importlib.import_module(module), name)
    home = dramatiq_abort if name in PACKAGE_NAMES else dramatiq_abort.backends
    assert found is getattr(home, name)


def test_compat_exports_the_same_names_under_both_package_names() -> None:
    import compat
    import dramatiq_abort.compat

    assert "AbortableTask" in dramatiq_abort.compat.__all__
    assert vars(compat)["__all__"] == dramatiq_abort.compat.__all__
    for name in dramatiq_abort.compat.__all__:
        ours, theirs = getattr(compat, name), getattr(dramatiq_abort.compat, name)
        if isinstance(theirs, types.ModuleType):
            # Once imported, compat's own submodule of that name replaces it.
            assert isinstance(ours, types.ModuleType) and ours.__name__.endswith(f".{name}")
        else:
            assert ours is theirs, name


def test_task_states_loads_by_the_dotted_path_a_django_setting_gives() -> None:
    module, _, name = "dramatiq_abort.compat.TaskStates".rpartition(".")
    middleware = getattr(importlib.import_module(module), name)
    assert issubclass(middleware, dramatiq.Middleware)


@pytest.mark.parametrize(("module", "names"), COMPAT_MODULES.items())
def test_celerys_module_names_under_compat_give_compats_objects(
    module: str, names: list[str]
) -> None:
    import dramatiq_abort.compat

    imported = importlib.import_module(module)
    # Each gives the names of its module of the same name, else the package's.
    ours = importlib.import_module("dramatiq_abort." + module.replace(".contrib.abortable", ""))
    for name in names:
        source = ours if hasattr(ours, name) else dramatiq_abort.compat
        assert getattr(imported, name) is getattr(source, name), name


def test_the_console_script_and_python_m_run_the_command() -> None:
    (script,) = importlib.metadata.entry_points(group="console_scripts", name="dramatiq-abort")
    assert script.value == "dramatiq_abort.cli:main"
    assert callable(script.load())
    finished = subprocess.run(
        [sys.executable, "-m", "dramatiq_abort", "--version"],
        capture_output=True,
        text=True,
        timeout=WAIT * 3,
        cwd=ROOT,
        check=True,
    )
    assert dramatiq_abort.__version__ in finished.stdout


def test_the_abort_lines_come_from_the_documented_logger() -> None:
    middleware = dramatiq_abort.Abortable(backend=StubBackend())
    assert middleware.logger.name == "dramatiq_abort.middleware.Abortable"
