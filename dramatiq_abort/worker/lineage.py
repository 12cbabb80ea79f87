"""The ancestry a message carries: the messages whose abort reaches it,
because one of them enqueued it (or the message that did, and so on)."""

from __future__ import annotations

from typing import Any

from ..checks import MAX_MESSAGE_ID_LENGTH

__all__ = ["ANCESTRY", "MAX_DEPTH", "ancestry_of", "check_ancestry", "give_ancestry"]

#: The message option that holds a message's ancestry: the ids of its
#: parent, of its parent's parent and so on, nearest first.
ANCESTRY = "abort_ancestors"

#: Most ancestors a message carries: an abort reaches descendants down to
#: this many generations, and a message's options grow by at most this many
#: ids, however deep a chain of messages that enqueue messages runs.
MAX_DEPTH = 16

#: The options of dramatiq's messages that hold further messages, which a
#: worker enqueues later, elsewhere: the next step of a pipeline, and the
#: callbacks a group enqueues once its messages are done.
_NESTED_ONE = "pipe_target"
_NESTED_MANY = "group_completion_callbacks"


def check_ancestry(value: object) -> tuple[str, ...]:
    """``value``, an ancestry as a message's options hold it, as a tuple
    without repeats; ``ValueError`` saying what is wrong when it is not a
    list of at most :data:`MAX_DEPTH` message ids."""
    if not isinstance(value, (list, tuple)) or len(value) > MAX_DEPTH:
        raise ValueError(
            f"{ANCESTRY} must be a list of at most {MAX_DEPTH} message ids, not {value!r:.100}"
        )
    for message_id in value:
        if not isinstance(message_id, str) or not 0 < len(message_id) <= MAX_MESSAGE_ID_LENGTH:
            raise ValueError(f"{ANCESTRY} holds {message_id!r:.100}, which is not a message id")
    return tuple(dict.fromkeys(value))


def ancestry_of(parent_id: str, parent_ancestry: tuple[str, ...]) -> tuple[str, ...]:
    """The ancestry of a message enqueued by ``parent_id``, whose own
    ancestry is ``parent_ancestry``: the parent, then its ancestors, the
    farthest beyond :data:`MAX_DEPTH` left out."""
    return (parent_id, *parent_ancestry)[:MAX_DEPTH]


def give_ancestry(options: dict[str, Any], ancestry: tuple[str, ...], own_id: str) -> None:
    """Add ``ancestry`` to the ``options`` of the message ``own_id``, and
    to those of the messages nested in them (a pipeline's later steps, a
    group's callbacks), ahead of any ancestry they already carry.

    ``options`` is changed in place; the nested messages are copied, not
    changed: dramatiq shares their options with the pipeline or group
    objects they come from, which a caller may run again elsewhere.
    """
    held = options.get(ANCESTRY)
    if not isinstance(held, (list, tuple)):
        held = ()
    # A message is never its own ancestor: its abort is its own already.
    merged = [
        message_id for message_id in dict.fromkeys([*ancestry, *held]) if message_id != own_id
    ]
    options[ANCESTRY] = merged[:MAX_DEPTH]
    nested = options.get(_NESTED_ONE)
    if isinstance(nested, dict):
        options[_NESTED_ONE] = _given(nested, ancestry)
    callbacks = options.get(_NESTED_MANY)
    if isinstance(callbacks, list):
        options[_NESTED_MANY] = [
            _given(callback, ancestry) if isinstance(callback, dict) else callback
            for callback in callbacks
        ]


def _given(message: dict[str, Any], ancestry: tuple[str, ...]) -> dict[str, Any]:
    """A copy of ``message`` (a message as a dict, as dramatiq nests them)
    with ``ancestry`` added by :func:`give_ancestry`."""
    options = dict(message.get("options") or {})
    give_ancestry(options, ancestry, str(message.get("message_id", "")))
    return {**message, "options": options}
