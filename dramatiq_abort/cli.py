"""The ``dramatiq-abort`` command: ``demo`` to see aborts at work, ``abort``
for operators."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from .mode import AbortMode

#: Where ``dramatiq-abort abort`` finds the Redis URL when ``--redis`` is not given.
REDIS_URL_VARIABLE = "DRAMATIQ_ABORT_REDIS_URL"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dramatiq-abort", description="Cancel queued and abort running dramatiq messages."
    )
    commands = parser.add_subparsers(dest="command", required=True)

    demo = commands.add_parser(
        "demo",
        help="run a worker in this process and abort, cancel and gracefully stop messages",
        description="Runs on an in-memory broker and backend unless --redis is given.",
    )
    demo.add_argument("--redis", metavar="URL", help="run against this Redis instead of in memory")

    send = commands.add_parser("abort", help="send abort requests for message ids")
    send.add_argument("message_ids", metavar="ID", nargs="+", help="message ids to abort")
    send.add_argument(
        "--redis",
        metavar="URL",
        default=os.environ.get(REDIS_URL_VARIABLE),
        required=REDIS_URL_VARIABLE not in os.environ,
        help=f"Redis the workers listen to (default: ${REDIS_URL_VARIABLE}, which keeps a "
        "password out of the process list)",
    )
    send.add_argument("--namespace", default="dramatiq:aborts:", help="the backend's key namespace")
    send.add_argument(
        "--mode",
        choices=[mode.value for mode in AbortMode],
        default=AbortMode.ABORT.value,
        help="cancel: only messages not started yet; abort: running ones too (default)",
    )
    send.add_argument(
        "--timeout",
        type=int,
        default=0,
        metavar="MS",
        help="grace before a running message is interrupted",
    )
    send.add_argument(
        "--ttl", type=int, default=90_000, metavar="MS", help="how long the request stays valid"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.redis is None:
        return _run(args)
    # Imported only now: Redis is an optional extra, which the in-memory
    # demo does without.
    import redis

    try:
        return _run(args)
    except redis.RedisError as e:
        # The client's words name the host and port, never the password that
        # the URL may hold; a traceback would say no more to an operator.
        print(f"dramatiq-abort: Redis error: {e}", file=sys.stderr)
        return 1


def _run(args: argparse.Namespace) -> int:
    if args.command == "demo":
        from .demo import main as demo

        return demo(args.redis)

    from .backends.redis import RedisBackend
    from .middleware import Abortable

    try:
        middleware = Abortable(backend=RedisBackend.from_url(args.redis, namespace=args.namespace))
        for message_id in args.message_ids:
            middleware.abort(message_id, args.ttl, AbortMode(args.mode), args.timeout)
    except (TypeError, ValueError) as e:
        print(f"dramatiq-abort: {e}", file=sys.stderr)
        return 2
    print(f"sent {args.mode} for {len(args.message_ids)} message(s)")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
