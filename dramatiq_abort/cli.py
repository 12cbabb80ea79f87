"""The ``dramatiq-abort`` command: ``demo`` to see aborts at work, ``abort``,
``list`` and ``web`` for operators."""

from __future__ import annotations

import argparse
import datetime
import getpass
import json
import logging
import math
import os
import socket
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from typing import NoReturn, TypeVar

import redis

from . import __version__
from .backend import EventBackend
from .backends import backend_name, check_url
from .checks import (
    MIN_REFRESH,
    check_milliseconds,
    check_name,
    check_port,
    check_reason,
    check_redis_url,
    check_refresh,
    check_seconds,
    check_sent_before,
    check_text,
)
from .listing import DELAYED, RUNNING, Listing, RunningMessage, check_inquiry
from .listing import ask as ask_workers
from .middleware import DEFAULT_ABORT_TTL, LISTING_WAIT
from .mode import AbortMode
from .settings import URL_VARIABLE
from .web import DEFAULT_REFRESH, serve

#: The variable's name before backends other than Redis: still read, after
#: :data:`URL_VARIABLE`.
REDIS_URL_VARIABLE = "DRAMATIQ_ABORT_REDIS_URL"
#: Exit statuses: a backend error (the request may not have been recorded);
#: bad arguments (nothing was sent); interrupted by Ctrl-C (128 + SIGINT).
BACKEND_ERROR, BAD_ARGUMENTS, INTERRUPTED = 1, 2, 130
#: Longest wait, in seconds, once a rule that names an actor is recorded,
#: for the workers to say which actors they declare: the rule is recorded
#: first, and the wait ends as soon as every worker process that listens
#: answered, so it delays only the exit, and only while one is slow.
ACTOR_CHECK_WAIT = 1.0


class _Parser(argparse.ArgumentParser):
    """argparse's parser, whose errors are one line, as every error of the
    command is: the usage block argparse prints first would bury the
    sentence that names the bad argument."""

    def error(self, message: str) -> NoReturn:
        # self.prog names the subcommand: its --help lists its options.
        line = " ".join(message.splitlines())
        self.exit(BAD_ARGUMENTS, f"dramatiq-abort: error: {line}; see '{self.prog} --help'\n")


# The checks below run while the arguments are parsed, so that an error
# names the option and the text the operator typed, rather than the
# parameter of the Python API that would refuse it later. Each reads the
# text, says what is wrong with text that means nothing, and leaves the
# bounds to the check the Python API applies (checks.py), named after the
# option: what passes here passes there, on every backend.

T = TypeVar("T")


def _checked(check: Callable[[], T]) -> T:
    """What ``check`` returns; its error, if any, as argparse's."""
    try:
        return check()
    except (TypeError, ValueError) as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _redis_url(text: str) -> str:
    """``demo --redis``: a URL that names a Redis (see ``check_redis_url``)."""
    return _checked(lambda: check_redis_url(text))


def _backend_url(text: str) -> str:
    """``--backend``: a URL that names the workers' backend (see
    ``backends.check_url``); not ``memory://``, which no other process shares."""
    url = _checked(lambda: check_url(text))
    if backend_name(url) == "StubBackend":
        raise argparse.ArgumentTypeError(
            "memory:// lives inside one process, so no worker shares it: give the URL"
            " of the workers' backend, such as redis://localhost:6379/0"
        )
    return url


def _default_url() -> str | None:
    """The backend URL of the environment, if any: the variable that
    ``Abortable()`` without a backend reads too, else the older one."""
    return os.environ.get(URL_VARIABLE) or os.environ.get(REDIS_URL_VARIABLE) or None


def _milliseconds_or_inf(text: str) -> float:
    """``--timeout``: a whole number of milliseconds, 0 or more, or ``inf``."""
    if text.strip().lower() in ("inf", "infinity"):
        return math.inf
    try:
        milliseconds = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is neither a whole number of milliseconds nor 'inf'"
        ) from None
    if milliseconds < 0:
        raise argparse.ArgumentTypeError(
            f"{text!r} is less than 0: give 0 to interrupt at once, a number of"
            " milliseconds of grace, or 'inf' to ask and never force"
        )
    return _checked(
        lambda: check_milliseconds(
            "--timeout", milliseconds, instead="; give 'inf' to ask and never force"
        )
    )


