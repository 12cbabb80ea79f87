"""Redis with credentials: an ACL user allowed only what the backend needs,
``rediss://`` to a TLS-only server, and passwords kept out of every error,
log record, repr and line the command prints.

Each test runs a redis-server of its own whose default user needs a
password, with an application user limited to the rule of
:func:`acl_rule`; every password is made at run time.
"""

from __future__ import annotations

import functools
import logging
import secrets
import select
import shutil
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import dramatiq
import pytest
import redis
from dramatiq.brokers.stub import StubBroker

from dramatiq_abort import Abortable, AbortMode, Event, abort
from dramatiq_abort.backends import RedisBackend

from ..support import (
    WAIT,
    PrivateRedis,
    connected_watcher,
    spin_until_aborted,
    start_private_redis,
    start_worker,
    unavailable,
    wait_until,
    wait_until_cut_off,
)

pytestmark = [pytest.mark.timeout(30), pytest.mark.servers]

APP_USER = "dramatiq-abort-app"

#: Every command the backend sends, itself or from its Lua scripts.
ACL_COMMANDS = (
    "+evalsha",
    # redis-py loads a script the server does not know (after a restart)
    "+script|load",
    "+time",
    "+zremrangebyscore",
    "+zrangebyscore",
    "+zadd",
    "+set",
    "+get",
    "+pttl",
    "+pexpire",
    "+publish",
    "+exists",
    "+subscribe",
    # A worker's answer to a listing, and the asker's read and clean-up.
    "+rpush",
    "+blpop",
    "+del",
)


def acl_grants(namespace: str) -> list[str]:
    """What the application user is allowed: the keys and channels of its
    namespace, and :data:`ACL_COMMANDS`."""
    return [f"~{namespace}*", f"&{namespace}*", *ACL_COMMANDS]


def acl_rule(namespace: str) -> list[str]:
    """The application user's ACL rule, as the README documents it."""
    # Redis 6.2 gives new users every channel unless told otherwise.
    return ["resetchannels", *acl_grants(namespace)]


@dataclass(frozen=True)
class Certificates:
    """Where a test CA and the server's certificate and key are."""

    ca: Path
    cert: Path
    key: Path


@pytest.fixture(scope="session")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    """A CA, and a certificate it signed for 127.0.0.1, made with ``openssl``."""
    if shutil.which("openssl") is None:
        unavailable("the openssl command is not installed: TLS tests make their certificates")
    directory = tmp_path_factory.mktemp("tls")
    made = Certificates(directory / "ca.crt", directory / "server.crt", directory / "server.key")
    new_key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    (directory / "server.ext").write_text(
        "subjectAltName=IP:127.0.0.1\n"
        "basicConstraints=critical,CA:FALSE\n"
        "keyUsage=critical,digitalSignature\n"
        "extendedKeyUsage=serverAuth\n"
        "subjectKeyIdentifier=hash\n"
        "authorityKeyIdentifier=keyid\n"
    )
    for command in [
        [
            *("req", "-x509", *new_key, "-keyout", "ca.key", "-out", made.ca.name, "-days", "1"),
            *("-subj", "/CN=dramatiq-abort test CA"),
            *("-addext", "basicConstraints=critical,CA:TRUE"),
            *("-addext", "keyUsage=critical,keyCertSign,cRLSign"),
        ],
        [
            *("req", "-new", *new_key, "-keyout", made.key.name, "-out", "server.csr"),
            *("-subj", "/CN=127.0.0.1"),
        ],
        [
            *("x509", "-req", "-in", "server.csr", "-CA", made.ca.name, "-CAkey", "ca.key"),
            *("-CAcreateserial", "-out", made.cert.name, "-days", "1", "-extfile", "server.ext"),
        ],
    ]:
        subprocess.run(
            ["openssl", *command], cwd=directory, check=True, capture_output=True, timeout=WAIT
        )
    return made


