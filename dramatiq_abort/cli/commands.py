"""The ``dramatiq-abort`` command's commands: ``demo``, ``abort``, ``list``
and ``web``, run on checked arguments, and the one line each error of a
backend comes out as."""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import sys
import time
import uuid
from collections.abc import Sequence
from typing import Any

from ..backend import EventBackend
from ..listing import RUNNING, Listing, check_inquiry
from ..listing import ask as ask_workers
from ..mode import AbortMode
from ..sending import LISTING_WAIT
from ..settings import URL_VARIABLE
from ..web import serve
from . import output
from .arguments import BAD_ARGUMENTS, parse

__all__ = ["ACTOR_CHECK_WAIT", "main"]

#: Exit statuses: a backend error (the request may not have been recorded);
#: interrupted by Ctrl-C (128 + SIGINT).
BACKEND_ERROR, INTERRUPTED = 1, 130
#: Longest wait, in seconds, once a rule that names an actor is recorded,
#: for the workers to say which actors they declare: the rule is recorded
#: first, and the wait ends as soon as every worker process that listens
#: answered, so it delays only the exit, and only while one is slow.
ACTOR_CHECK_WAIT = 1.0


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``dramatiq-abort`` with ``argv`` (the command line when ``None``);
    its exit status."""
    args = parse(argv)
    try:
        return _run(args)
    except KeyboardInterrupt:
        print(
            "dramatiq-abort: interrupted"
            + ("; the request may have been recorded" if args.command == "abort" else ""),
            file=sys.stderr,
        )
        return INTERRUPTED


def _run(args: argparse.Namespace) -> int:
    if args.command == "demo" and args.redis is None:
        return _demo(None)
    try:
        if args.command == "demo":
            return _demo(args.redis)
        if args.command == "list":
            return _list(args)
        if args.command == "web":
            return _web(args)
        return _abort(args)
    except (TypeError, ValueError, ImportError) as e:
        # An ImportError: the backend's client library, an extra, is missing.
        print(f"dramatiq-abort: {e}", file=sys.stderr)
        return BAD_ARGUMENTS
    except Exception as e:
        error = _backend_error(e)
        if error is None:
            raise
        print(f"dramatiq-abort: {error}", file=sys.stderr)
        return BACKEND_ERROR


def _backend_error(error: Exception) -> str | None:
    """What to print of ``error`` when it is the backend's client library's;
    ``None`` for any other. Neither library is imported here: only the
    backend that the URL names imports its own."""
    redis = sys.modules.get("redis")
    if redis is not None and isinstance(error, redis.RedisError):
        # The client's words name the host and port, never the password that
        # the URL may hold; a traceback would say no more to an operator.
        return f"Redis error: {str(error).rstrip('.')}{_redis_hint(error, redis)}"
    psycopg = sys.modules.get("psycopg")
    if psycopg is not None and isinstance(error, psycopg.Error):
        # libpq's words name the host, port, user and database, never the password.
        first_line = " ".join(str(error).split("\n", 1)[0].split())
        return (
            f"PostgreSQL error: {first_line.rstrip('.')}: check the host, port, user, password"
            f" and database that --backend (or ${URL_VARIABLE}) gives"
        )
    return None


def _demo(redis_url: str | None) -> int:
    from .demo import main

    return main(redis_url)


def _backend(args: argparse.Namespace) -> EventBackend:
    """The workers' backend that ``--backend`` and ``--namespace`` name."""
    from ..backends import from_url

    options = {} if args.namespace is None else {"namespace": args.namespace}
    return from_url(args.url, **options)


def _redis_hint(error: Exception, redis: Any) -> str:
    """What to check after ``error``, for the errors an operator's URL
    causes; nothing for the others, whose words say enough. ``redis`` is
    redis-py's module."""
    where = f"--backend (or ${URL_VARIABLE})"
    if isinstance(error, redis.AuthenticationError):
        return f": check the user and password that {where} gives"
    if isinstance(error, (redis.ConnectionError, redis.TimeoutError)):
        return f": check that Redis runs at the host and port that {where} names"
    return ""


def _abort(args: argparse.Namespace) -> int:
    from ..middleware import Abortable

    backend = _backend(args)
    middleware = Abortable(backend=backend)
    mode = AbortMode(args.mode)
    if args.message_ids:
        # One call: every id is checked before any is sent.
        middleware.abort_many(args.message_ids, args.ttl, mode, args.timeout, reason=args.reason)
        print(
            f"sent {args.mode} for {len(args.message_ids)} message(s): {output.effect(args)}.\n"
            f"The request is recorded even for an id no worker knows (yet), and expires after"
            f" {args.ttl:,} ms (--ttl). Reason: {args.reason!r}."
        )
        _not_uuids(args.message_ids)
    elif args.dry_run:
        return _dry_run(args, backend)
    else:
        rule_id = middleware.abort_where(
            actor=args.actor,
            queue=args.queue,
            sent_before=args.sent_before,
            mode=mode,
            abort_timeout=args.timeout,
            abort_ttl=args.ttl,
            reason=args.reason,
        )
        when = (
            datetime.datetime.fromtimestamp(args.sent_before).astimezone().isoformat("T", "seconds")
        )
        matched = " and ".join(
            f"{name} {value!r}"
            for name, value in (("actor", args.actor), ("queue", args.queue))
            if value is not None
        )
        print(
            f"recorded rule {rule_id}: {args.mode} every message of {matched} sent before"
            f" {when}: {output.effect(args)}.\n"
            f"A message sent after that is never touched. The rule expires after {args.ttl:,} ms"
            f" (--ttl). Reason: {args.reason!r}."
        )
        if args.actor is not None:
            _check_actor(args, backend)
            return 0
    if backend.subscribers() == 0:
        _no_worker_listens(args)
    return 0