def _positive_milliseconds(text: str) -> int:
    """``--ttl``: a whole number of milliseconds greater than 0."""
    try:
        milliseconds = int(text)
    except ValueError:
        milliseconds = 0
    if milliseconds <= 0:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a whole number of milliseconds greater than 0"
            f" (the default is {DEFAULT_ABORT_TTL})"
        )
    return _checked(lambda: check_milliseconds("--ttl", milliseconds, positive=True))


def _reason(text: str) -> str:
    """``--reason``: a text that is not blank, as ``check_reason`` takes it."""
    if not text.strip():
        raise argparse.ArgumentTypeError(
            f"{text!r} is blank: give a few words, or leave --reason out for the default"
            " (USER@HOST via dramatiq-abort)"
        )
    return _checked(lambda: check_reason(text, name="--reason") or text)


def _name(option: str, what: str, column: str) -> Callable[[str], str]:
    """``--actor`` and ``--queue``: a name that is not blank, as
    ``check_name`` takes it. ``what`` says whose name it is (``"an
    actor's"``), ``column`` where ``list`` shows it."""

    def check(text: str) -> str:
        if not text.strip():
            raise argparse.ArgumentTypeError(
                f"{text!r} is blank: give {what} name, as the {column} column of"
                " `dramatiq-abort list` shows it"
            )
        return _checked(lambda: check_name(option, text) or text)

    return check


_actor = _name("--actor", "an actor's", "ACTOR")
_queue = _name("--queue", "a queue's", "QUEUE")


def _namespace(text: str) -> str:
    """``--namespace``: not blank, and text every backend stores."""
    if not text.strip():
        raise argparse.ArgumentTypeError(
            f"{text!r} is blank: give the namespace of the workers' backend, or leave"
            " --namespace out for the default"
        )
    return _checked(lambda: check_text("--namespace", text))


def _seconds(text: str) -> float:
    """``text`` as a number of seconds; NaN when it is none."""
    try:
        return float(text)
    except ValueError:
        return math.nan


def _positive_seconds(text: str) -> float:
    """``--wait``: a number of seconds greater than 0."""
    seconds = _seconds(text)
    if not seconds > 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds greater than 0")
    return _checked(lambda: check_seconds("--wait", seconds))


def _moment(text: str) -> float:
    """``--sent-before``: ISO 8601 (local time when it names no zone), or
    seconds since the epoch, and not in the future; in seconds since the
    epoch."""
    moment: float | datetime.datetime
    try:
        moment = float(text)
    except ValueError:
        iso = text.strip()
        if iso[-1:] in ("Z", "z"):
            # Python before 3.11 reads no "Z" for UTC.
            iso = iso[:-1] + "+00:00"
        try:
            moment = datetime.datetime.fromisoformat(iso)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{text!r} is neither an ISO 8601 time (such as 2026-11-29T03:00 or"
                " 2026-11-29T03:00+01:00) nor seconds since the epoch"
            ) from None
    return _checked(lambda: check_sent_before(moment, time.time(), name="--sent-before"))


def _host(text: str) -> str:
    """``--host``: a name or address this machine resolves."""
    if not text.strip():
        raise argparse.ArgumentTypeError(f"{text!r} is blank: give an address such as 127.0.0.1")
    try:
        socket.getaddrinfo(text, None, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        raise argparse.ArgumentTypeError(
            f"{text!r} is neither an address nor a host name this machine resolves: give"
            " 127.0.0.1 to serve this machine only"
        ) from None
    return text


def _port(text: str) -> int:
    """``--port``: a TCP port, 0 for any free one."""
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a TCP port: give a whole number from 1 to 65535, or 0 for any free"
            " one"
        ) from None
    return _checked(lambda: check_port("--port", port))


def _refresh(text: str) -> float:
    """``--refresh``: seconds between two listings, as ``check_refresh`` takes them."""
    seconds = _seconds(text)
    return _checked(lambda: check_refresh("--refresh", seconds))


def default_reason() -> str:
    """``--reason`` when it is not given: who ran the command, and where."""
    try:
        user = getpass.getuser()
    except Exception:  # It raises whatever the OS lookups raise.
        user = "unknown user"
    try:
        host = socket.gethostname()
    except OSError:
        host = "unknown host"
    return f"{user}@{host} via dramatiq-abort"


