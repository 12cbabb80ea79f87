"""One request to the ``dramatiq-abort web`` server: the page's files,
the listing and outcomes it reads, and the aborts it asks for, each
checked before anything is written."""

from __future__ import annotations

import hmac
import ipaddress
import json
import logging
import time
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler
from importlib import resources
from typing import TYPE_CHECKING, Any
from urllib.parse import SplitResult, parse_qs, urlsplit

from ..checks import check_message_id, check_mode, check_name, check_reason
from ..listing import Listing
from ..mode import AbortMode

if TYPE_CHECKING:
    from .server import WebServer

__all__ = [
    "ALLOWED_METHODS",
    "FILES",
    "MAX_BODY",
    "READ_ONLY",
    "SECURITY_HEADERS",
    "STATIC",
    "TOKEN_HEADER",
    "Handler",
    "Refused",
    "static_file",
]

#: Largest request body read, in bytes: a reason of ``MAX_REASON_LENGTH``
#: characters and two names fit many times over.
MAX_BODY = 16_384
#: The header in which the page sends the server's token with every write.
#: A custom header also makes a browser ask before sending it to another
#: origin, which this server never allows.
TOKEN_HEADER = "X-Abort-Token"
#: Where the page, its script and its style are, inside the package.
STATIC = "static"
#: The files the server gives, by path, with their content type.
FILES = {
    "/": ("web.html", "text/html; charset=utf-8"),
    "/web.js": ("web.js", "text/javascript; charset=utf-8"),
    "/web.css": ("web.css", "text/css; charset=utf-8"),
}
#: Sent with every answer: no script but the server's own runs in the page,
#: no other site may frame it (so that no one is tricked into clicking its
#: buttons), and nothing is cached.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self';"
    " img-src 'self'; connect-src 'self'; frame-ancestors 'none'; form-action 'none';"
    " base-uri 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
#: The methods the server answers: HEAD as GET, without the body, as HTTP
#: requires of every server; it asks the workers as GET does, no more.
ALLOWED_METHODS = "GET, HEAD, POST"
#: What a write answers when the server was started without ``--allow-abort``.
READ_ONLY = (
    "this server is read-only: start it with 'dramatiq-abort web --allow-abort' to abort"
    " from the page"
)

#: The server's logger, under the name it has had since 2.0.
logger = logging.getLogger("dramatiq_abort.web")


class Refused(Exception):
    """A request answered with an error: ``status``, and a JSON body with
    the sentence ``error`` and, for a bad value, the ``field`` it was given in."""

    def __init__(self, status: HTTPStatus, error: str, field: str | None = None) -> None:
        super().__init__(error)
        self.status = status
        self.error = error
        self.field = field


def static_file(name: str) -> bytes:
    """The file ``static/<name>`` of the package."""
    return (resources.files(__package__) / STATIC / name).read_bytes()