@functools.cache
def tls_unsupported_reason() -> str | None:
    """Why this machine's redis-server cannot serve TLS; None if it can."""
    if shutil.which("redis-server") is None:
        return "redis-server is not installed"
    # Told to listen on no port, a server exits once it has read its
    # configuration; one built without TLS does not know tls-port.
    probe = subprocess.run(
        ["redis-server", "--port", "0", "--tls-port", "0"],
        capture_output=True,
        text=True,
        timeout=WAIT,
        check=False,
    )
    said = probe.stdout + probe.stderr
    if "FATAL CONFIG" in said:
        return "this redis-server has no TLS (rebuild with BUILD_TLS=yes): " + " ".join(
            said.split()
        )
    return None


class SecuredRedis(PrivateRedis):
    """A private redis-server whose default user needs a password, with an
    application user limited to :func:`acl_rule`; reachable by TLS only
    when given ``certificates``.

    ``url`` is the default user's, ``app_url`` the application user's.
    """

    def __init__(
        self,
        directory: str,
        *options: str,
        config: str | None = None,
        namespace: str,
        certificates: Certificates | None = None,
    ) -> None:
        super().__init__(directory, *options, config=config)
        self.namespace = namespace
        self.certificates = certificates
        self.app_password = secrets.token_urlsafe(16)
        self._admin_password = secrets.token_urlsafe(16)
        self.acl_file = Path(directory) / "users.acl"
        self.write_acl_file(acl_rule(namespace))
        self.options += ("--aclfile", str(self.acl_file))
        if certificates is not None:
            # Later options win: the plain port is closed, and the free
            # port found is the TLS one.
            self.options += (
                *("--port", "0", "--tls-port", str(self.port)),
                *("--tls-cert-file", str(certificates.cert)),
                *("--tls-key-file", str(certificates.key)),
                *("--tls-ca-cert-file", str(certificates.ca)),
                *("--tls-auth-clients", "no"),
            )
        self.url = self.url_for("default", self._admin_password)
        self.app_url = self.url_for(APP_USER, self.app_password)

    def url_for(self, user: str, password: str) -> str:
        if self.certificates is None:
            return f"redis://{user}:{password}@127.0.0.1:{self.port}/0"
        query = urlencode({"ssl_ca_certs": str(self.certificates.ca)})
        return f"rediss://{user}:{password}@127.0.0.1:{self.port}/0?{query}"

    def write_acl_file(self, app_rule: Sequence[str], app_password: str | None = None) -> None:
        """The users the server loads when it starts, or is told ``ACL LOAD``."""
        self.acl_file.write_text(
            f"user default on >{self._admin_password} ~* &* +@all\n"
            f"user {APP_USER} on >{app_password or self.app_password} {' '.join(app_rule)}\n"
        )

    def admin(self) -> redis.Redis:
        """A client of the default user, who may do anything."""
        return redis.Redis.from_url(self.url)


@pytest.fixture
def secured_redis(
    request: pytest.FixtureRequest, tmp_path: Path, namespace: str
) -> Iterator[SecuredRedis]:
    """A :class:`SecuredRedis`, on plain TCP unless parametrized ``"tls"``."""
    transport = getattr(request, "param", "tcp")
    certificates = None
    if transport == "tls":
        reason = tls_unsupported_reason()
        if reason is not None:
            unavailable(reason)
        certificates = request.getfixturevalue("certificates")
    server = start_private_redis(
        str(tmp_path),
        server_class=functools.partial(
            SecuredRedis, namespace=namespace, certificates=certificates
        ),
    )
    assert isinstance(server, SecuredRedis)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def app_backend(secured_redis: SecuredRedis, namespace: str) -> Iterator[RedisBackend]:
    """The backend of the application user's URL."""
    backend = RedisBackend.from_url(secured_redis.app_url, namespace=namespace)
    yield backend
    backend.client.close()