def _parser() -> argparse.ArgumentParser:
    # Subcommands' parsers are of the same class.
    parser = _Parser(
        prog="dramatiq-abort",
        description="Cancel queued and abort running dramatiq messages.",
        epilog="demo needs no server. abort, list and web need the workers' backend:"
        f" --backend URL, or ${URL_VARIABLE}. 'dramatiq-abort COMMAND --help' tells more.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="{demo,abort,list,web}")

    demo = commands.add_parser(
        "demo",
        help="run a worker in this process and abort, cancel and gracefully stop messages",
        description="Run a worker thread in this process and send it messages: one aborted"
        " while it runs, one cancelled while queued, one asked to stop within a grace period;"
        " then list what runs and stop a message by its actor's name. It prints each step and"
        " how long each abort took, and exits with status 1 if a step did not behave as"
        " documented. It runs on an in-memory broker and backend unless --redis is given.",
    )
    demo.set_defaults(command_parser=demo)
    demo.add_argument(
        "--redis",
        type=_redis_url,
        metavar="URL",
        help="run against this Redis instead of in memory, in a key namespace of its own"
        " that is deleted at the end",
    )

    send = commands.add_parser(
        "abort",
        help="send abort requests for message ids, or for messages of an actor or queue",
        description="Record one abort request for every ID, or, given --actor or --queue"
        " instead of IDs, one rule that stops the matching messages sent before --sent-before,"
        " queued, delayed or running. Every argument is checked first: on a bad one nothing is"
        " sent (exit status 2). Exit status 1: a backend error.",
    )
    send.set_defaults(command_parser=send)
    send.add_argument(
        "message_ids",
        metavar="ID",
        nargs="*",
        help="ids of the messages to stop: message.message_id, or the ID column of list",
    )
    send.add_argument(
        "--actor",
        type=_actor,
        metavar="NAME",
        help="instead of IDs: stop the messages of this actor",
    )
    send.add_argument(
        "--queue",
        type=_queue,
        metavar="Q",
        help="instead of IDs, or with --actor: stop the messages of this queue",
    )
    send.add_argument(
        "--sent-before",
        type=_moment,
        metavar="TIME",
        help="with --actor or --queue: stop the messages sent before TIME, ISO 8601 (local"
        " time unless it names a zone) or seconds since the epoch (default: now)",
    )
    _add_backend_arguments(send)
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
        type=_positive_milliseconds,
        default=DEFAULT_ABORT_TTL,
        metavar="MS",
        help="milliseconds the request or rule stays valid for messages that have not started"
        " (default: %(default)s)",
    )
    send.add_argument(
        "--reason",
        type=_reason,
        metavar="TEXT",
        help="why, for the workers' log and the recorded outcome (default: USER@HOST via"
        " dramatiq-abort)",
    )
    send.add_argument(
        "--dry-run",
        action="store_true",
        help="with --actor or --queue: record no rule, only say how many running messages"
        " match now",
    )

    ask = commands.add_parser(
        "list",
        help="list the abortable messages that every worker process runs or holds",
        description="Ask every worker process which abortable messages it runs, and which it"
        " fetched and holds until a thread is free or until their ETA, and wait for"
        " their answers. A worker that does not answer in time is not listed: the last line"
        " says how many answered. Exit status 2: bad arguments; 1: a backend error.",
    )
    ask.set_defaults(command_parser=ask)
    _add_backend_arguments(ask)
    ask.add_argument(
        "--actor",
        type=_actor,
        metavar="NAME",
        help="only messages of this actor",
    )
    ask.add_argument("--queue", type=_queue, metavar="Q", help="only messages of this queue")
    ask.add_argument("--json", action="store_true", help="print one JSON document")
    ask.add_argument("--args", action="store_true", help="show arguments, shortened")
    ask.add_argument(
        "--wait",
        type=_positive_seconds,
        default=LISTING_WAIT,
        metavar="SECONDS",
        help="longest wait for the workers' answers (default: %(default)s)",
    )

    web = commands.add_parser(
        "web",
        help="serve a page of what every worker process runs, with abort buttons if allowed",
        description="Serve one page that lists, as list does, the messages every worker"
        " process runs or holds, and refreshes itself; with --allow-abort it also aborts or"
        " cancels a message, or the messages of an actor or queue, each with a reason. It"
        " listens on this machine only unless --host says otherwise, and every write must"
        " carry the token that only the page has. Exit status 2: bad arguments; 1: a backend"
        " error at start.",
    )
    web.set_defaults(command_parser=web)
    _add_backend_arguments(web)
    web.add_argument(
        "--host",
        type=_host,
        default="127.0.0.1",
        help="the address to listen on; anything but a loopback address lets other machines"
        " see the page (default: %(default)s)",
    )
    web.add_argument(
        "--port",
        type=_port,
        default=8000,
        help="the TCP port to listen on, 0 for any free one (default: %(default)s)",
    )
    web.add_argument(
        "--allow-abort",
        action="store_true",
        help="show abort buttons and accept aborts from the page; without it the page is read-only",
    )
    web.add_argument(
        "--refresh",
        type=_refresh,
        default=DEFAULT_REFRESH,
        metavar="SECONDS",
        help=f"seconds between two listings the page asks for, at least {MIN_REFRESH:g}"
        " (default: %(default)s)",
    )
    return parser


