"""The files a backend ships beside its modules: its Lua scripts or SQL
statements, read once, at import."""

from __future__ import annotations

from importlib import resources

__all__ = ["shipped_text"]


def shipped_text(package: str, name: str) -> str:
    """The text of ``name``, a path inside ``package``'s folder, shipped as
    package data (see pyproject.toml's package-data)."""
    return (resources.files(package) / name).read_text(encoding="utf-8")
