"""``dramatiq-abort web``: its page driven in a headless Chromium against a
real worker on Redis, its API's refusals, and the command itself."""

from __future__ import annotations

import http.client
import json
import logging
import math
import os
import queue
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import IO, Any

import dramatiq
import pytest
import redis
from dramatiq.brokers.redis import RedisBroker
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import Select, WebDriverWait

from dramatiq_abort import Abort, Abortable, Event, EventBackend
from dramatiq_abort.backends import RedisBackend, StubBackend
from dramatiq_abort.cli import REDIS_URL_VARIABLE
from dramatiq_abort.settings import URL_VARIABLE
from dramatiq_abort.web import SECURITY_HEADERS, TOKEN_HEADER, WebServer
from dramatiq_abort.wire import is_inquiry

from ..support import (
    ROOT,
    WAIT,
    assert_nothing_written,
    assert_refused,
    free_port,
    recorded,
    require_mark,
    status_of,
    unavailable,
    wait_until,
)
from ..support.web import exchange, request, serving

pytestmark = pytest.mark.timeout(90)

CHROMEDRIVER = "/usr/bin/chromedriver"
#: A Chromium that needs no display, no sandbox (tests run as root) and
#: reaches nothing but the pages the test opens.
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
REASON = "bad input file; ticket OPS-7"


@pytest.fixture
def browser(tmp_path: Any) -> Iterator[WebDriver]:
    """A headless Chromium of the system's, driven by its chromedriver, with
    a profile of its own."""
    require_mark("browser")
    chromium = shutil.which("chromium")
    if chromium is None or not os.access(CHROMEDRIVER, os.X_OK):
        unavailable("Chromium or its driver is missing: apt-get install chromium chromium-driver")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in [*CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'chromium'}"]:
        options.add_argument(flag)
    # The driver's path given: Selenium downloads nothing.
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        driver.set_page_load_timeout(WAIT)
        driver.set_script_timeout(WAIT)
        yield driver
    finally:
        driver.quit()


class Holding:
    """Two actors whose messages run until aborted or released, and what
    they saw, by the name each message was sent with."""

    def __init__(self, broker: RedisBroker) -> None:
        self.release = threading.Event()
        self.started: list[str] = []
        self.aborted: list[str] = []

        def hold(name: str) -> None:
            self.started.append(name)
            try:
                deadline = time.monotonic() + WAIT * 3
                # Short waits: Abort is raised between two of them.
                while not self.release.wait(0.01) and time.monotonic() < deadline:
                    pass
            except Abort:
                self.aborted.append(name)
                raise

        self.export = dramatiq.actor(
            broker=broker, actor_name="export", queue_name="nightly", max_retries=0
        )(hold)
        self.rebuild = dramatiq.actor(
            broker=broker, actor_name="rebuild_index", queue_name="default", max_retries=0
        )(hold)

    def wait_started(self, *names: str) -> None:
        wait_until(lambda: set(names) <= set(self.started), f"{names} started")


@pytest.fixture
def holding(redis_broker: RedisBroker, redis_worker: dramatiq.Worker) -> Iterator[Holding]:
    # Declared after the worker started: it consumes their queues as they are declared.
    held = Holding(redis_broker)
    try:
        yield held
    finally:
        held.release.set()


@pytest.fixture
def backend(redis_client: redis.Redis, namespace: str) -> RedisBackend:
    """The workers' backend, as the command reaches it from another process."""
    return RedisBackend(client=redis_client, namespace=namespace)


def page_headers(server: WebServer) -> dict[str, str]:
    """What the page sends with a write: JSON, its origin and the token."""
    return {
        "Content-Type": "application/json",
        "Origin": server.url.rstrip("/"),
        TOKEN_HEADER: server.token,
    }


def post(server: WebServer, path: str, given: object, **headers: str) -> tuple[int, Any]:
    """POST ``given`` as JSON to ``path`` as the page would, with ``headers`` changed."""
    sent = {**page_headers(server), **headers}
    return request(server, "POST", path, json.dumps(given).encode(), sent)