def _add_backend_arguments(parser: argparse.ArgumentParser) -> None:
    """``--backend`` and ``--namespace``: where the workers' backend is."""
    parser.add_argument(
        "--backend",
        "--redis",
        dest="url",
        type=_backend_url,
        metavar="URL",
        default=_default_url(),
        help="the backend the workers listen to, such as redis://host:6379/0 (--redis is the"
        f" same option); required unless ${URL_VARIABLE} is set, which keeps a password out"
        " of the process list",
    )
    parser.add_argument(
        "--namespace",
        type=_namespace,
        metavar="NS",
        help="the namespace of the workers' backend (default: the backend's own)",
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    # argparse takes the IDs of abort only before the first option: the ones
    # after it (abort ID --mode cancel ID) come back as unknown arguments.
    args, unknown = parser.parse_known_args(argv)
    if args.command == "abort" and not any(text.startswith("-") for text in unknown):
        args.message_ids += unknown
    elif unknown:
        args.command_parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    if args.command in ("abort", "list", "web") and not args.url:
        args.command_parser.error(f"--backend URL is required, unless ${URL_VARIABLE} is set")
    if args.command == "abort":
        filtered = args.actor is not None or args.queue is not None
        if filtered == bool(args.message_ids):
            args.command_parser.error(
                "give either message IDs or --actor/--queue, not both"
                if filtered
                else "give message IDs, or --actor and/or --queue"
            )
        if args.sent_before is not None and not filtered:
            args.command_parser.error("--sent-before goes with --actor or --queue")
        if args.dry_run and not filtered:
            args.command_parser.error("--dry-run goes with --actor or --queue")
        if args.reason is None:
            args.reason = default_reason()
        if filtered and args.sent_before is None:
            # Now, read once: the rule and a dry run's count mean the same moment.
            args.sent_before = time.time()
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
    except redis.RedisError as e:
        # The client's words name the host and port, never the password that
        # the URL may hold; a traceback would say no more to an operator.
        print(f"dramatiq-abort: Redis error: {str(e).rstrip('.')}{_redis_hint(e)}", file=sys.stderr)
        return BACKEND_ERROR
    except Exception as e:
        if not _is_postgres_error(e):
            raise
        # libpq's words name the host, port, user and database, never the password.
        first_line = " ".join(str(e).split("\n", 1)[0].split())
        print(
            f"dramatiq-abort: PostgreSQL error: {first_line.rstrip('.')}: check the host, port,"
            f" user, password and database that --backend (or ${URL_VARIABLE}) gives",
            file=sys.stderr,
        )
        return BACKEND_ERROR


def _is_postgres_error(error: Exception) -> bool:
    """Whether ``error`` is psycopg's, without importing psycopg where no
    PostgreSQL backend was built."""
    psycopg = sys.modules.get("psycopg")
    return psycopg is not None and isinstance(error, psycopg.Error)


def _demo(redis_url: str | None) -> int:
    from .demo import main

    return main(redis_url)


def _backend(args: argparse.Namespace) -> EventBackend:
    """The workers' backend that ``--backend`` and ``--namespace`` name."""
    from .backends import from_url

    options = {} if args.namespace is None else {"namespace": args.namespace}
    return from_url(args.url, **options)


def _redis_hint(error: Exception) -> str:
    """What to check after ``error``, for the errors an operator's URL
    causes; nothing for the others, whose words say enough."""
    where = f"--backend (or ${URL_VARIABLE})"
    if isinstance(error, redis.AuthenticationError):
        return f": check the user and password that {where} gives"
    if isinstance(error, (redis.ConnectionError, redis.TimeoutError)):
        return f": check that Redis runs at the host and port that {where} names"
    return ""


def _abort(args: argparse.Namespace) -> int:
    from .middleware import Abortable

    backend = _backend(args)
    middleware = Abortable(backend=backend)
    mode = AbortMode(args.mode)
    if args.message_ids:
        # One call: every id is checked before any is sent.
        middleware.abort_many(args.message_ids, args.ttl, mode, args.timeout, reason=args.reason)
        print(
            f"sent {args.mode} for {len(args.message_ids)} message(s): {_effect(args)}.\n"
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
            f" {when}: {_effect(args)}.\n"
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
        f" ({_answered(listed, LISTING_WAIT)}). Messages still in the broker's queues"
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
    from .middleware import Abortable

    listed = Abortable(backend=_backend(args)).running_messages(
        actor=args.actor, queue=args.queue, args=args.args, timeout=args.wait
    )
    if args.json:
        print(json.dumps(listed.as_json(args.args), indent=2))
        return 0
    if listed.messages:
        print(_table(listed.messages, args.args, time.time()))
    elif listed.answered:
        print("No matching abortable message runs in the worker processes that answered.")
    if listed.expected == 0 and not listed.answered:
        _no_worker_listens(args)
    else:
        print(_answered(listed, args.wait) + ".")
    return 0


def _web(args: argparse.Namespace) -> int:
    from .middleware import Abortable

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


def _answered(listed: Listing, wait: float) -> str:
    """How many worker processes answered, said so that silence is never
    read as nothing running."""
    if listed.expected is None:
        return f"{listed.answered} answered; how many worker processes listen is unknown"
    text = f"{listed.answered} of {listed.expected} worker processes answered"
    missing = listed.expected - listed.answered
    if missing > 0:
        text += f"; {missing} did not within {wait:g} s: what they run is not listed"
    return text


def _effect(args: argparse.Namespace) -> str:
    """What the request or rule sent does to a matching message."""
    if args.mode == AbortMode.CANCEL.value:
        return "a message that has not started will not start; a running one is left alone"
    if args.timeout == math.inf:
        return "a running message is asked to stop and never forced; a queued one will not start"
    if args.timeout:
        return (
            f"a running message has {args.timeout:,} ms to stop before it is interrupted;"
            " a queued one will not start"
        )
    return "a running message is interrupted; a queued one will not start"


def _table(messages: list[RunningMessage], with_args: bool, now: float) -> str:
    """One line per message under a header, in columns."""
    rows = [["ID", "ACTOR", "QUEUE", "STARTED", "WORKER", "ABORT"]]
    if with_args:
        rows[0].append("ARGS")
    for message in messages:
        row = [
            message.message_id,
            message.actor,
            message.queue,
            _started(message, now),
            f"{message.host}:{message.pid}",
            _abort_state(message),
        ]
        if with_args:
            row.append(message.args or "")
        rows.append(row)
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False)).rstrip()
        for row in rows
    )


def _started(message: RunningMessage, now: float) -> str:
    """When ``message`` started; for one held by a worker, what it waits for."""
    if message.started_at is not None:
        return _ago(now - message.started_at)
    if message.state == DELAYED and message.eta is not None:
        return f"delayed, due in {_duration(message.eta - now)}"
    return "waiting for a thread"


def _ago(seconds: float) -> str:
    return _duration(seconds) + " ago"


def _duration(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, seconds = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def _abort_state(message: RunningMessage) -> str:
    if not message.abort_requested:
        return "-"
    if message.grace_left is None:
        state = "requested, interrupting"
    elif message.grace_left == math.inf:
        state = "requested, asked to stop"
    else:
        state = f"requested, {message.grace_left:,.0f} ms of grace left"
    return state if message.reason is None else f"{state} ({message.reason!r})"


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
