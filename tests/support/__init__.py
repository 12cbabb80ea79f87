"""What several test modules share, one module per kind of help: bounded
waits and the worker in the test's own process (``waiting``), backends made
for tests (``backends``), servers (``servers``), ``dramatiq`` worker
processes (``processes``), the command line (``commands``), the web page
(``web``) and the markers of costly tests (``marks``)."""

from .backends import (
    LONG_WAIT,
    SHORT_SOCKET_TIMEOUT,
    GatedBackend,
    GatedPostgresBackend,
    NamespacedResults,
    assert_nothing_written,
    assert_waits_outlast_the_socket_timeout,
    backend_in,
    delete_namespace,
    postgres_tables,
    recorded,
)
from .commands import assert_refused, status_of
from .marks import SLOW_KINDS, require_mark
from .processes import ROOT, App, run_on_both_processes, start_dramatiq, stop_process_group
from .servers import (
    RABBITMQ_URL,
    REDIS_CLUSTER_PORTS_BELOW,
    PrivateRedis,
    free_port,
    require_rabbitmq,
    start_private_redis,
    unavailable,
)
from .waiting import (
    BOOT_WAIT,
    QUEUED_FOR,
    WAIT,
    assert_a_cancelled_message_never_runs,
    connected_watcher,
    spin_until_aborted,
    start_worker,
    wait_until,
    wait_until_cut_off,
)

__all__ = [
    "BOOT_WAIT",
    "LONG_WAIT",
    "QUEUED_FOR",
    "RABBITMQ_URL",
    "REDIS_CLUSTER_PORTS_BELOW",
    "ROOT",
    "SHORT_SOCKET_TIMEOUT",
    "SLOW_KINDS",
    "WAIT",
    "App",
    "GatedBackend",
    "GatedPostgresBackend",
    "NamespacedResults",
    "PrivateRedis",
    "assert_a_cancelled_message_never_runs",
    "assert_nothing_written",
    "assert_refused",
    "assert_waits_outlast_the_socket_timeout",
    "backend_in",
    "connected_watcher",
    "delete_namespace",
    "free_port",
    "postgres_tables",
    "recorded",
    "require_mark",
    "require_rabbitmq",
    "run_on_both_processes",
    "spin_until_aborted",
    "start_dramatiq",
    "start_private_redis",
    "start_worker",
    "status_of",
    "stop_process_group",
    "unavailable",
    "wait_until",
    "wait_until_cut_off",
]