class LogRecorder(logging.Handler):
    """Every record logged, formatted with its traceback."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        self.records: list[logging.LogRecord] = []
        self.texts: list[str] = []
        self._changed = threading.Condition()

    def emit(self, record: logging.LogRecord) -> None:
        text = self.format(record)
        with self._changed:
            self.records.append(record)
            self.texts.append(text)
            self._changed.notify_all()

    def wait_for(self, wanted: Callable[[logging.LogRecord], bool], what: str) -> None:
        with self._changed:
            found = self._changed.wait_for(
                lambda: any(wanted(record) for record in self.records), WAIT
            )
        assert found, f"nothing was logged {what}"


@pytest.fixture
def log() -> Iterator[LogRecorder]:
    """Every record of every logger, DEBUG included, while the test runs."""
    recorder = LogRecorder()
    root = logging.getLogger()
    level = root.level
    root.addHandler(recorder)
    root.setLevel(logging.DEBUG)
    try:
        yield recorder
    finally:
        root.removeHandler(recorder)
        root.setLevel(level)


def raised(exception: type[BaseException]) -> Callable[[logging.LogRecord], bool]:
    """Whether a record carries an ``exception``."""

    def wanted(record: logging.LogRecord) -> bool:
        return isinstance(record.exc_info[1] if record.exc_info else None, exception)

    return wanted


def run_cli(*arguments: str) -> subprocess.CompletedProcess[str]:
    """``dramatiq-abort`` with ``arguments``, as test_cli runs it."""
    return subprocess.run(
        [sys.executable, "-m", "dramatiq_abort.cli", *arguments],
        capture_output=True,
        text=True,
        timeout=WAIT * 2,
        check=False,
    )


def use_every_operation(backend: RedisBackend) -> None:
    """Everything a worker and a sender ask of the backend, on a server that
    knows none of its keys nor scripts yet."""
    subscription = backend.subscribe()
    try:
        assert subscription.recorded() == []
        backend.notify([Event("abort:used", {"abort_timeout": 0})], ttl=60_000)
        received: list[str] = []
        deadline = time.monotonic() + WAIT
        while not received and time.monotonic() < deadline:
            select.select([subscription.fileno()], [], [], max(0.0, deadline - time.monotonic()))
            received += [timed.event.key for timed in subscription.receive()]
        assert received == ["abort:used"]
        assert [timed.event.key for timed in backend.recorded()] == ["abort:used"]
        assert backend.poll("abort:used") == Event("abort:used", {"abort_timeout": 0})
        backend.record_outcome("used", "aborted", 60_000)
        assert backend.wait_outcome("used", WAIT) == "aborted"
        backend.answer("used", "an answer", 60_000)
        assert backend.collect_answers("used", 1, WAIT) == ["an answer"]
    finally:
        subscription.close()


def assert_refused_for_want_of(grant: str, denials: list[dict[str, Any]], namespace: str) -> None:
    """Whether the server's ACL log says it refused what ``grant`` allows."""
    assert denials, f"nothing was refused without {grant}"
    for denial in denials:
        if grant.startswith("+"):
            assert (denial["reason"], denial["object"]) == ("command", grant[1:])
        else:
            reason = {"~": "key", "&": "channel"}[grant[0]]
            assert denial["reason"] == reason and denial["object"].startswith(namespace), denial


def test_the_acl_rule_allows_what_the_backend_does_and_each_grant_is_needed(
    secured_redis: SecuredRedis, namespace: str
) -> None:
    admin = secured_redis.admin()
    grants = acl_grants(namespace)
    try:
        for left_out in [None, *grants]:
            # From scratch each time: no key, and no script known.
            admin.flushall()
            admin.script_flush()
            secured_redis.write_acl_file([part for part in acl_rule(namespace) if part != left_out])
            admin.acl_load()
            backend = RedisBackend.from_url(secured_redis.app_url, namespace=namespace)
            try:
                if left_out is None:
                    use_every_operation(backend)
                else:
                    admin.acl_log_reset()
                    with pytest.raises(redis.RedisError):
                        use_every_operation(backend)
                    assert_refused_for_want_of(left_out, admin.acl_log(), namespace)
            finally:
                backend.client.close()
    finally:
        admin.close()