def sent(backend: RedisBackend) -> list[Event]:
    """The abort requests and rules ``backend`` holds: the listings' inquiries left out."""
    return [event for event in recorded(backend) if not is_inquiry(event)]


def row_of(browser: WebDriver, message_id: str) -> WebElement:
    """The row of ``message_id`` in the page, once it shows."""
    selector = f'tr[data-message-id="{message_id}"]'
    WebDriverWait(browser, WAIT).until(lambda b: b.find_elements(By.CSS_SELECTOR, selector))
    return browser.find_element(By.CSS_SELECTOR, selector)


def outcome_shown(browser: WebDriver, message_id: str) -> WebElement:
    """The outcome of ``message_id`` in the page's log of what it sent, once reported."""
    selector = f'#log li[data-message-id="{message_id}"] .outcome[data-outcome]'
    WebDriverWait(browser, WAIT).until(lambda b: b.find_elements(By.CSS_SELECTOR, selector))
    return browser.find_element(By.CSS_SELECTOR, selector)


@pytest.mark.browser
def test_the_page_lists_a_running_message_and_its_button_aborts_it_with_the_reason_typed(
    browser: WebDriver,
    holding: Holding,
    backend: RedisBackend,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="dramatiq_abort.web")
    message = holding.export.send("first")
    holding.wait_started("first")
    with serving(backend, allow_abort=True) as server:
        browser.get(server.url)
        row = row_of(browser, message.message_id)
        cells = [cell.text for cell in row.find_elements(By.TAG_NAME, "td")]
        worker = f"{socket.gethostname()}:{os.getpid()}"
        assert cells[:3] == [message.message_id, "export", "nightly"]
        assert cells[3].startswith("running for ")
        assert cells[4:6] == [worker, "\u2013"]
        assert browser.find_element(By.ID, "workers").text == worker
        assert "1 of 1 worker processes answered" in browser.find_element(By.ID, "status").text

        button = row.find_element(By.CSS_SELECTOR, "button.stop")
        assert button.text == "Abort"
        # No reason, no abort: the page asks for one and sends nothing.
        button.click()
        assert "Type a reason first" in browser.find_element(By.ID, "error").text
        assert sent(backend) == []

        browser.find_element(By.ID, "reason").send_keys(REASON)
        button.click()
        wait_until(lambda: holding.aborted == ["first"], "the actor sees Abort")
        shown = outcome_shown(browser, message.message_id)
        assert shown.get_attribute("data-outcome") == "aborted"
        assert REASON in shown.text
        # One request in all: the click without a reason sent nothing, even later.
        assert sorted(event.key for event in sent(backend)) == [
            f"abort:{message.message_id}",
            f"cancel:{message.message_id}",
        ]
        # The outcome in, the page lists again at once: the message is gone.
        WebDriverWait(browser, WAIT).until(
            lambda b: not b.find_elements(By.CSS_SELECTOR, "#messages tbody tr")
        )
        assert browser.find_element(By.ID, "empty").is_displayed()
        assert request(server, "GET", f"/api/outcome?message_id={message.message_id}") == (
            200,
            {"message_id": message.message_id, "outcome": "aborted", "reason": REASON},
        )
    # The server says what it sent, once.
    logged = [r for r in caplog.records if r.name == "dramatiq_abort.web"]
    assert [r.getMessage() for r in logged if r.levelno >= logging.INFO] == [
        f"Sent abort for message {message.message_id!r} from the page (reason: {REASON!r})."
    ]


@pytest.mark.browser
def test_the_page_refreshes_on_its_own_and_shows_a_message_sent_after_it_opened(
    browser: WebDriver, holding: Holding, backend: RedisBackend
) -> None:
    with serving(backend, allow_abort=False, refresh=1) as server:
        browser.get(server.url)
        WebDriverWait(browser, WAIT).until(lambda b: b.find_element(By.ID, "empty").is_displayed())
        message = holding.rebuild.send("later")
        row = row_of(browser, message.message_id)
        assert row.find_elements(By.TAG_NAME, "td")[1].text == "rebuild_index"
        WebDriverWait(browser, WAIT).until(
            lambda b: not b.find_element(By.ID, "empty").is_displayed()
        )


