"""The markers that keep costly tests out of the quick suite, and the check that they are given."""

from __future__ import annotations

import pytest

#: The markers of costly tests: tests/conftest.py marks each of their tests ``slow`` too.
SLOW_KINDS = ("processes", "servers", "browser", "stress")

#: The test running now, set by tests/conftest.py; None outside pytest, such
#: as in the programs the tests start.
current: pytest.Item | None = None


def require_mark(kind: str) -> None:
    """Fail the running test unless it is marked ``kind``.

    Whatever starts worker processes, a server or a browser calls this first,
    so that no test doing so slips into the quick suite unmarked."""
    if current is not None and current.get_closest_marker(kind) is None:
        pytest.fail(f"{current.nodeid} must be marked @pytest.mark.{kind}: see pyproject's markers")