class Handler(BaseHTTPRequestHandler):
    """One request to a :class:`WebServer`."""

    server: WebServer
    #: Seconds a connection may stay silent: a browser opens some ahead of
    #: need, and each holds a thread.
    timeout = 60

    def version_string(self) -> str:
        # Neither this package's version nor Python's: nothing for a probe to match.
        return "dramatiq-abort"

    def do_GET(self) -> None:
        self._answer(self._get)

    def do_HEAD(self) -> None:
        self._answer(self._get)

    def do_POST(self) -> None:
        self._answer(self._post)

    def _not_allowed(self) -> None:
        self._answer(self._refuse_method)

    # The other methods of HTTP: refused in JSON, with the headers of every
    # answer; a method HTTP does not define gets send_error()'s 501.
    do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_TRACE = do_CONNECT = _not_allowed

    def _refuse_method(self) -> tuple[bytes, str]:
        raise Refused(
            HTTPStatus.METHOD_NOT_ALLOWED,
            f"{self.command} is not answered here: the page reads with GET and aborts with POST",
        )

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """The standard library's errors (a request line or header it cannot
        read, a method HTTP does not define) in JSON, with the headers of
        every answer, rather than its HTML page without them."""
        error = message or HTTPStatus(code).phrase
        # What follows a request that could not be read cannot be either.
        self._send(
            HTTPStatus(code), json.dumps({"error": error}).encode(), "application/json", close=True
        )

    def log_message(self, format: str, *args: Any) -> None:
        # Every refresh is a request: kept out of the operator's log.
        logger.debug("%s %s", self.address_string(), format % args)

    def _answer(self, handle: Callable[[], tuple[bytes, str]]) -> None:
        try:
            self._check_host()
            body, content_type = handle()
            status = HTTPStatus.OK
        except Refused as e:
            status, content_type = e.status, "application/json"
            error: dict[str, Any] = {"error": e.error}
            if e.field is not None:
                error["field"] = e.field
            body = json.dumps(error).encode()
        except Exception:
            # A defect of ours: its traceback in the server's log, and an
            # answer with the headers of every answer rather than none.
            logger.exception("The page failed to answer %s %.200r.", self.command, self.path)
            status, content_type = HTTPStatus.INTERNAL_SERVER_ERROR, "application/json"
            body = json.dumps({"error": "the server failed to answer; see its log"}).encode()
        self._send(status, body, content_type)

    def _parts(self) -> SplitResult:
        """The request's path, split; a path that cannot be split is refused."""
        try:
            return urlsplit(self.path)
        except ValueError:
            raise Refused(
                HTTPStatus.BAD_REQUEST, f"the path {self.path!r:.100} cannot be parsed"
            ) from None

    def _send(
        self, status: HTTPStatus, body: bytes, content_type: str, *, close: bool = False
    ) -> None:
        """Answer ``status`` with ``body`` (none to a HEAD) and the headers of
        every answer; with ``close``, close the connection after it."""
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in SECURITY_HEADERS.items():
            self.send_header(name, value)
        if status == HTTPStatus.METHOD_NOT_ALLOWED:
            self.send_header("Allow", ALLOWED_METHODS)
        if close:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _check_host(self) -> None:
        """Refuse a request whose Host header names this server by a name
        it was not given: a page of another site whose name was made to
        point here (DNS rebinding) would otherwise read and write as the
        server's own page."""
        given = self.headers.get("Host", "")
        try:
            name = urlsplit(f"//{given}").hostname or ""
        except ValueError:
            name = ""
        try:
            ipaddress.ip_address(name)
            return
        except ValueError:
            pass
        if name not in self.server.names:
            raise Refused(
                HTTPStatus.FORBIDDEN,
                f"the Host header {given!r:.100} names none of this server's addresses: open"
                f" the page at {self.server.url}",
            )

    def _get(self) -> tuple[bytes, str]:
        parts = self._parts()
        if parts.path in FILES:
            name, content_type = FILES[parts.path]
            return self.server.page() if name == "web.html" else static_file(name), content_type
        if parts.path == "/api/messages":
            return _json(self._listing())
        if parts.path == "/api/outcome":
            given = parse_qs(parts.query, keep_blank_values=True).get("message_id", [None])
            message_id = _checked("message_id", check_message_id, given[-1])
            return _json(self._outcome(message_id))
        raise Refused(HTTPStatus.NOT_FOUND, f"nothing at {parts.path!r:.100}")

    def _listing(self) -> dict[str, Any]:
        listed: Listing = self._backend_call(
            "list what runs",
            lambda: self.server.middleware.running_messages(timeout=self.server.wait),
        )
        listing = listed.as_json()
        listing.update(complete=listed.complete, now=time.time(), wait=self.server.wait)
        return listing

    def _outcome(self, message_id: str) -> dict[str, Any]:
        middleware = self.server.middleware

        def read() -> dict[str, Any]:
            outcome = middleware.outcome(message_id)
            return {
                "message_id": message_id,
                "outcome": None if outcome is None else outcome.value,
                "reason": None if outcome is None else middleware.outcome_reason(message_id),
            }

        outcome: dict[str, Any] = self._backend_call("read an outcome", read)
        return outcome

    def _post(self) -> tuple[bytes, str]:
        path = self._parts().path
        write = {"/api/abort": self._abort, "/api/abort-where": self._abort_where}.get(path)
        if write is None:
            raise Refused(HTTPStatus.NOT_FOUND, f"nothing at {path!r:.100}")
        if not self.server.allow_abort:
            raise Refused(HTTPStatus.FORBIDDEN, READ_ONLY)
        self._check_origin()
        return _json(write(self._body()))

    def _abort(self, given: dict[str, Any]) -> dict[str, Any]:
        """An abort request for one message."""
        _no_other_fields(given, {"message_id", "mode", "reason"})
        message_id = _checked("message_id", check_message_id, given.get("message_id"))
        mode, reason = _mode_and_reason(given)
        middleware = self.server.middleware
        self._backend_call(
            "send the abort", lambda: middleware.abort(message_id, mode=mode, reason=reason)
        )
        logger.info(
            "Sent %s for message %r from the page (reason: %r).", mode.value, message_id, reason
        )
        return {"message_id": message_id, "mode": mode.value, "reason": reason}

    def _abort_where(self, given: dict[str, Any]) -> dict[str, Any]:
        """A rule for the messages of an actor, a queue or both, sent until now."""
        _no_other_fields(given, {"actor", "queue", "mode", "reason"})
        actor = _checked("actor", lambda value: check_name("actor", value), given.get("actor"))
        queue = _checked("queue", lambda value: check_name("queue", value), given.get("queue"))
        if actor is None and queue is None:
            raise Refused(
                HTTPStatus.BAD_REQUEST,
                "give actor or queue (or both): a rule without either would stop every message",
                "actor",
            )
        mode, reason = _mode_and_reason(given)
        middleware = self.server.middleware
        rule_id = self._backend_call(
            "record the rule",
            lambda: middleware.abort_where(actor=actor, queue=queue, mode=mode, reason=reason),
        )
        logger.info(
            "Recorded rule %s from the page: %s the messages of actor %r, queue %r (reason: %r).",
            rule_id,
            mode.value,
            actor,
            queue,
            reason,
        )
        return {
            "rule_id": rule_id,
            "actor": actor,
            "queue": queue,
            "mode": mode.value,
            "reason": reason,
        }

    def _check_origin(self) -> None:
        """Refuse a write that lacks the token, or that a page of another
        origin sent."""
        origin = self.headers.get("Origin")
        host = self.headers.get("Host", "")
        if origin is None or origin.lower() not in (
            f"http://{host}".lower(),
            f"https://{host}".lower(),
        ):
            raise Refused(
                HTTPStatus.FORBIDDEN,
                f"the request comes from origin {origin!r:.100}, not from this server's page:"
                " abort from the page itself",
            )
        token = self.headers.get(TOKEN_HEADER, "")
        if not hmac.compare_digest(token.encode(), self.server.token.encode()):
            raise Refused(
                HTTPStatus.FORBIDDEN,
                f"the request lacks this server's token ({TOKEN_HEADER}): abort from the page,"
                " and reload it if the server was restarted",
            )

    def _body(self) -> dict[str, Any]:
        """The request's JSON object."""
        content_type = self.headers.get("Content-Type", "")
        if content_type.split(";")[0].strip().lower() != "application/json":
            raise Refused(
                HTTPStatus.UNSUPPORTED_MEDIA_TYPE,
                f"the body must be application/json, not {content_type!r:.100}",
            )
        try:
            length = int(self.headers.get("Content-Length", ""))
        except ValueError:
            raise Refused(
                HTTPStatus.LENGTH_REQUIRED,
                "give the body's Content-Length as a number of bytes, not"
                f" {self.headers.get('Content-Length')!r:.40}",
            ) from None
        if not 0 <= length <= MAX_BODY:
            raise Refused(
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                f"the body is {length:,} bytes: at most {MAX_BODY:,} are read",
            )
        raw = self.rfile.read(length)
        try:
            given = json.loads(raw)
        except ValueError as e:
            raise Refused(
                HTTPStatus.BAD_REQUEST, f"the body is not JSON ({e}): {raw[:100]!r}"
            ) from None
        except RecursionError:
            # Arrays or objects nested a thousand deep, which no page sends.
            raise Refused(
                HTTPStatus.BAD_REQUEST,
                f"the body nests too deep to be read: send a flat JSON object, not {raw[:40]!r}...",
            ) from None
        if not isinstance(given, dict):
            raise Refused(
                HTTPStatus.BAD_REQUEST, f"the body must be a JSON object, not {given!r:.100}"
            )
        return given

    def _backend_call(self, what: str, call: Callable[[], Any]) -> Any:
        """``call()``, whose failure is answered in one sentence and logged
        in one line, its traceback at DEBUG."""
        try:
            return call()
        except NotImplementedError as e:
            raise Refused(HTTPStatus.NOT_IMPLEMENTED, str(e)) from None
        except Exception as e:
            # The details (host, port, user) stay in the server's log: the
            # page, which other machines may reach, gets the error's kind.
            logger.warning("Failed to %s (%s: %.200s).", what, type(e).__name__, e)
            logger.debug("The backend failed with:", exc_info=e)
            raise Refused(
                HTTPStatus.BAD_GATEWAY,
                f"failed to {what}: {type(e).__name__}; the server's log says more",
            ) from None


def _json(value: Any) -> tuple[bytes, str]:
    return json.dumps(value).encode(), "application/json"


def _checked(field: str, check: Callable[[Any], Any], value: object) -> Any:
    """``check(value)``, or a 400 naming ``field`` with the check's sentence,
    which shows the value."""
    try:
        return check(value)
    except (TypeError, ValueError) as e:
        raise Refused(HTTPStatus.BAD_REQUEST, str(e), field) from None


def _no_other_fields(given: dict[str, Any], known: set[str]) -> None:
    unknown = sorted(set(given) - known)
    if unknown:
        raise Refused(
            HTTPStatus.BAD_REQUEST,
            f"unknown field {unknown[0]!r:.100}: give only {', '.join(sorted(known))}",
            unknown[0],
        )


def _mode_and_reason(given: dict[str, Any]) -> tuple[AbortMode, str]:
    """The checked mode (``abort`` when not given) and reason (required)."""
    mode = _checked("mode", check_mode, given.get("mode", "abort"))
    reason = _checked("reason", check_reason, given.get("reason"))
    if reason is None:
        raise Refused(
            HTTPStatus.BAD_REQUEST,
            "reason is required: say why, for the workers' log and the recorded outcome",
            "reason",
        )
    return mode, reason