def test_the_application_user_can_touch_nothing_outside_its_namespace(
    secured_redis: SecuredRedis,
) -> None:
    client = redis.Redis.from_url(secured_redis.app_url)
    forbidden_calls: list[Callable[[], object]] = [
        lambda: client.get("dramatiq:aborts:{aborts}:index"),
        lambda: client.publish("dramatiq:aborts:{aborts}:events", "{}"),
        lambda: client.keys(),
        lambda: client.flushall(),
        lambda: client.config_get("*"),
    ]
    try:
        for forbidden in forbidden_calls:
            with pytest.raises(redis.exceptions.NoPermissionError):
                forbidden()
    finally:
        client.close()


@pytest.mark.parametrize("secured_redis", ["tcp", "tls"], indirect=True)
@pytest.mark.parametrize("sender", ["abort()", "dramatiq-abort abort"])
def test_the_application_user_aborts_running_and_cancels_queued_messages(
    stub_broker: StubBroker,
    secured_redis: SecuredRedis,
    app_backend: RedisBackend,
    namespace: str,
    sender: str,
) -> None:
    started, interrupted = threading.Semaphore(0), threading.Semaphore(0)
    ran: list[str] = []

    @dramatiq.actor(max_retries=0)
    def crunch() -> None:
        spin_until_aborted(started.release, interrupted.release)

    @dramatiq.actor
    def job(name: str) -> None:
        ran.append(name)

    def send(mode: AbortMode, *message_ids: str) -> None:
        if sender == "abort()":
            for message_id in message_ids:
                abort(message_id, mode=mode)
            return
        finished = run_cli(
            *("abort", *message_ids, "--mode", mode.value),
            *("--redis", secured_redis.app_url, "--namespace", namespace),
        )
        assert finished.returncode == 0, finished.stdout + finished.stderr

    worker = start_worker(stub_broker, Abortable(backend=app_backend))
    try:
        # Both worker threads busy, so that the next message waits its turn.
        running = [crunch.send(), crunch.send()]
        for _ in running:
            assert started.acquire(timeout=WAIT)
        queued = job.send("cancelled")
        send(AbortMode.CANCEL, queued.message_id)
        send(AbortMode.ABORT, *(message.message_id for message in running))
        for _ in running:
            assert interrupted.acquire(timeout=WAIT)
        job.send("kept")
        stub_broker.join(job.queue_name)
        worker.join()
        assert ran == ["kept"]
    finally:
        worker.stop()


@pytest.mark.parametrize("secured_redis", ["tcp", "tls"], indirect=True)
def test_the_watcher_reconnects_to_a_restarted_server_and_catches_up(
    stub_broker: StubBroker,
    secured_redis: SecuredRedis,
    app_backend: RedisBackend,
    namespace: str,
) -> None:
    started, interrupted = threading.Semaphore(0), threading.Semaphore(0)

    @dramatiq.actor(max_retries=0)
    def crunch() -> None:
        spin_until_aborted(started.release, interrupted.release)

    middleware = Abortable(backend=app_backend)
    worker = start_worker(stub_broker, middleware)
    admin = None
    try:
        watcher = connected_watcher(middleware)
        secured_redis.stop()
        wait_until_cut_off(watcher)
        message = crunch.send()
        assert started.acquire(timeout=WAIT)

        # Back without the right to subscribe: the watcher cannot reconnect
        # before the abort is recorded, so only catching up can deliver it.
        secured_redis.write_acl_file(
            [grant for grant in acl_rule(namespace) if grant != "+subscribe"]
        )
        secured_redis.start()
        admin = secured_redis.admin()
        abort(message.message_id)
        wait_until(
            lambda: any(denial["object"] == "subscribe" for denial in admin.acl_log()),
            "the watcher tried to subscribe to the restarted server",
        )
        secured_redis.write_acl_file(acl_rule(namespace))
        admin.acl_load()
        assert interrupted.acquire(timeout=WAIT)
        assert watcher.connected.wait(WAIT)
    finally:
        worker.stop()
        if admin is not None:
            admin.close()