def _check_actor(args: argparse.Namespace, backend: EventBackend) -> None:
    """After the rule is recorded: say when no worker process listens, or
    when those that answer within ``ACTOR_CHECK_WAIT`` declare no actor
    named ``--actor``. A failure to ask changes nothing: the rule stands."""
    try:
        if backend.subscribers() == 0:
            # Nobody to ask: no inquiry is written.
            _no_worker_listens(args)
            return
        listed = _ask(args, backend, ACTOR_CHECK_WAIT)
    except Exception as e:
        print(
            f"Could not ask the workers whether they declare actor {args.actor!r}"
            f" ({type(e).__name__}); the rule is recorded.",
            file=sys.stderr,
        )
        return
    _warn_if_no_worker_declares(args, listed, ACTOR_CHECK_WAIT)


def _ask(args: argparse.Namespace, backend: EventBackend, wait: float) -> Listing:
    """What ``list`` asks, for the messages that --actor, --queue and
    --sent-before match; given --actor, which actors each process declares too."""
    inquiry = check_inquiry(
        args.actor, args.queue, args.sent_before, False, actors=args.actor is not None
    )
    return ask_workers(backend, inquiry, wait)


def _warn_if_no_worker_declares(args: argparse.Namespace, listed: Listing, wait: float) -> None:
    """Warn, as ``abort_where()`` does in a process that declares actors,
    when worker processes answered and none declares --actor: likely a
    misspelt name. Nothing when none answered, or when one did not say."""
    if listed.actors is None or not listed.answered or args.actor in listed.actors:
        return
    missing = 0 if listed.expected is None else listed.expected - listed.answered
    silent = f" ({missing} more did not answer within {wait:g} s)" if missing > 0 else ""
    rule = "the rule would be recorded" if args.dry_run else "the rule is recorded"
    print(
        f"Warning: none of the {listed.answered} worker process(es) that answered{silent}"
        f" declares actor {args.actor!r}, so none of them runs its messages. Check the name: an"
        " actor is named after its function unless actor_name= says otherwise. Meanwhile"
        f" {rule} anyway, for workers that may declare it.",
        file=sys.stderr,
    )


def _not_uuids(message_ids: list[str]) -> None:
    """Name the ids that are not UUIDs as dramatiq writes them: an actor's
    name, a result key or an id with a stray quote is recorded as an id all
    the same, and would never match a message."""
    odd = [message_id for message_id in message_ids if not _is_uuid(message_id)]
    if not odd:
        return
    shown = ", ".join(repr(message_id[:40]) for message_id in odd[:3])
    if len(odd) > 3:
        shown += f" and {len(odd) - 3:,} more"
    print(
        f"Note: {shown} {'is not a UUID' if len(odd) == 1 else 'are not UUIDs'}, as dramatiq's"
        " message ids are: unless your ids are of your own making, compare with the IDs"
        " that `dramatiq-abort list` shows; --actor NAME stops the messages of an actor."
    )


def _is_uuid(text: str) -> bool:
    """Whether ``text`` is a UUID in the form dramatiq gives message ids."""
    try:
        return str(uuid.UUID(text)) == text
    except ValueError:
        return False


def _dry_run(args: argparse.Namespace, backend: EventBackend) -> int:
    """``abort --actor/--queue --dry-run``: how many messages that workers
    run or hold the rule would stop now. Those still in the broker's
    queues cannot be counted."""
    listed = _ask(args, backend, LISTING_WAIT)
    running = sum(message.state == RUNNING for message in listed.messages)
    left_alone = (
        " (--mode cancel would leave them running)"
        if running and args.mode == AbortMode.CANCEL.value
        else ""
    )
    print(
        f"dry run, no rule recorded: {running} running message(s) match now{left_alone},"
        f" and {len(listed.messages) - running} that workers hold to run"
        f" ({output.answered(listed, LISTING_WAIT)}). Messages still in the broker's queues"
        " are not counted: the rule would cancel them as they start."
    )
    if listed.expected == 0 and not listed.answered:
        _no_worker_listens(args)
    else:
        _warn_if_no_worker_declares(args, listed, LISTING_WAIT)
    return 0


def _no_worker_listens(args: argparse.Namespace) -> None:
    # The likeliest mistake: a namespace or backend that no worker uses.
    namespace = (
        "the default namespace" if args.namespace is None else f"namespace {args.namespace!r}"
    )
    print(
        f"No worker listens to {namespace} of this backend now: if workers run, check"
        " --namespace and the URL against those of their backend."
    )


def _list(args: argparse.Namespace) -> int:
    from ..middleware import Abortable

    listed = Abortable(backend=_backend(args)).running_messages(
        actor=args.actor, queue=args.queue, args=args.args, timeout=args.wait
    )
    if args.json:
        print(json.dumps(listed.as_json(args.args), indent=2))
        return 0
    if listed.messages:
        print(output.table(listed.messages, args.args, time.time()))
    elif listed.answered:
        print("No matching abortable message runs in the worker processes that answered.")
    if listed.expected == 0 and not listed.answered:
        _no_worker_listens(args)
    else:
        print(output.answered(listed, args.wait) + ".")
    return 0


def _web(args: argparse.Namespace) -> int:
    from ..middleware import Abortable

    backend = _backend(args)
    middleware = Abortable(backend=backend)
    # A read that writes nothing: a backend the URL does not reach fails
    # here, in one line, rather than in every listing the page asks for.
    middleware.outcome(str(uuid.uuid4()))
    if backend.subscribers() == 0:
        _no_worker_listens(args)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    serve(middleware, args.host, args.port, allow_abort=args.allow_abort, refresh=args.refresh)
    return 0
