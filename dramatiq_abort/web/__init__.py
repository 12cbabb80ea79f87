"""The ``dramatiq-abort web`` page: one page listing what every worker
process runs, and a small JSON API behind it that aborts, when allowed.
The server (:mod:`.server`), one request's handling (:mod:`.handler`) and
the page's files (``static/``)."""

from ..checks import MAX_REFRESH, MIN_REFRESH
from .handler import SECURITY_HEADERS, TOKEN_HEADER
from .server import DEFAULT_REFRESH, WebServer, serve

__all__ = [
    "DEFAULT_REFRESH",
    "MAX_REFRESH",
    "MIN_REFRESH",
    "SECURITY_HEADERS",
    "TOKEN_HEADER",
    "WebServer",
    "serve",
]
