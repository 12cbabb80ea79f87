"""The ``dramatiq-abort`` command: ``demo`` to see aborts at work, ``abort``
for operators."""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Sequence
from typing import Any

from . import __version__
from .middleware import DEFAULT_ABORT_TTL
from .mode import AbortMode

#: Where ``dramatiq-abort abort`` finds the Redis URL when ``--redis`` is not given.
REDIS_URL_VARIABLE = "DRAMATIQ_ABORT_REDIS_URL"
#: Exit statuses: a Redis error (the request may not have been recorded);
#: bad arguments (nothing was sent); interrupted by Ctrl-C (128 + SIGINT).
REDIS_ERROR, BAD_ARGUMENTS, INTERRUPTED = 1, 2, 130


def _milliseconds_or_inf(text: str) -> float:
    """``--timeout``: a whole number of milliseconds, or ``inf``."""
    if text.strip().lower() in ("inf", "infinity"):
        return math.inf
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is neither a whole number of milliseconds nor 'inf'"
        ) from None


def _parser() -> argparse.ArgumentParser:
    from .backends.redis import DEFAULT_NAMESPACE

    parser = argparse.ArgumentParser(
        prog="dramatiq-abort", description="Cancel queued and abort running dramatiq messages."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="{demo,abort}")

    demo = commands.add_parser(
        "demo",
        help="run a worker in this process and abort, cancel and gracefully stop messages",
        description="Runs on an in-memory broker and backend unless --redis is given.",
    )
    demo.add_argument("--redis", metavar="URL", help="run against this Redis instead of in memory")

    send = commands.add_parser(
        "abort",
        help="send abort requests for message ids",
        description="Record one abort request for every ID, after checking them all: on a bad"
        " argument nothing is sent (exit status 2). Exit status 1: a Redis error.",
    )
    send.set_defaults(command_parser=send)
    send.add_argument("message_ids", metavar="ID", nargs="+", help="message ids to abort")
    send.add_argument(
        "--redis",
        metavar="URL",
        default=os.environ.get(REDIS_URL_VARIABLE),
        help=f"Redis the workers listen to; required unless ${REDIS_URL_VARIABLE} is set, which"
        " keeps a password out of the process list",
    )
    send.add_argument(
        "--namespace",
        default=DEFAULT_NAMESPACE,
        help="the key namespace of the workers' RedisBackend (default: %(default)s)",
    )
    send.add_argument(
        "--mode",
        choices=[mode.value for mode in AbortMode],
        default=AbortMode.ABORT.value,
        help="cancel: only messages not started yet; abort: running ones too"
        " (default: %(default)s)",
    )
    send.add_argument(
        "--timeout",
        type=_milliseconds_or_inf,
        default=0,
        metavar="MS",
        help="milliseconds a running message is given to stop by itself before it is"
        " interrupted; 'inf' asks it to stop and never forces it (default: %(default)s)",
    )
    send.add_argument(
        "--ttl",
        type=int,
        default=DEFAULT_ABORT_TTL,
        metavar="MS",
        help="milliseconds the request stays valid for messages that have not started"
        " (default: %(default)s)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "abort" and not args.redis:
        args.command_parser.error(f"--redis URL is required, unless ${REDIS_URL_VARIABLE} is set")
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
    if args.redis is None:
        from .demo import main as demo

        return demo(None)
    # Imported only now: Redis is an optional extra, which the in-memory
    # demo does without.
    try:
        import redis
    except ImportError:
        print(
            "dramatiq-abort: --redis needs redis-py: pip install 'dramatiq-abort[redis]'",
            file=sys.stderr,
        )
        return REDIS_ERROR
    try:
        if args.command == "demo":
            from .demo import main as demo

            return demo(args.redis)
        return _abort(args)
    except (TypeError, ValueError) as e:
        print(f"dramatiq-abort: {e}", file=sys.stderr)
        return BAD_ARGUMENTS
    except redis.RedisError as e:
        # The client's words name the host and port, never the password that
        # the URL may hold; a traceback would say no more to an operator.
        print(f"dramatiq-abort: Redis error: {e}", file=sys.stderr)
        return REDIS_ERROR


def _abort(args: argparse.Namespace) -> int:
    from .backends.redis import RedisBackend
    from .middleware import Abortable

    backend = RedisBackend.from_url(args.redis, namespace=args.namespace)
    middleware = Abortable(backend=backend)
    # One call: every id is checked before any is sent.
    middleware.abort_many(args.message_ids, args.ttl, AbortMode(args.mode), args.timeout)
    listening = _subscribers(backend)
    count = len(args.message_ids)
    if args.mode == AbortMode.CANCEL.value:
        effect = "a message that has not started will not start; a running one is left alone"
    elif args.timeout == math.inf:
        effect = "a running message is asked to stop and never forced; a queued one will not start"
    elif args.timeout:
        effect = (
            f"a running message has {args.timeout:,} ms to stop before it is interrupted;"
            " a queued one will not start"
        )
    else:
        effect = "a running message is interrupted; a queued one will not start"
    print(
        f"sent {args.mode} for {count} message(s): {effect}.\n"
        f"The request is recorded even for an id no worker knows (yet), and expires after"
        f" {args.ttl:,} ms (--ttl)."
    )
    if listening == 0:
        # The likeliest mistake: a namespace or Redis that no worker uses.
        print(
            f"No worker listens to namespace {args.namespace!r} on this Redis now: if workers"
            " run, check --namespace and the URL against their RedisBackend."
        )
    return 0


def _subscribers(backend: Any) -> int | None:
    """How many worker processes are subscribed to ``backend``'s events,
    or ``None`` if that cannot be told (a cluster, or a user without
    PUBSUB NUMSUB)."""
    import redis

    if not isinstance(backend.client, redis.Redis):
        return None
    try:
        ((_, count),) = backend.client.pubsub_numsub(backend.channel)
    except (redis.RedisError, ValueError):
        return None
    return int(count)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