@pytest.mark.browser
def test_the_page_shows_a_delayed_message_that_a_worker_holds_and_when_it_is_due(
    browser: WebDriver, holding: Holding, backend: RedisBackend
) -> None:
    delayed = holding.rebuild.send_with_options(args=("later",), delay=600_000)
    with serving(backend, allow_abort=True, refresh=1) as server:
        browser.get(server.url)
        row = row_of(browser, delayed.message_id)
        state = row.find_elements(By.TAG_NAME, "td")[3].text
        assert state.startswith("delayed, due in 9 min") or state == "delayed, due in 10 min 0 s"
        assert row.find_elements(By.TAG_NAME, "td")[2].text == "default"


def test_every_time_point_of_the_page_api_is_in_seconds_since_the_epoch(
    holding: Holding, backend: RedisBackend
) -> None:
    running = holding.export.send("first")
    delayed = holding.rebuild.send_with_options(args=("later",), delay=600_000)
    holding.wait_started("first")
    with serving(backend, allow_abort=False) as server:

        def listed() -> dict[str, Any]:
            status, listing = request(server, "GET", "/api/messages")
            assert status == 200, listing
            return dict(listing)

        wait_until(lambda: len(listed()["messages"]) == 2, "the worker holds the delayed message")
        listing = listed()
    now = time.time()
    assert now - WAIT < listing["now"] <= now
    shown = {message["message_id"]: message for message in listing["messages"]}
    assert shown[running.message_id]["sent_at"] <= shown[running.message_id]["started_at"] <= now
    assert shown[delayed.message_id]["eta"] == delayed.options["eta"] / 1000
    for message in listing["messages"]:
        for name in ("started_at", "sent_at", "eta"):
            # Within the hour: milliseconds, or a time of day, would be far off.
            assert message[name] is None or abs(message[name] - now) < 3600, (name, message)


@pytest.mark.browser
def test_in_cancel_mode_the_page_cancels_a_message_waiting_for_a_thread_before_it_starts(
    browser: WebDriver, holding: Holding, backend: RedisBackend
) -> None:
    names = [f"running {number}" for number in range(4)]
    running = [holding.export.send(name) for name in names]
    holding.wait_started(*names)
    # The worker's four threads are busy: it holds the fifth message.
    waiting = holding.export.send("waiting")
    with serving(backend, allow_abort=True, refresh=1) as server:
        browser.get(server.url)
        row = row_of(browser, waiting.message_id)
        WebDriverWait(browser, WAIT).until(
            lambda b: row.find_elements(By.TAG_NAME, "td")[3].text == "waiting for a thread"
        )
        Select(browser.find_element(By.ID, "mode")).select_by_value("cancel")
        browser.find_element(By.ID, "reason").send_keys(REASON)
        button = row.find_element(By.CSS_SELECTOR, "button.stop")
        assert button.text == "Cancel"
        button.click()
        # A cancel leaves a running message alone.
        row_of(browser, running[0].message_id).find_element(By.CSS_SELECTOR, "button").click()
        log = browser.find_element(By.ID, "log")
        WebDriverWait(browser, WAIT).until(lambda b: log.text.count("cancel sent for") == 2)
        # The worker reads the cancels before the listing's inquiry: in order.
        status, listing = request(server, "GET", "/api/messages")
        assert status == 200
        by_id = {message["message_id"]: message for message in listing["messages"]}
        assert not by_id[running[0].message_id]["abort_requested"]

        holding.release.set()
        shown = outcome_shown(browser, waiting.message_id)
        assert shown.get_attribute("data-outcome") == "cancelled"
        assert REASON in shown.text
    assert "waiting" not in holding.started
    assert holding.aborted == []


