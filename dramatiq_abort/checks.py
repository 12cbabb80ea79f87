"""Checks of the arguments given by callers: each returns the value it
accepts, or raises ``TypeError`` or ``ValueError`` saying what is wrong."""

from __future__ import annotations

import datetime
import math
from collections.abc import Mapping
from typing import Literal, overload
from urllib.parse import unquote, urlsplit

from .mode import AbortMode

__all__ = [
    "CLOCK_SKEW",
    "EXAMPLE_POSTGRES_URL",
    "EXAMPLE_REDIS_URL",
    "MAX_MARK",
    "MAX_MARKS",
    "MAX_MESSAGE_ID_LENGTH",
    "MAX_MILLISECONDS",
    "MAX_MOMENT",
    "MAX_NAME_LENGTH",
    "MAX_REASON_LENGTH",
    "MAX_REFRESH",
    "MAX_SECONDS",
    "MIN_MARK",
    "MIN_REFRESH",
    "RESERVED_MARKS",
    "check_abort_timeout",
    "check_bool",
    "check_marks",
    "check_message_id",
    "check_milliseconds",
    "check_mode",
    "check_moment",
    "check_name",
    "check_port",
    "check_postgres_url",
    "check_reason",
    "check_redis_url",
    "check_refresh",
    "check_seconds",
    "check_sent_before",
    "check_text",
    "shown_url",
]

#: Longest message id accepted, in characters. dramatiq's ids are UUIDs (36
#: characters); 255 leaves room for ids of other schemes (prefixed, ULIDs,
#: Celery task ids) and fits a ``VARCHAR(255)`` column, while a hostile id
#: cannot make every abort write and push megabytes to each worker.
MAX_MESSAGE_ID_LENGTH = 255


def check_message_id(message_id: object) -> str:
    """Return ``message_id`` when it can name a message, else raise."""
    if not isinstance(message_id, str):
        raise TypeError(f"message_id must be a str, not {message_id!r:.100}")
    if not message_id:
        raise ValueError(f"message_id must not be empty: {message_id!r}")
    return _check_length("message_id", message_id, MAX_MESSAGE_ID_LENGTH)


def _check_length(name: str, text: str, limit: int) -> str:
    """Return ``text`` when it is at most ``limit`` characters and every
    backend stores it (see :func:`check_text`), else raise naming ``name``
    and showing its start."""
    if len(text) > limit:
        raise ValueError(
            f"{name} must be at most {limit:,} characters, not {len(text):,}: {text[:40]!r}..."
        )
    return check_text(name, text)


def check_text(name: str, text: str) -> str:
    """Return ``text`` when every backend stores it, else raise naming
    ``name``: PostgreSQL's text holds no NUL character, and neither Redis's
    client nor PostgreSQL's encodes a lone surrogate (what Python makes of
    bytes that are not UTF-8, in a command line's arguments for one)."""
    if "\x00" in text:
        bad = "a NUL character ('\\x00')"
    else:
        try:
            text.encode()
            return text
        except UnicodeEncodeError as e:
            bad = f"the lone surrogate {text[e.start]!r} (from bytes that are not UTF-8)"
    shown = f"{text[:40]!r}" + ("..." if len(text) > 40 else "")
    raise ValueError(f"{name} holds {bad}, which no backend stores: {shown}; remove it")


#: The Redis URL that errors give as an example.
EXAMPLE_REDIS_URL = "redis://localhost:6379/0"


def check_redis_url(url: object) -> str:
    """Return ``url`` when it names a Redis, else raise. Its error never
    repeats the URL, which may hold a password.

    redis-py reads a path that is not a number as no database and connects
    to database 0, where the workers may not listen: such a path is refused.
    """
    example = f"for example {EXAMPLE_REDIS_URL}"
    if not isinstance(url, str):
        # Not repeated: bytes or a URL-like object may hold a password too.
        raise TypeError(
            f"url must be a Redis URL, a str such as {EXAMPLE_REDIS_URL!r},"
            f" not a {type(url).__name__}"
        )
    try:
        parts = urlsplit(url)
    except ValueError:
        raise ValueError(
            f"the URL cannot be parsed: write it as"
            f" redis://[USER:PASSWORD@]HOST:PORT/DATABASE, {example}"
        ) from None
    if parts.scheme not in ("redis", "rediss", "unix"):
        raise ValueError(
            "url must start with redis://, rediss:// or unix://"
            + (f", not {parts.scheme}://" if parts.scheme else "")
            + f" ({example})"
        )
    database = unquote(parts.path).replace("/", "")
    if parts.scheme != "unix" and database and not database.isdecimal():
        raise ValueError(
            f"the URL's database {database!r} is not a number: end the URL with the"
            f" number of the workers' database, {example}"
        )
    return url


