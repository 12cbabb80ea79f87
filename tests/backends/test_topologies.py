"""RedisBackend on the Redis deployments users grow into: a Redis Cluster
of three masters and a Sentinel-managed Redis, each started for the test."""

from __future__ import annotations

import math
import secrets
import select
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import dramatiq
import pytest
import redis
from dramatiq.brokers.stub import StubBroker
from redis.cluster import RedisCluster
from redis.sentinel import Sentinel

from dramatiq_abort import Abortable, AbortMode, Event, Outcome, abort, abort_requested
from dramatiq_abort.backends import RedisBackend
from dramatiq_abort.backends.redis.backend import CHUNK_SIZE
from dramatiq_abort.cli import main as cli_main

from ..support import (
    SHORT_SOCKET_TIMEOUT,
    WAIT,
    PrivateRedis,
    assert_a_cancelled_message_never_runs,
    assert_waits_outlast_the_socket_timeout,
    spin_until_aborted,
    start_private_redis,
    start_worker,
    wait_until,
)

pytestmark = pytest.mark.timeout(60)

#: Seconds a listing on a cluster waits, always in full as how many listen
#: is unknown: long enough for a worker to answer on a busy machine.
ANSWER_WAIT = WAIT / 2


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[PrivateRedis]]:
    """Three masters, no replica, every slot assigned; shared by the tests
    of this module, which keep to namespaces of their own."""
    nodes: list[PrivateRedis] = []
    try:
        for _ in range(3):
            directory = tmp_path_factory.mktemp("cluster-node")
            nodes.append(
                start_private_redis(
                    str(directory), "--cluster-enabled", "yes", "--cluster-node-timeout", "2000"
                )
            )
        addresses = [f"127.0.0.1:{node.port}" for node in nodes]
        subprocess.run(
            ["redis-cli", "--cluster", "create", *addresses, "--cluster-yes"],
            check=True,
            capture_output=True,
            timeout=30,
        )

        def ready() -> bool:
            for node in nodes:
                with redis.Redis(port=node.port) as client:
                    info = client.cluster("info")
                    state = info.get("cluster_state") if isinstance(info, dict) else None
                    if state != "ok" or len(client.cluster("nodes")) != 3:
                        return False
            return True

        wait_until(ready, "the cluster is formed")
        yield nodes
    finally:
        for node in nodes:
            node.stop()


@pytest.mark.servers
def test_a_cluster_backend_records_and_pushes_without_crossslot_errors(
    cluster: list[PrivateRedis],
) -> None:
    client = RedisCluster(host="127.0.0.1", port=cluster[0].port)
    backend = RedisBackend(client=client, namespace="cluster-test:records:")
    subscription = backend.subscribe()
    try:
        # Ids whose own hash tags name other slots, and more than one chunk.
        ids = ["{a}", "{b}x", "plain", *(f"m{i}" for i in range(CHUNK_SIZE + 10))]
        middleware = Abortable(backend=backend)
        middleware.abort_many(ids, mode=AbortMode.CANCEL)
        recorded = {timed.event.key for timed in backend.recorded()}
        assert recorded == {f"cancel:{message_id}" for message_id in ids}
        assert backend.poll("cancel:{a}") is not None

        pushed: set[str] = set()
        deadline = time.monotonic() + WAIT
        while len(pushed) < len(ids) and time.monotonic() < deadline:
            pushed.update(timed.event.key for timed in subscription.receive())
        assert pushed == recorded

        backend.record_outcome("{a}", Outcome.CANCELLED.value, ttl=60_000)
        assert middleware.wait_outcome("{a}", WAIT) is Outcome.CANCELLED
    finally:
        subscription.close()
        client.close()