@pytest.mark.browser
def test_the_page_stops_the_messages_of_an_actor_and_leaves_the_others(
    browser: WebDriver, holding: Holding, backend: RedisBackend
) -> None:
    first, second = holding.export.send("first"), holding.export.send("second")
    other = holding.rebuild.send("other")
    holding.wait_started("first", "second", "other")
    with serving(backend, allow_abort=True) as server:
        browser.get(server.url)
        for message in (first, second, other):
            row_of(browser, message.message_id)
        browser.find_element(By.ID, "reason").send_keys(REASON)
        browser.find_element(By.ID, "where-actor").send_keys("export")
        browser.find_element(By.ID, "where-submit").click()

        wait_until(lambda: sorted(holding.aborted) == ["first", "second"], "both exports abort")
        for message in (first, second):
            assert outcome_shown(browser, message.message_id).get_attribute("data-outcome") == (
                "aborted"
            )
            status, reported = request(
                server, "GET", f"/api/outcome?message_id={message.message_id}"
            )
            assert (status, reported["outcome"], reported["reason"]) == (200, "aborted", REASON)
        log = browser.find_element(By.ID, "log").text
        assert "abort rule" in log and "actor \u201cexport\u201d" in log
        # The other actor's message runs on, and the page still lists it.
        assert (
            request(server, "GET", f"/api/outcome?message_id={other.message_id}")[1]["outcome"]
            is None
        )
        status, listing = request(server, "GET", "/api/messages")
        assert [m["message_id"] for m in listing["messages"]] == [other.message_id]
        assert holding.aborted.count("other") == 0


@pytest.mark.browser
def test_a_read_only_page_has_no_button_and_a_write_gets_403_saying_how_to_allow_it(
    browser: WebDriver, holding: Holding, backend: RedisBackend
) -> None:
    message = holding.export.send("first")
    holding.wait_started("first")
    with serving(backend, allow_abort=False) as server:
        browser.get(server.url)
        row_of(browser, message.message_id)
        assert browser.find_elements(By.TAG_NAME, "button") == []
        assert "1 of 1 worker processes answered" in browser.find_element(By.ID, "status").text
        assert browser.find_elements(By.ID, "reason") == []
        assert "--allow-abort" in browser.find_element(By.ID, "read-only").text
        assert browser.find_element(By.ID, "access").text == "read-only"

        for path, given in [
            ("/api/abort", {"message_id": message.message_id, "reason": REASON}),
            ("/api/abort-where", {"actor": "export", "reason": REASON}),
        ]:
            status, error = post(server, path, given)
            assert status == 403
            assert "dramatiq-abort web --allow-abort" in error["error"]
    assert sent(backend) == []
    assert holding.aborted == []


@pytest.mark.browser
def test_the_page_says_when_the_listing_fails_and_why(browser: WebDriver) -> None:
    # A Redis where none listens: every listing fails.
    unreachable = RedisBackend.from_url(f"redis://127.0.0.1:{free_port()}/0")
    try:
        with serving(unreachable, allow_abort=False) as server:
            browser.get(server.url)
            WebDriverWait(browser, WAIT).until(
                lambda b: "Listing failed" in b.find_element(By.ID, "status").text
            )
            text = browser.find_element(By.ID, "status").text
            assert "failed to list what runs: ConnectionError" in text
            assert "Trying again in 60 s" in text
            status, error = request(server, "GET", "/api/messages")
            assert status == 502 and "ConnectionError" in error["error"]
    finally:
        unreachable.client.close()