def shown_url(url: str) -> str:
    """``url`` as an error may show it: its password, and its query string,
    which may hold one, replaced by ``***``."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return "(a URL that cannot be parsed)"
    netloc = parts.netloc
    if password is not None:
        user, _, host = netloc.rpartition("@")
        netloc = f"{user.partition(':')[0]}:***@{host}"
    if "://" not in url and "@" in url:
        # Not parsed as a URL with a user: what follows a colon may be a password.
        return "(a str holding '@' that is no URL)"
    if "://" in url:
        start = f"{parts.scheme}://{netloc}"
    else:
        start = f"{parts.scheme}:" if parts.scheme else ""
    return repr(start + parts.path + ("?***" if parts.query else ""))


#: The PostgreSQL URL that errors give as an example.
EXAMPLE_POSTGRES_URL = "postgresql://user@localhost:5432/dbname"


def check_postgres_url(url: object) -> str:
    """Return ``url`` when it names a PostgreSQL database, else raise. Its
    error never repeats the URL, which may hold a password."""
    example = f"for example {EXAMPLE_POSTGRES_URL}"
    if not isinstance(url, str):
        raise TypeError(
            f"url must be a PostgreSQL URL, a str such as {EXAMPLE_POSTGRES_URL!r},"
            f" not a {type(url).__name__}"
        )
    try:
        parts = urlsplit(url)
        # libpq takes several hosts, each with its port: urlsplit cannot
        # read those ports, and libpq reads a port only as it connects.
        for host in parts.netloc.rpartition("@")[2].split(","):
            port = "" if host.endswith("]") else host.rpartition(":")[2] if ":" in host else ""
            if port and not port.isdecimal():
                raise ValueError(port)
    except ValueError:
        raise ValueError(
            f"the URL cannot be parsed: write it as"
            f" postgresql://[USER[:PASSWORD]@]HOST[:PORT]/DATABASE, {example}"
        ) from None
    if parts.scheme not in ("postgresql", "postgres"):
        raise ValueError(
            "url must start with postgresql:// or postgres://"
            + (f", not {parts.scheme}://" if parts.scheme else "")
            + f" ({example})"
        )
    return url


def check_mode(mode: object) -> AbortMode:
    """Accept an :class:`AbortMode` or its value (``"abort"``, ``"cancel"``)."""
    if isinstance(mode, AbortMode):
        return mode
    try:
        return AbortMode(mode)
    except ValueError:
        choices = ", ".join(repr(m.value) for m in AbortMode)
        raise ValueError(
            f"unknown abort mode {mode!r}: use AbortMode or one of {choices}"
        ) from None


#: Longest duration accepted, in milliseconds: 100 years. An expiry this
#: far ahead is one every backend stores (PostgreSQL's timestamps end in the
#: year 294276, Redis's expiries at 2**63 ms), and a wait this long one that
#: Python's timers take (``threading.TIMEOUT_MAX`` is about 292 years).
MAX_MILLISECONDS = 100 * 365 * 24 * 3600 * 1000
#: The same, in seconds.
MAX_SECONDS = MAX_MILLISECONDS // 1000


def _shown(value: object) -> str:
    """``value``'s repr, cut to 40 characters: an int may have thousands of digits."""
    shown = repr(value)
    return shown if len(shown) <= 40 else shown[:40] + "..."