@pytest.mark.parametrize("failure", ["server down", "wrong password"])
def test_a_failed_abort_names_no_password(
    stub_broker: StubBroker, secured_redis: SecuredRedis, namespace: str, failure: str
) -> None:
    password = secured_redis.app_password
    if failure == "wrong password":
        password = secrets.token_urlsafe(16)
    else:
        secured_redis.stop()
    backend = RedisBackend.from_url(secured_redis.url_for(APP_USER, password), namespace=namespace)
    stub_broker.add_middleware(Abortable(backend=backend))
    try:
        with pytest.raises(redis.RedisError) as failed:
            abort("some-message")
    finally:
        backend.client.close()
    told = [
        str(failed.value),
        repr(failed.value),
        *traceback.format_exception(failed.type, failed.value, failed.tb),
    ]
    assert password not in "".join(told)


def test_the_watchers_warnings_name_no_password(
    stub_broker: StubBroker,
    secured_redis: SecuredRedis,
    app_backend: RedisBackend,
    log: LogRecorder,
) -> None:
    ran = threading.Event()

    @dramatiq.actor
    def job() -> None:
        ran.set()

    middleware = Abortable(backend=app_backend)
    worker = start_worker(stub_broker, middleware)
    admin = None
    try:
        watcher = connected_watcher(middleware)
        secured_redis.stop()
        log.wait_for(raised(redis.ConnectionError), "when the server left")
        job.send()
        assert ran.wait(WAIT)
        log.wait_for(
            lambda record: "Could not ask the backend" in record.getMessage(),
            "of a message that started while the server was away",
        )

        secured_redis.start()
        assert watcher.connected.wait(WAIT)
        admin = secured_redis.admin()
        # The password changes and the watcher is cut off: it cannot log in again.
        secured_redis.write_acl_file(acl_rule(secured_redis.namespace), secrets.token_urlsafe(16))
        admin.acl_load()
        admin.client_kill_filter(_type="pubsub")
        log.wait_for(raised(redis.AuthenticationError), "when the password was refused")
    finally:
        worker.stop()
        if admin is not None:
            admin.close()
    leaking = [text for text in log.texts if secured_redis.app_password in text]
    assert leaking == []


@pytest.mark.parametrize("command", ["abort", "demo"])
@pytest.mark.parametrize("failure", ["wrong password", "server down"])
def test_the_command_fails_clearly_and_names_no_password(
    secured_redis: SecuredRedis, command: str, failure: str
) -> None:
    password = secured_redis.app_password
    if failure == "wrong password":
        password = secrets.token_urlsafe(16)
    else:
        secured_redis.stop()
    url = secured_redis.url_for(APP_USER, password)
    arguments = ["--redis", url] if command == "demo" else ["some-message", "--redis", url]
    finished = run_cli(command, *arguments)
    assert finished.returncode == 1, finished.stdout + finished.stderr
    assert finished.stderr.startswith("dramatiq-abort: Redis error: "), finished.stderr
    says = "invalid username-password pair" if failure == "wrong password" else "refused"
    assert says in finished.stderr
    assert "Traceback" not in finished.stderr
    assert password not in finished.stdout + finished.stderr


def test_reprs_name_no_password(secured_redis: SecuredRedis, app_backend: RedisBackend) -> None:
    middleware = Abortable(backend=app_backend)
    subscription = app_backend.subscribe()
    try:
        shown = [
            text(thing) for thing in (app_backend, middleware, subscription) for text in (str, repr)
        ]
    finally:
        subscription.close()
    assert all(secured_redis.app_password not in text for text in shown), shown