class AnotherSite(BaseHTTPRequestHandler):
    """A page of another origin that posts an abort to the target it is
    given, as a form and as a fetch, the two requests a browser sends to
    another origin without asking."""

    target = ""

    def do_GET(self) -> None:
        body = f"""<!DOCTYPE html><html><body>
<form id="f" method="post" enctype="text/plain" action="{self.target}api/abort">
<input name='{{"message_id": "x", "reason": "csrf", "pad": "' value='"}}'></form>
<script>
fetch("{self.target}api/abort-where", {{method: "POST", mode: "no-cors",
  headers: {{"Content-Type": "text/plain"}},
  body: JSON.stringify({{actor: "export", reason: "csrf"}})}})
  .finally(() => document.getElementById("f").submit());
</script></body></html>""".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.mark.browser
def test_a_write_without_the_token_or_from_another_origin_is_refused_and_aborts_nothing(
    browser: WebDriver,
    holding: Holding,
    backend: RedisBackend,
    caplog: pytest.LogCaptureFixture,
) -> None:
    message = holding.export.send("first")
    holding.wait_started("first")
    given = {"message_id": message.message_id, "reason": REASON}
    with serving(backend, allow_abort=True) as server:
        port = server.server_address[1]
        no_token = {TOKEN_HEADER: ""}
        for headers, says in [
            (no_token, "lacks this server's token"),
            ({TOKEN_HEADER: "guessed"}, "lacks this server's token"),
            ({"Origin": "http://evil.example"}, "origin 'http://evil.example'"),
            ({"Origin": f"http://127.0.0.1:{port + 1}"}, "not from this server's page"),
            # DNS rebinding: another site's name, pointed at this server.
            (
                {"Host": f"evil.example:{port}", "Origin": f"http://evil.example:{port}"},
                "the Host header 'evil.example:",
            ),
        ]:
            status, error = post(server, "/api/abort", given, **headers)
            assert status == 403, headers
            assert says in error["error"], headers
        # Nor can a rebound page read the token off the page.
        status, error = request(server, "GET", "/", headers={"Host": "evil.example"})
        assert status == 403 and server.token not in json.dumps(error)

        # A real browser on another site's page, posting as it may.
        AnotherSite.target = server.url
        # Threads: Chromium opens connections ahead that it may never use.
        other = ThreadingHTTPServer(("127.0.0.1", 0), AnotherSite)
        thread = threading.Thread(target=other.serve_forever, kwargs={"poll_interval": 0.05})
        thread.start()
        try:
            with caplog.at_level(logging.DEBUG, logger="dramatiq_abort.web"):
                browser.get(f"http://127.0.0.1:{other.server_address[1]}/")
                # The form's post leaves the other site for the server's refusal.
                WebDriverWait(browser, WAIT).until(
                    lambda b: "not from this server's page" in b.page_source
                )
                wait_until(
                    lambda: any("POST /api/abort-where" in r.getMessage() for r in caplog.records),
                    "the other site's fetch reaches the server",
                )
        finally:
            other.shutdown()
            other.server_close()
            thread.join(WAIT)
        refused = [r.getMessage() for r in caplog.records if "POST /api/" in r.getMessage()]
        assert len(refused) == 2 and all('" 403 ' in line for line in refused), refused

        status, listing = request(server, "GET", "/api/messages")
        assert [m["message_id"] for m in listing["messages"]] == [message.message_id], listing
        assert not listing["messages"][0]["abort_requested"]
    assert sent(backend) == []
    assert holding.aborted == []