@pytest.mark.servers
def test_workers_on_a_cluster_url_abort_and_cancel(
    stub_broker: StubBroker, cluster: list[PrivateRedis]
) -> None:
    url = f"redis://127.0.0.1:{cluster[1].port}/0?cluster=true"
    backend = RedisBackend.from_url(url, namespace="cluster-test:workers:")
    assert isinstance(backend.client, RedisCluster)
    middleware = Abortable(backend=backend)
    started, interrupted = threading.Event(), threading.Event()
    ran: list[str] = []

    @dramatiq.actor(max_retries=0)
    def crunch() -> None:
        spin_until_aborted(started.set, interrupted.set)

    @dramatiq.actor
    def job(name: str) -> None:
        ran.append(name)

    reached, proceed = threading.Event(), threading.Event()
    seen: list[float | None] = []

    @dramatiq.actor
    def checks_once() -> None:
        reached.set()
        assert proceed.wait(WAIT)
        seen.append(abort_requested())

    worker = start_worker(stub_broker, middleware)
    try:
        # The subscription is on the node that runs the scripts: once
        # abort() returns, this process's messages see the request.
        polite = checks_once.send()
        assert reached.wait(WAIT)
        abort(polite.message_id, abort_timeout=math.inf)
        proceed.set()

        running = crunch.send()
        assert started.wait(WAIT)
        abort(running.message_id)
        assert interrupted.wait(WAIT)
        assert middleware.wait_outcome(running.message_id, WAIT) is Outcome.ABORTED

        assert_a_cancelled_message_never_runs(stub_broker, worker, job, ran)
        assert seen == [math.inf]
    finally:
        worker.stop()
        backend.client.close()


@pytest.mark.servers
def test_namespaces_on_a_cluster_have_channels_of_their_own(cluster: list[PrivateRedis]) -> None:
    # A cluster publishes to the subscribers of every node, and has only
    # database 0: the namespace in the channel's name keeps them apart.
    url = f"redis://127.0.0.1:{cluster[1].port}/0?cluster=true"
    ours = RedisBackend.from_url(url, namespace="cluster-test:ours:")
    theirs = RedisBackend.from_url(url, namespace="cluster-test:theirs:")
    assert (ours.channel, ours.outcomes_channel) == (
        "cluster-test:ours:{aborts}:db0:events",
        "cluster-test:ours:{aborts}:db0:outcomes",
    )
    subscription = theirs.subscribe()
    try:
        ours.notify([Event("abort:shared-id", {})], ttl=60_000)
        assert theirs.poll("abort:shared-id") is None
        assert not select.select([subscription.fileno()], [], [], 0.05)[0]
    finally:
        subscription.close()
        ours.client.close()
        theirs.client.close()


@pytest.mark.servers
def test_waits_on_a_cluster_outlast_the_clients_socket_timeout(
    cluster: list[PrivateRedis],
) -> None:
    # How many listen is unknown on a cluster: a listing waits all its time.
    backend = RedisBackend.from_url(
        f"redis://127.0.0.1:{cluster[0].port}/0?cluster=true&socket_timeout={SHORT_SOCKET_TIMEOUT}",
        namespace="cluster-test:socket-timeout:",
    )
    try:
        assert_waits_outlast_the_socket_timeout(backend)
    finally:
        backend.client.close()


