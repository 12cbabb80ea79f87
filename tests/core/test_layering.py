"""The package's layers, read from its import statements: a module imports
only from its own layer and the layers below it.

From the bottom up:

1. ``base``: the vocabulary every other layer shares, errors, modes,
   outcomes, input checks, the backend interface, the events' wire
   format, the GIL-keeping reads, the expiring table and the one module
   that touches dramatiq's private internals.
2. ``backends``: the event backends, which know nothing of workers.
3. ``worker``: what runs inside a worker process (``dramatiq_abort.worker``),
   with the two public modules it feeds: ``listing`` (the answers'
   states) and ``metrics`` (what a worker counts).
4. ``core``: the middleware (with its option checks, its sender and the
   endings of stopped messages), its settings and the blocking helpers, which
   build and drive the worker's parts.
5. ``tools``: the command line (with its demo), the page and the Celery-style
   ``compat`` layer (and the top-level ``compat`` package), which use the
   core as any application does: none imports ``dramatiq_abort.worker``.

Every import counts, function-local and type-only ones included, and
every module must belong to a layer, so that a new one is placed on
purpose.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

import dramatiq_abort

#: The layers, bottom first: each names the top-level modules and
#: subpackages of ``dramatiq_abort`` it holds (``__init__`` is the package's).
LAYERS: tuple[tuple[str, frozenset[str]], ...] = (
    (
        "base",
        frozenset(
            {
                "errors",
                "mode",
                "outcome",
                "checks",
                "backend",
                "wire",
                "nogil",
                "expiring",
                "dramatiq_internals",
            }
        ),
    ),
    ("backends", frozenset({"backends"})),
    ("worker", frozenset({"worker", "listing", "metrics"})),
    (
        "core",
        frozenset(
            {"__init__", "middleware", "options", "sending", "endings", "settings", "blocking"}
        ),
    ),
    ("tools", frozenset({"cli", "web", "__main__", "compat"})),
)
#: The subpackage of worker internals, which no tool imports.
INTERNALS = "worker"

PACKAGE = Path(dramatiq_abort.__file__).parent


def layer_of(top: str) -> int | None:
    """The rank of the layer that holds ``top``, a top-level module or
    subpackage of ``dramatiq_abort``; ``None`` if none holds it."""
    for rank, (_name, members) in enumerate(LAYERS):
        if top in members:
            return rank
    return None


def imported(source: str, module: str, is_package: bool) -> Iterator[tuple[int, str]]:
    """The line and the first part under ``dramatiq_abort`` of each module
    of the package that ``source`` (the text of ``module``) imports."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = module.split(".")
                anchor = parts if is_package else parts[:-1]
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            # ``from package import name``: each name may be a submodule.
            targets = [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        for target in targets:
            parts = target.split(".")
            if parts[0] != "dramatiq_abort":
                continue
            top = parts[1] if len(parts) > 1 else "__init__"
            if not ((PACKAGE / top).is_dir() or (PACKAGE / f"{top}.py").exists()):
                top = "__init__"  # a name the package's __init__ defines
            yield node.lineno, top


def modules() -> Iterator[tuple[Path, str, bool]]:
    """Each module of the package and of the top-level ``compat``: its
    file, dotted name and whether it is a package's ``__init__``."""
    for root in (PACKAGE, PACKAGE.parent / "compat"):
        for path in sorted(root.rglob("*.py")):
            parts = path.relative_to(root.parent).with_suffix("").parts
            is_package = parts[-1] == "__init__"
            yield path, ".".join(parts[:-1] if is_package else parts), is_package


def upward_imports(source: str, module: str, is_package: bool) -> list[str]:
    """What is wrong with the imports of ``module``, whose text is ``source``."""
    parts = module.split(".")
    # The top-level ``compat`` package sits with ``dramatiq_abort.compat``.
    own = "compat" if parts[0] == "compat" else parts[1] if len(parts) > 1 else "__init__"
    rank = layer_of(own)
    if rank is None:
        return [f"{module} is in no layer: add {own!r} to LAYERS"]
    problems = []
    for line, top in imported(source, module, is_package):
        target = layer_of(top)
        if target is None:
            problems.append(f"{module}:{line} imports {top!r}, which is in no layer")
        elif target > rank:
            problems.append(
                f"{module}:{line} imports {top!r} ({LAYERS[target][0]}), "
                f"above its own layer ({LAYERS[rank][0]})"
            )
        elif LAYERS[rank][0] == "tools" and top == INTERNALS:
            problems.append(f"{module}:{line} imports the worker internals")
    return problems


def test_no_module_imports_from_a_layer_above_its_own() -> None:
    problems = [
        problem
        for path, module, is_package in modules()
        for problem in upward_imports(path.read_text(), module, is_package)
    ]
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize(
    ("module", "source"),
    [
        ("dramatiq_abort.worker.watcher", "from ..cli import main"),
        ("dramatiq_abort.worker.rules", "def f():\n    from ..middleware import Abortable"),
        ("dramatiq_abort.backends.stub", "from ..worker.requests import AbortRequest"),
        ("dramatiq_abort.backend", "import dramatiq_abort.listing"),
        ("dramatiq_abort.compat.task", "from ..worker import lineage"),
        ("dramatiq_abort.cli", "from dramatiq_abort.worker.watcher import Watcher"),
        ("compat.result", "from dramatiq_abort.worker import requests"),
    ],
)
def test_the_check_finds_an_upward_import_or_one_of_worker_internals_by_a_tool(
    module: str, source: str
) -> None:
    assert upward_imports(source, module, is_package=False)