def check_milliseconds(
    name: str, value: object, *, positive: bool = False, instead: str = ""
) -> int:
    """Return ``value`` as a whole number of milliseconds, at most
    :data:`MAX_MILLISECONDS`, else raise naming ``name``; ``instead`` is
    what the error suggests for a longer one."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number of milliseconds, not {value!r:.100}")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{name} must be finite, not {value!r}")
    if value < 0 or (positive and value == 0):
        bound = "greater than 0" if positive else "0 or more"
        raise ValueError(f"{name} must be {bound}, not {value!r}")
    if value > MAX_MILLISECONDS:
        raise ValueError(
            f"{name} must be at most {MAX_MILLISECONDS:,} ms (100 years), not {_shown(value)}"
            f"{instead}"
        )
    return int(value)


@overload
def check_seconds(name: str, value: object, *, forever: Literal[False] = False) -> float: ...


@overload
def check_seconds(name: str, value: object, *, forever: bool) -> float | None: ...


def check_seconds(name: str, value: object, *, forever: bool = False) -> float | None:
    """Return ``value`` as seconds, else raise naming ``name``; with
    ``forever``, ``None`` and ``math.inf`` mean no limit (``None``)."""
    if forever and (value is None or (isinstance(value, float) and value == math.inf)):
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number of seconds, not {value!r:.100}")
    if (isinstance(value, float) and not math.isfinite(value)) or value < 0:
        bound = "0 or more, or None for no limit" if forever else "finite and 0 or more"
        raise ValueError(f"{name} must be {bound}, not {value!r}")
    if value > MAX_SECONDS:
        raise ValueError(
            f"{name} must be at most {MAX_SECONDS:,} s (100 years), not {_shown(value)}"
            + ("; give None for no limit" if forever else "")
        )
    return float(value)


#: Shortest refresh of the web page accepted, in seconds: each listing asks
#: every worker process.
MIN_REFRESH = 1.0
#: Longest refresh accepted, a day: a browser fires a timer of more than
#: 2**31 - 1 ms (24.8 days) at once, and would ask for listings without pause.
MAX_REFRESH = 86_400.0


def check_refresh(name: str, value: object) -> float:
    """Return ``value``, the web page's seconds between two listings, when
    it is from :data:`MIN_REFRESH` to :data:`MAX_REFRESH`, else raise naming ``name``."""
    seconds = check_seconds(name, value)
    if seconds < MIN_REFRESH:
        raise ValueError(
            f"{name} must be at least {MIN_REFRESH:g} s, not {value!r}: each refresh asks"
            " every worker process"
        )
    if seconds > MAX_REFRESH:
        raise ValueError(
            f"{name} must be at most {MAX_REFRESH:,g} s (a day), not {value!r}: reload the"
            " page to see it anew"
        )
    return seconds


def check_port(name: str, value: object) -> int:
    """Return ``value`` when it is a TCP port (0: any free one), else raise naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 65535:
        # getaddrinfo() would take 70000 for 4464.
        raise ValueError(f"{name} must be a TCP port from 0 (any free one) to 65535, not {value!r}")
    return value


