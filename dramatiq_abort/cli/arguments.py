"""The ``dramatiq-abort`` command's arguments: its parser, each option's
check of the text typed (built on the Python API's checks, ``checks.py``),
and the checks across options, all before anything is sent."""

from __future__ import annotations

import argparse
import datetime
import getpass
import math
import os
import socket
import time
from collections.abc import Callable, Sequence
from typing import NoReturn, TypeVar

from .. import __version__
from ..backends import backend_name, check_url
from ..checks import (
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
from ..middleware import DEFAULT_ABORT_TTL
from ..mode import AbortMode
from ..sending import LISTING_WAIT
from ..settings import URL_VARIABLE
from ..web import DEFAULT_REFRESH

__all__ = ["BAD_ARGUMENTS", "REDIS_URL_VARIABLE", "default_reason", "parse"]

#: The variable's name before backends other than Redis: still read, after
#: :data:`URL_VARIABLE`.
REDIS_URL_VARIABLE = "DRAMATIQ_ABORT_REDIS_URL"
#: The exit status of bad arguments: nothing was sent.
BAD_ARGUMENTS = 2


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
# text, says what is wrong with text that means nothing (and, in the
# option's own words, with the common slips: a blank, a negative number),
# and leaves the bounds to the check the Python API applies (checks.py),
# named after the option: what passes here passes there, on every backend.

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


def _url_from_environment() -> str | None:
    """The backend URL of the environment, checked as ``--backend`` is, if
    any: the variable that ``Abortable()`` without a backend reads too,
    else the older one. An error names the variable, not the option."""
    for variable in (URL_VARIABLE, REDIS_URL_VARIABLE):
        url = os.environ.get(variable)
        if url:
            try:
                return _backend_url(url)
            except argparse.ArgumentTypeError as e:
                raise argparse.ArgumentTypeError(f"${variable}: {e}") from None
    return None


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
        default=None,
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


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    """The checked arguments of ``argv`` (the command line when ``None``); on a
    bad one, exits with ``BAD_ARGUMENTS`` and a line that names it."""
    parser = _parser()
    # argparse takes the IDs of abort only before the first option: the ones
    # after it (abort ID --mode cancel ID) come back as unknown arguments.
    args, unknown = parser.parse_known_args(argv)
    if args.command == "abort" and not any(text.startswith("-") for text in unknown):
        args.message_ids += unknown
    elif unknown:
        args.command_parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    if args.command in ("abort", "list", "web") and args.url is None:
        try:
            args.url = _url_from_environment()
        except argparse.ArgumentTypeError as e:
            args.command_parser.error(str(e))
        if args.url is None:
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
    return args
