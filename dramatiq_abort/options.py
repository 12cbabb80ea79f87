"""The ``abortable`` and ``abort_children`` options that
:class:`~dramatiq_abort.Abortable` adds to actors and messages: their
checks, and what a message's, its actor's and the middleware's make of it."""

from __future__ import annotations

import logging
from typing import Any

import dramatiq

from .dramatiq_internals import AnyMessage, unwrapped
from .errors import ActorOptionError, MessageOptionError
from .worker import lineage
from .worker.execution import Execution
from .worker.lineage import ANCESTRY

__all__ = [
    "OPTIONS",
    "check_actor_options",
    "check_message_options",
    "is_abortable",
    "passes_aborts_on",
]

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


def is_abortable(
    actor: dramatiq.Actor[Any, Any], message: AnyMessage, default: bool, logger: logging.Logger
) -> bool:
    """What :meth:`~dramatiq_abort.Abortable.is_abortable` says, with
    ``default`` the middleware's and ``logger`` where it warns of an option
    that a process without the middleware let through."""
    abortable = unwrapped(message).options.get("abortable")
    if isinstance(abortable, bool):
        return abortable
    if abortable is not None:
        # Sent by a process without this middleware, which would have refused it.
        logger.warning(
            "Message %r has abortable=%.100r, which is neither True nor False:"
            " ignored, the actor's setting applies.",
            message.message_id,
            abortable,
        )
    abortable = actor.options.get("abortable")
    return default if abortable is None else bool(abortable)


def passes_aborts_on(broker: dramatiq.Broker, execution: Execution, default: bool) -> bool:
    """Whether an abort of the message of ``execution`` reaches the
    messages it enqueues: the ``abort_children`` option of the message,
    else of its actor, else ``default`` (the middleware's); ``None`` counts
    as not given."""
    passes = unwrapped(execution.message).options.get("abort_children")
    if isinstance(passes, bool):
        return passes
    actor = broker.actors.get(execution.message.actor_name)
    passes = None if actor is None else actor.options.get("abort_children")
    return default if passes is None else bool(passes)