@pytest.mark.parametrize(
    ("path", "body", "content_type", "status", "field", "says"),
    [
        ("/api/abort", {"message_id": "m"}, None, 400, "reason", "reason is required"),
        (
            "/api/abort",
            {"message_id": "m", "reason": "  "},
            None,
            400,
            "reason",
            "reason must not be empty: '  '",
        ),
        (
            "/api/abort",
            {"message_id": "m", "reason": "r" * 1001},
            None,
            400,
            "reason",
            "reason must be at most 1,000 characters, not 1,001: 'rrrr",
        ),
        (
            "/api/abort",
            {"message_id": "m", "reason": "r", "mode": "destroy"},
            None,
            400,
            "mode",
            "unknown abort mode 'destroy'",
        ),
        (
            "/api/abort",
            {"message_id": 42, "reason": "r"},
            None,
            400,
            "message_id",
            "message_id must be a str, not 42",
        ),
        (
            "/api/abort",
            {"message_id": "m", "reason": "r", "timeout": 5},
            None,
            400,
            "timeout",
            "unknown field 'timeout'",
        ),
        ("/api/abort-where", {"reason": "r"}, None, 400, "actor", "give actor or queue"),
        (
            "/api/abort-where",
            {"actor": " ", "reason": "r"},
            None,
            400,
            "actor",
            "actor must not be empty: ' '",
        ),
        (
            "/api/abort-where",
            {"queue": "q" * 300, "reason": "r"},
            None,
            400,
            "queue",
            "queue must be at most 255 characters",
        ),
        ("/api/abort", b"{not json", None, 400, None, "the body is not JSON"),
        ("/api/abort", [1, 2], None, 400, None, "must be a JSON object, not [1, 2]"),
        ("/api/abort", {"message_id": "m", "reason": "r"}, "text/plain", 415, None, "'text/plain'"),
        ("/api/nothing", {}, None, 404, None, "nothing at '/api/nothing'"),
    ],
)
def test_bad_input_is_refused_with_a_json_error_naming_the_value_and_nothing_is_sent(
    backend: RedisBackend,
    path: str,
    body: object,
    content_type: str | None,
    status: int,
    field: str | None,
    says: str,
) -> None:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    with serving(backend, allow_abort=True) as server:
        headers = page_headers(server)
        if content_type is not None:
            headers["Content-Type"] = content_type
        answered, error = request(server, "POST", path, raw, headers)
        assert answered == status
        assert says in error["error"]
        assert error.get("field") == field
        answered, error = request(server, "GET", "/api/outcome?message_id=")
        assert (answered, error["field"]) == (400, "message_id")
        assert "message_id must not be empty: ''" in error["error"]
    assert sent(backend) == []


@pytest.mark.parametrize(
    ("path", "body", "field", "says"),
    [
        ("/api/abort", '{"message_id": "a\\u0000b", "reason": "r"}', "message_id", "a NUL"),
        (
            "/api/abort",
            '{"message_id": "a\\ud800b", "reason": "r"}',
            "message_id",
            "the lone surrogate",
        ),
        ("/api/abort", '{"message_id": "m", "reason": "r\\u0000"}', "reason", "a NUL"),
        ("/api/abort-where", '{"actor": "a\\u0000", "reason": "r"}', "actor", "a NUL"),
        ("/api/abort-where", '{"queue": "q\\udcff", "reason": "r"}', "queue", "the lone surrogate"),
        ("/api/abort-where", '{"actor": "a", "reason": "r\\u0000"}', "reason", "a NUL"),
    ],
)
def test_text_that_a_backend_cannot_store_is_refused_by_the_page_with_400_and_nothing_is_sent(
    event_backend: EventBackend, path: str, body: str, field: str, says: str
) -> None:
    with serving(event_backend, allow_abort=True) as server:
        status, error = request(server, "POST", path, body.encode(), page_headers(server))
        assert (status, error["field"]) == (400, field), error
        assert f"{field} holds {says}" in error["error"]
        # The outcome of such an id: 400 too, never the backend's failure (502).
        status, error = request(server, "GET", "/api/outcome?message_id=a%00b")
        assert (status, error["field"]) == (400, "message_id"), error
    assert_nothing_written(event_backend)


def test_a_body_nested_too_deep_is_refused_in_json_with_400(backend: RedisBackend) -> None:
    with serving(backend, allow_abort=True) as server:
        status, error = request(server, "POST", "/api/abort", b"[" * 16_000, page_headers(server))
    assert status == 400 and "the body nests too deep" in error["error"]
    assert sent(backend) == []


def assert_headers_of_every_answer(response: http.client.HTTPResponse) -> None:
    for name, value in SECURITY_HEADERS.items():
        assert response.getheader(name) == value, name


