"""Servers the tests need: the shared ones checked, and Redis servers of a test's own."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Callable
from typing import NoReturn

import pytest
import redis

from .marks import require_mark

RABBITMQ_URL = os.environ.get("DRAMATIQ_ABORT_TEST_RABBITMQ", "amqp://guest:guest@127.0.0.1:5672")


def unavailable(message: str) -> NoReturn:
    """Skip the test for want of a service or a program, or fail it under
    ``CI=true``, where everything the tests need is installed."""
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


def require_rabbitmq() -> None:
    """Skip the test when no RabbitMQ answers, except under ``CI=true``
    where that fails."""
    import pika

    try:
        pika.BlockingConnection(pika.URLParameters(RABBITMQ_URL)).close()
    except Exception as e:
        unavailable(
            f"no RabbitMQ answers at {RABBITMQ_URL} (set DRAMATIQ_ABORT_TEST_RABBITMQ): {e}"
        )


class PrivateRedis:
    """A redis-server of the test's own, on a free loopback port, that the
    test may stop and start again."""

    def __init__(self, directory: str, *options: str, config: str | None = None) -> None:
        """``options`` are extra ``redis-server`` arguments, such as
        ``"--cluster-enabled", "yes"``; ``config`` a configuration file."""
        self.options = options
        self.config = config
        # Low enough for a cluster node: any of these servers may be one.
        self.port = free_port(below=REDIS_CLUSTER_PORTS_BELOW)
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.directory = directory
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        require_mark("servers")
        self.process = subprocess.Popen(
            [
                "redis-server",
                *([self.config] if self.config else []),
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                self.directory,
                *self.options,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis.from_url(self.url, socket_connect_timeout=1)
        deadline = time.monotonic() + 10
        try:
            while True:
                try:
                    client.ping()
                    break
                except redis.ConnectionError:
                    if time.monotonic() > deadline or self.process.poll() is not None:
                        raise RuntimeError(
                            f"redis-server did not start on port {self.port}"
                        ) from None
                    time.sleep(0.01)
                finally:
                    client.close()
        except BaseException:
            # Whatever stopped the wait (a test's timeout too), the server
            # must not outlive the test.
            self.stop()
            raise

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        self.process = None


def start_private_redis(
    directory: str,
    *options: str,
    config: str | None = None,
    server_class: Callable[..., PrivateRedis] = PrivateRedis,
) -> PrivateRedis:
    """A started :class:`PrivateRedis` (or ``server_class``, called as it
    is); skips the test when no ``redis-server`` is installed, except under
    ``CI=true`` where that fails."""
    if shutil.which("redis-server") is None:
        unavailable("redis-server is not installed: tests that restart Redis need their own")
    attempts_left = 3
    while True:
        server = server_class(directory, *options, config=config)
        try:
            server.start()
            return server
        except RuntimeError:
            # The free port found may have been taken meanwhile: try another.
            attempts_left -= 1
            if not attempts_left:
                raise


#: Ports a Redis cluster node may take: it also listens 10000 ports higher,
#: for the bus, and refuses to start on a port above 55535.
REDIS_CLUSTER_PORTS_BELOW = 55536


def free_port(below: int = 65536) -> int:
    """A loopback TCP port lower than ``below`` that nothing listens on now."""
    # The system picks among its ephemeral ports (often 32768 to 60999) at
    # random: a few picks find one below a bound inside that range.
    for _ in range(100):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = int(probe.getsockname()[1])
        if port < below:
            return port
    raise RuntimeError(f"the system offered no free loopback port below {below}")
