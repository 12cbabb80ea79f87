"""The ``dramatiq-abort web`` server: where it listens, who may reach it,
and the page it gives with what the page's script needs to know."""

from __future__ import annotations

import html
import ipaddress
import json
import logging
import secrets
import socket
from http.server import ThreadingHTTPServer
from typing import Any

from ..checks import check_bool, check_port, check_refresh, check_seconds
from ..middleware import Abortable
from ..sending import LISTING_WAIT
from .handler import Handler, static_file

__all__ = ["DEFAULT_REFRESH", "WebServer", "serve"]

#: Seconds between two listings the page asks for, unless told otherwise.
DEFAULT_REFRESH = 5.0
#: The name under which the server and its handler log since 2.0.
logger = logging.getLogger("dramatiq_abort.web")


class WebServer(ThreadingHTTPServer):
    """Serves the page and its API for ``middleware`` at ``host`` and
    ``port`` (0: a free port; :attr:`url` says which).

    :param allow_abort: Whether the page may abort; without it every write
        answers 403.
    :param refresh: Seconds between two listings the page asks for.
    :param wait: Longest wait, in seconds, for the workers' answers to one listing.
    :raises ValueError: when the address cannot be listened on, saying why.
    """

    daemon_threads = True

    def __init__(
        self,
        middleware: Abortable,
        host: str = "127.0.0.1",
        port: int = 8000,
        *,
        allow_abort: bool = False,
        refresh: float = DEFAULT_REFRESH,
        wait: float = LISTING_WAIT,
    ) -> None:
        # Checked before anything listens: a string "false" would allow writes.
        self.allow_abort = check_bool("allow_abort", allow_abort)
        self.refresh = check_refresh("refresh", refresh)
        self.wait = check_seconds("wait", wait)
        check_port("port", port)
        self.middleware = middleware
        #: What every write must carry: given to the page only, never in a cookie,
        #: so that a request another site makes the browser send lacks it.
        self.token = secrets.token_urlsafe(32)
        try:
            family, _, _, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
            self.address_family = family
            super().__init__((str(address[0]), int(address[1])), Handler)
        except OSError as e:
            raise ValueError(
                f"cannot listen on {host!r} port {port}: {e.strerror or e}; give another"
                " --host or --port"
            ) from None
        #: The host names a request may give in its Host header, besides IP
        #: addresses: any other is a name someone else's DNS points here.
        self.names = {"localhost", host.lower()}
        bound = ipaddress.ip_address(str(self.server_address[0]))
        if bound.is_unspecified:
            self.names |= {socket.gethostname().lower(), socket.getfqdn().lower()}
        #: Whether only this machine can reach the server.
        self.loopback = bound.is_loopback

    @property
    def url(self) -> str:
        """Where the page is."""
        address, port = self.server_address[:2]
        shown = str(address)
        if ipaddress.ip_address(shown).is_unspecified:
            shown = socket.gethostname()
        elif ":" in shown:
            shown = f"[{shown}]"
        return f"http://{shown}:{port}/"

    def page(self) -> bytes:
        """The page, with what its script needs to know: the token only
        when it may abort, so that a read-only page gives away nothing that writes."""
        config: dict[str, Any] = {"allowAbort": self.allow_abort, "refresh": self.refresh}
        if self.allow_abort:
            config["token"] = self.token
        text = static_file("web.html").decode()
        return text.replace("{{config}}", html.escape(json.dumps(config), quote=True)).encode()


def serve(
    middleware: Abortable,
    host: str = "127.0.0.1",
    port: int = 8000,
    *,
    allow_abort: bool = False,
    refresh: float = DEFAULT_REFRESH,
) -> None:
    """Serve the page for ``middleware`` until Ctrl-C; see :class:`WebServer`."""
    server = WebServer(middleware, host, port, allow_abort=allow_abort, refresh=refresh)
    with server:
        if not server.loopback:
            logger.warning(
                "Listening on %s, beyond this machine: whoever reaches it sees what runs%s.",
                host,
                ", and can abort it" if allow_abort else "",
            )
        logger.info(
            "Serving the running messages at %s (%s); Ctrl-C stops.",
            server.url,
            "aborts allowed" if allow_abort else "read-only: --allow-abort to abort from the page",
        )
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            logger.info("Stopped.")