def test_other_methods_are_refused_in_json_with_the_headers_of_every_answer() -> None:
    with serving(StubBackend(), allow_abort=True) as server:
        for method in ("PUT", "DELETE", "PATCH", "OPTIONS", "TRACE"):
            response, text = exchange(server, method, "/api/abort")
            assert (response.status, response.getheader("Allow")) == (405, "GET, HEAD, POST")
            assert f"{method} is not answered here" in json.loads(text)["error"]
            assert_headers_of_every_answer(response)
        # A method HTTP does not define, and a request the standard library refuses.
        response, text = exchange(server, "BREW", "/")
        assert response.status == 501 and "BREW" in json.loads(text)["error"]
        assert_headers_of_every_answer(response)
        host, port = server.server_address[:2]
        with socket.create_connection((str(host), int(port)), timeout=WAIT) as raw:
            headers = b"".join(b"X-%d: 1\r\n" % n for n in range(101))
            raw.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n" + headers + b"\r\n")
            answer = raw.makefile("rb").read().decode()
        assert answer.startswith("HTTP/1.0 431 ") and "Content-Security-Policy" in answer
        assert json.loads(answer.partition("\r\n\r\n")[2])["error"]
        # A path that cannot be parsed.
        with socket.create_connection((str(host), int(port)), timeout=WAIT) as raw:
            raw.sendall(b"GET http://[x/ HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            answer = raw.makefile("rb").read().decode()
        assert answer.startswith("HTTP/1.0 400 ") and "Content-Security-Policy" in answer
        assert "cannot be parsed" in json.loads(answer.partition("\r\n\r\n")[2])["error"]

        # HEAD: what GET answers, without the body.
        got, page = exchange(server, "GET", "/")
        head, nothing = exchange(server, "HEAD", "/")
        assert (head.status, nothing) == (200, "")
        assert (
            head.getheader("Content-Length")
            == got.getheader("Content-Length")
            == str(len(page.encode()))
        )
        assert_headers_of_every_answer(head)


def test_the_read_only_page_holds_no_token_and_the_page_that_aborts_does() -> None:
    with serving(StubBackend(), allow_abort=False) as server:
        status, page = request(server, "GET", "/")
        assert status == 200 and server.token not in page and "token" not in page
    with serving(StubBackend(), allow_abort=True) as server:
        status, page = request(server, "GET", "/")
        assert status == 200 and server.token in page


def read_lines(stream: IO[str] | None, lines: queue.Queue[str]) -> None:
    for line in stream or ():
        lines.put(line)


def test_the_command_serves_the_page_read_only_and_stops_on_ctrl_c(
    redis_url: str, redis_client: redis.Redis, namespace: str
) -> None:
    port = free_port()
    command = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "dramatiq_abort",
            "web",
            "--port",
            str(port),
            "--backend",
            redis_url,
            "--namespace",
            namespace,
            "--refresh",
            "2",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    # Read in a thread, so that every wait for a line is bounded.
    lines: queue.Queue[str] = queue.Queue()
    reader = threading.Thread(target=read_lines, args=(command.stderr, lines))
    reader.start()
    try:
        logged = lines.get(timeout=WAIT * 2)
        url = f"http://127.0.0.1:{port}/"
        assert f"Serving the running messages at {url} (read-only:" in logged

        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=WAIT)
        connection.request("GET", "/")
        page = connection.getresponse().read().decode()
        assert "&quot;allowAbort&quot;: false, &quot;refresh&quot;: 2.0" in page
        connection.request("GET", "/api/messages")
        listing = json.loads(connection.getresponse().read())
        assert (listing["answered"], listing["expected"], listing["messages"]) == (0, 0, [])
        connection.request("POST", "/api/abort", body=b"{}", headers={"Origin": url[:-1]})
        response = connection.getresponse()
        assert response.status == 403 and b"--allow-abort" in response.read()
        connection.close()

        command.send_signal(signal.SIGINT)
        assert command.wait(WAIT) == 0
        reader.join(WAIT)
        rest = "".join(lines.queue)
        assert "Stopped." in rest and "Traceback" not in rest
        assert command.stdout is not None
        assert "No worker listens to namespace" in command.stdout.read()
    finally:
        if command.poll() is None:
            command.kill()
        command.wait(WAIT)
        reader.join(WAIT)
        for stream in (command.stdout, command.stderr):
            if stream is not None:
                stream.close()
    assert sent(RedisBackend(client=redis_client, namespace=namespace)) == []


