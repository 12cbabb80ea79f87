"""The checks of the ``abortable`` and ``abort_children`` options that
:class:`~dramatiq_abort.Abortable` adds to actors and messages."""

from __future__ import annotations

from typing import Any

import dramatiq

from .errors import ActorOptionError, MessageOptionError
from .worker import lineage
from .worker.lineage import ANCESTRY

__all__ = ["OPTIONS", "check_actor_options", "check_message_options"]

#: The actor and message options the middleware adds, each True, False or None.
OPTIONS = ("abortable", "abort_children")


def check_message_options(message: dramatiq.Message[Any]) -> None:
    """Raise :class:`MessageOptionError` (which stops the enqueue) when an
    option of ``message`` is not a boolean, or it carries an ancestry that
    dramatiq-abort did not give it."""
    options = message.options
    for name in OPTIONS:
        value = options.get(name)
        if value is not None and not isinstance(value, bool):
            # A MiddlewareError: the broker lets it through, and nothing is enqueued.
            raise MessageOptionError(
                f"{name} must be True or False, not {value!r:.100}"
                f" (message {message.message_id!r} of actor {message.actor_name!r})"
            )
    if ANCESTRY in options:
        try:
            lineage.check_ancestry(options[ANCESTRY])
        except ValueError as e:
            raise MessageOptionError(
                f"{e} (message {message.message_id!r} of actor {message.actor_name!r}):"
                " leave that option to dramatiq-abort"
            ) from None


def check_actor_options(actor: dramatiq.Actor[Any, Any]) -> None:
    """Raise :class:`ActorOptionError` when an option of ``actor`` is not a
    boolean, or it passes aborts on without being abortable."""
    for name in OPTIONS:
        value = actor.options.get(name)
        if value is not None and not isinstance(value, bool):
            raise ActorOptionError(
                f"actor {actor.actor_name!r} sets {name}={value!r:.100}: it must be True or False"
            )
    if actor.options.get("abort_children") and actor.options.get("abortable") is False:
        raise ActorOptionError(
            f"actor {actor.actor_name!r} sets abort_children=True and abortable=False:"
            " only an abortable message passes its abort on; drop one of the two"
        )
