"""The web page's server run in the test's own process, and plain requests to it."""

from __future__ import annotations

import contextlib
import http.client
import json
import threading
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

from dramatiq_abort import Abortable, EventBackend
from dramatiq_abort.web import WebServer

from .waiting import WAIT


@contextlib.contextmanager
def serving(
    backend: EventBackend, *, allow_abort: bool, refresh: float = 60
) -> Iterator[WebServer]:
    """A WebServer on a free loopback port, serving in a thread until the block ends."""
    server = WebServer(
        Abortable(backend=backend), "127.0.0.1", 0, allow_abort=allow_abort, refresh=refresh
    )
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(WAIT)


def exchange(
    server: WebServer,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[http.client.HTTPResponse, str]:
    """The response to one request to ``server``, and its body's text."""
    host, port = urlsplit(server.url).hostname or "", urlsplit(server.url).port or 80
    connection = http.client.HTTPConnection(host, port, timeout=WAIT)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response, response.read().decode()
    finally:
        connection.close()


def request(
    server: WebServer,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, Any]:
    """The status and the decoded JSON (or text) of one request to ``server``."""
    response, text = exchange(server, method, path, body, headers)
    if response.getheader("Content-Type") == "application/json":
        return response.status, json.loads(text)
    return response.status, text