@pytest.mark.parametrize(
    ("extra", "says"),
    [
        (["--port", "70000"], "argument --port: --port must be a TCP port from 0 (any free one)"),
        (["--port", "http"], "argument --port: 'http' is not a TCP port"),
        (
            ["--refresh", "0.1"],
            "argument --refresh: --refresh must be at least 1 s, not 0.1: each refresh",
        ),
        (["--refresh", "nan"], "argument --refresh: --refresh must be finite and 0 or more, not"),
        (["--refresh", "1e300"], "argument --refresh: --refresh must be at most"),
        (["--host", " "], "argument --host: ' ' is blank"),
        (["--host", "no-such-host.invalid"], "'no-such-host.invalid' is neither an address"),
        # An address of no interface here: nothing can listen on it.
        (["--host", "192.0.2.1"], "cannot listen on '192.0.2.1' port 0: Cannot assign"),
    ],
)
def test_the_command_refuses_bad_options_in_one_line_and_starts_nothing(
    redis_url: str,
    redis_client: redis.Redis,
    namespace: str,
    capsys: pytest.CaptureFixture[str],
    extra: list[str],
    says: str,
) -> None:
    argv = ["web", "--backend", redis_url, "--namespace", namespace, "--port", "0", *extra]
    assert_refused(argv, says, capsys, redis_client, namespace)


def test_the_command_refuses_a_port_in_use(
    redis_url: str, redis_client: redis.Redis, namespace: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        argv = ["web", "--backend", redis_url, "--namespace", namespace, "--port", str(port)]
        assert_refused(
            argv,
            f"cannot listen on '127.0.0.1' port {port}: Address already in use",
            capsys,
            redis_client,
            namespace,
        )


def test_the_command_stops_at_once_when_its_redis_cannot_be_reached(
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = ["web", "--backend", f"redis://127.0.0.1:{free_port()}/0", "--port", "0"]
    assert status_of(argv) == 1
    assert "dramatiq-abort: Redis error: " in capsys.readouterr().err


def test_the_command_requires_the_workers_backend(
    redis_client: redis.Redis,
    namespace: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(URL_VARIABLE, raising=False)
    monkeypatch.delenv(REDIS_URL_VARIABLE, raising=False)
    says = f"--backend URL is required, unless ${URL_VARIABLE} is set"
    assert_refused(["web", "--port", "0"], says, capsys, redis_client, namespace)


@pytest.mark.parametrize(
    ("options", "error", "says"),
    [
        ({"allow_abort": "false"}, TypeError, "allow_abort must be True or False, not 'false'"),
        ({"port": 70000}, ValueError, "port must be a TCP port from 0"),
        ({"refresh": 0}, ValueError, "refresh must be at least 1 s, not 0"),
        ({"refresh": math.nan}, ValueError, "refresh must be finite"),
        # A browser fires a timer past 24.8 days at once.
        ({"refresh": 1e6}, ValueError, "refresh must be at most 86,400 s (a day), not 1000000.0"),
        ({"wait": -1}, ValueError, "wait must be finite and 0 or more, not -1"),
    ],
)
def test_the_server_refuses_bad_options_before_it_listens(
    options: dict[str, Any], error: type[Exception], says: str
) -> None:
    # A string "false" would be true, and the page would show its buttons.
    with pytest.raises(error, match=re.escape(says)):
        WebServer(Abortable(backend=StubBackend()), **{"host": "127.0.0.1", "port": 0, **options})