@pytest.mark.servers
def test_a_listing_on_a_cluster_says_who_answered_and_that_how_many_listen_is_unknown(
    stub_broker: StubBroker, cluster: list[PrivateRedis], capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"redis://127.0.0.1:{cluster[2].port}/0?cluster=true"
    namespace = "cluster-test:listing:"
    backend = RedisBackend.from_url(url, namespace=namespace)
    asker = RedisBackend.from_url(url, namespace=namespace)
    started, release = threading.Event(), threading.Event()

    @dramatiq.actor
    def export() -> None:
        started.set()
        release.wait(WAIT)

    worker = start_worker(stub_broker, Abortable(backend=backend))
    try:
        message = export.send()
        assert started.wait(WAIT)
        listed = Abortable(backend=asker).running_messages(timeout=ANSWER_WAIT)
        assert (listed.answered, listed.expected) == (1, None)
        assert [listed.message_id for listed in listed.messages] == [message.message_id]
        assert (
            cli_main(["list", "--redis", url, "--namespace", namespace, "--wait", str(ANSWER_WAIT)])
            == 0
        )
        assert capsys.readouterr().out.splitlines()[-1] == (
            "1 answered; how many worker processes listen is unknown."
        )
        assert list(asker.client.scan_iter(match=f"{asker.prefix}answers:*")) == []
    finally:
        release.set()
        worker.stop()
        backend.client.close()
        asker.client.close()


@pytest.mark.parametrize("flag", ["maybe", ""])
def test_a_bad_cluster_flag_is_refused_without_echoing_the_url(flag: str) -> None:
    password = secrets.token_urlsafe(12)
    with pytest.raises(ValueError, match="cluster must be true or false") as info:
        RedisBackend.from_url(f"redis://user:{password}@127.0.0.1:1/0?cluster={flag}")
    assert password not in str(info.value)


@pytest.fixture
def sentinel(private_redis: PrivateRedis, tmp_path: Path) -> Iterator[Sentinel]:
    """A Sentinel, started for the test, that watches ``private_redis``
    under the name ``primary`` and knows it already."""
    config = tmp_path / "sentinel.conf"
    config.write_text(f"sentinel monitor primary 127.0.0.1 {private_redis.port} 1\n")
    sentinel_server = start_private_redis(str(tmp_path), "--sentinel", config=str(config))
    try:
        sentinel = Sentinel([("127.0.0.1", sentinel_server.port)], socket_timeout=2)

        def primary_known() -> bool:
            try:
                address: tuple[str, int] = sentinel.discover_master("primary")
                return address == ("127.0.0.1", private_redis.port)
            except redis.RedisError:
                return False

        wait_until(primary_known, "the sentinel knows the primary")
        yield sentinel
    finally:
        sentinel_server.stop()


@pytest.mark.servers
def test_the_client_of_a_sentinel_is_accepted(stub_broker: StubBroker, sentinel: Sentinel) -> None:
    started, interrupted = threading.Event(), threading.Event()

    @dramatiq.actor(max_retries=0)
    def crunch() -> None:
        spin_until_aborted(started.set, interrupted.set)

    middleware = Abortable(
        backend=RedisBackend(client=sentinel.master_for("primary"), namespace="sentinel-test:")
    )
    worker = start_worker(stub_broker, middleware)
    try:
        message = crunch.send()
        assert started.wait(WAIT)
        abort(message.message_id)
        assert interrupted.wait(WAIT)
    finally:
        worker.stop()


@pytest.mark.servers
def test_waits_through_a_sentinel_outlast_the_clients_socket_timeout(sentinel: Sentinel) -> None:
    client = sentinel.master_for("primary", socket_timeout=SHORT_SOCKET_TIMEOUT)
    try:
        assert_waits_outlast_the_socket_timeout(
            RedisBackend(client=client, namespace="sentinel-test:")
        )
    finally:
        client.close()


@pytest.mark.servers
def test_rules_and_reasons_work_on_a_cluster(
    stub_broker: StubBroker, cluster: list[PrivateRedis]
) -> None:
    url = f"redis://127.0.0.1:{cluster[2].port}/0?cluster=true"
    backend = RedisBackend.from_url(url, namespace="cluster-test:rules:")
    middleware = Abortable(backend=backend)
    started, interrupted = threading.Event(), threading.Event()

    @dramatiq.actor(max_retries=0)
    def crunch() -> None:
        spin_until_aborted(started.set, interrupted.set)

    worker = start_worker(stub_broker, middleware)
    try:
        running = crunch.send()
        assert started.wait(WAIT)
        rule_id = middleware.abort_where(actor="crunch", reason="on a cluster")
        assert interrupted.wait(WAIT)
        assert middleware.wait_outcome(running, WAIT) is Outcome.ABORTED
        # The outcome and its reason are two keys of one slot, written by one script.
        assert middleware.outcome_reason(running) == "on a cluster"
        assert f"rule:{rule_id}" in {timed.event.key for timed in backend.recorded()}
    finally:
        worker.stop()
        backend.client.close()