def check_bool(name: str, value: object) -> bool:
    """Return ``value`` when it is a bool, else raise naming ``name``: a
    string such as ``"false"`` would otherwise count as true."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, not {value!r:.100}")
    return value


def check_abort_timeout(value: object) -> float:
    """Milliseconds of grace, or ``math.inf``: ask the message to stop, never force it."""
    if isinstance(value, float) and value == math.inf:
        return value
    return check_milliseconds(
        "abort_timeout", value, instead="; give math.inf to ask the message to stop, never force it"
    )


#: Longest reason accepted, in characters: room for a sentence and a ticket
#: link, while every worker's log line and every recorded outcome stay short.
MAX_REASON_LENGTH = 1000


def check_reason(reason: object, name: str = "reason") -> str | None:
    """Return ``reason`` stripped of surrounding white space, or ``None``
    when none is given; else raise naming ``name``."""
    if reason is None:
        return None
    if not isinstance(reason, str):
        raise TypeError(f"{name} must be a str or None, not {reason!r:.100}")
    stripped = reason.strip()
    if not stripped:
        raise ValueError(f"{name} must not be empty: {reason!r:.100}; pass None for no reason")
    return _check_length(name, stripped, MAX_REASON_LENGTH)


#: Seconds a ``sent_before`` may lie in the future: the skew between the
#: clocks of two hosts, or of a caller that computed ``now`` a moment ago.
CLOCK_SKEW = 1.0


#: Latest moment accepted, in seconds since the epoch: the end of the year
#: 9999, the last that ``datetime`` represents.
MAX_MOMENT = 253_402_300_800


def check_moment(name: str, value: object) -> float:
    """Return ``value``, a ``datetime`` (with no time zone: local time, as
    ``datetime.timestamp()`` takes it) or seconds since the epoch, as
    seconds since the epoch, from 0 to :data:`MAX_MOMENT`; else raise
    naming ``name``."""
    if isinstance(value, datetime.datetime):
        try:
            seconds = value.timestamp()
        except (OverflowError, ValueError, OSError):
            # Such as datetime.min, whose local time falls before the year 1.
            seconds = -1.0
        if not 0 <= seconds <= MAX_MOMENT:
            raise ValueError(f"{name} must be a datetime between 1970 and 9999, not {value!r:.100}")
        return seconds
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a datetime or seconds since the epoch, not {value!r:.100}")
    if not 0 <= value <= MAX_MOMENT:
        # NaN included.
        raise ValueError(
            f"{name} must be a finite number of seconds since the epoch, from 0 (1970) to"
            f" {MAX_MOMENT:,} (the end of 9999), not {_shown(value)}"
        )
    return float(value)


def check_sent_before(sent_before: object, now: float, name: str = "sent_before") -> float:
    """Return ``sent_before`` as seconds since the epoch, ``now`` (seconds
    since the epoch) when it is ``None``; else raise.

    It is read as :func:`check_moment` reads it. A time more than :data:`CLOCK_SKEW`
    seconds after ``now`` is refused: messages not sent yet cannot match.
    """
    if sent_before is None:
        return now
    seconds = check_moment(name, sent_before)
    if seconds > now + CLOCK_SKEW:
        raise ValueError(
            f"{name} must not be in the future: {sent_before!r} is"
            f" {seconds - now:,.1f} s in the future, and no message was sent after now; omit"
            " it to mean now"
        )
    return seconds


#: Longest actor or queue name accepted in a rule, in characters: the
#: bound of ids, for the same reasons.
MAX_NAME_LENGTH = MAX_MESSAGE_ID_LENGTH


def check_name(name: str, value: object) -> str | None:
    """Return ``value`` when it can name an actor or a queue, ``None`` when
    it is ``None``; else raise naming ``name``."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str or None, not {value!r:.100}")
    if not value.strip():
        raise ValueError(f"{name} must not be empty: {value!r}")
    return _check_length(name, value, MAX_NAME_LENGTH)


#: Most marks one request carries (see :func:`check_marks`).
MAX_MARKS = 16
#: The parameters of a request that :func:`check_marks` keeps for the
#: middleware itself.
RESERVED_MARKS = frozenset({"abort_timeout", "reason"})
#: The range of an int mark: a signed 64-bit integer, which every reader of
#: the events' JSON and every SQL column takes.
MIN_MARK, MAX_MARK = -(2**63), 2**63 - 1


def check_marks(marks: object) -> dict[str, bool | int | str] | None:
    """Return ``marks`` (a request's extra parameters, see
    ``Abortable.abort_many``) when each is a name of its own with a bool,
    int or str value, else raise."""
    if marks is None:
        return None
    if not isinstance(marks, Mapping):
        raise TypeError(f"marks must be a dict of names to values, not {marks!r:.100}")
    if len(marks) > MAX_MARKS:
        # Every event of a request repeats them, and each is pushed to every worker.
        raise ValueError(f"marks must be at most {MAX_MARKS}, not {len(marks):,}")
    checked: dict[str, bool | int | str] = {}
    for name, value in marks.items():
        if not isinstance(name, str) or not name or name in RESERVED_MARKS:
            raise ValueError(
                f"marks cannot use the name {name!r:.100}: give names of your own, other than"
                f" {', '.join(sorted(RESERVED_MARKS))}"
            )
        if not isinstance(value, (bool, int, str)):
            raise TypeError(f"marks[{name!r}] must be a bool, int or str, not {value!r:.100}")
        _check_length("a name of marks", name, MAX_NAME_LENGTH)
        if isinstance(value, str):
            _check_length(f"marks[{name!r}]", value, MAX_REASON_LENGTH)
        elif not MIN_MARK <= value <= MAX_MARK:
            raise ValueError(
                f"marks[{name!r}] must be an int from -2**63 to 2**63 - 1, not {_shown(value)}:"
                " give a larger number as a str"
            )
        checked[name] = value
    return checked
