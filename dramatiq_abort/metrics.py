"""Prometheus metrics of aborts: the requests workers receive, what becomes
of the messages they reach, and how long interrupting a message takes."""

from __future__ import annotations

import importlib.util
import logging
import threading
import time
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

import dramatiq

from .dramatiq_internals import prometheus_dir
from .mode import AbortMode
from .outcome import Outcome
from .worker.requests import AbortRequest

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

__all__ = ["AbortMetrics", "check_metrics", "worker_metrics"]

#: Upper bounds of the interrupt histogram's buckets, in seconds: an abort
#: with no grace lands within milliseconds, one with a grace after it.
INTERRUPT_BUCKETS = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1,
    2.5,
    5,
    10,
    30,
    60,
    300,
    900,
    float("inf"),
)


class AbortMetrics:
    """The abort metrics of one worker process, in ``registry``.

    Only abort paths count: a message that no abort request reaches costs
    nothing here.
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        # Imported here: prometheus_client chooses whether it writes the
        # files shared between processes once, as it is imported, and
        # Prometheus sets up that directory only as the process boots.
        from prometheus_client import Counter, Histogram

        #: Where the metrics are registered.
        self.registry = registry
        #: Requests each worker process received, by mode.
        self.requests = Counter(
            "dramatiq_abort_requests_total",
            "The total number of abort requests received by worker processes, by mode;"
            " each process counts each request once.",
            ["mode"],
            registry=registry,
        )
        #: What became of the messages that a request reached, by actor.
        self.outcomes = Counter(
            "dramatiq_abort_outcomes_total",
            "The total number of messages an abort request reached, by actor and by what"
            " became of them: cancelled, aborted, stopped or finished.",
            ["actor_name", "outcome"],
            registry=registry,
        )
        #: Seconds from a request being recorded to its message ending aborted.
        self.interrupt_seconds = Histogram(
            "dramatiq_abort_interrupt_seconds",
            "The time from an abort request being recorded in the backend to the message"
            " it targets ending aborted, grace included.",
            buckets=INTERRUPT_BUCKETS,
            registry=registry,
        )

    def received(
        self, requests: Iterable[AbortRequest], before: Mapping[str, AbortRequest | None]
    ) -> None:
        """Count the requests that one batch of events recorded by the
        watcher added, ``before`` being the request each of their messages
        had in force before the batch.

        An abort request travels as a cancel and an abort event: counted
        once, as an abort. A request the process holds already, as the
        watcher catches up after reconnecting, is not counted again; an
        abort that follows a cancel of the same message is.
        """
        interrupts: dict[str, bool] = {}
        for request in requests:
            interrupts[request.message_id] = (
                interrupts.get(request.message_id, False) or request.interrupts
            )
        added = {AbortMode.ABORT: 0, AbortMode.CANCEL: 0}
        for message_id, interrupting in interrupts.items():
            held = before.get(message_id)
            if held is None:
                added[AbortMode.ABORT if interrupting else AbortMode.CANCEL] += 1
            elif interrupting and not held.interrupts:
                added[AbortMode.ABORT] += 1
        for mode, count in added.items():
            if count:
                self.requests.labels(mode.value).inc(count)

    def ended(self, actor_name: str, outcome: Outcome, request: AbortRequest | None) -> None:
        """Count what became of a message of ``actor_name`` that ``request``
        reached; an aborted one is also timed from when it was sent."""
        self.outcomes.labels(actor_name, outcome.value).inc()
        if outcome is Outcome.ABORTED and request is not None:
            self.interrupt_seconds.observe(max(0.0, time.monotonic() - request.sent_at))


#: The metrics of this process, made by the first worker that boots with them.
_process_metrics: AbortMetrics | None = None
_lock = threading.Lock()


def check_metrics(metrics: object, name: str = "metrics") -> bool | None:
    """Accept ``True``, ``False`` or ``None`` for ``Abortable(metrics=...)``
    (or the setting ``name``); ``True`` only when prometheus_client is installed."""
    if metrics is not None and not isinstance(metrics, bool):
        raise TypeError(f"{name} must be True, False or None, not {metrics!r:.100}")
    # find_spec, not an import: see AbortMetrics.
    if metrics and importlib.util.find_spec("prometheus_client") is None:
        raise ImportError(
            f"{name}=True needs prometheus_client:"
            " install it with pip install 'dramatiq-abort[metrics]'"
        )
    return metrics


def worker_metrics(
    broker: dramatiq.Broker, enabled: bool | None, logger: logging.Logger
) -> AbortMetrics | None:
    """The metrics a worker of ``broker`` counts in, made on first call in
    this process, or ``None`` when it counts none. Called at worker boot,
    once dramatiq's ``Prometheus`` middleware (if any) has set up its
    directory.

    :param enabled: ``None``: count when ``broker`` has dramatiq's
        ``Prometheus`` middleware; ``True``: count in any case; ``False``: never.
    """
    global _process_metrics
    if enabled is False:
        return None
    path, problem = prometheus_dir(broker)
    if problem is not None:
        logger.warning(
            "dramatiq %s is not shaped as dramatiq-abort expects: %s. Abort metrics"
            " go to prometheus_client's default registry of this process instead.",
            dramatiq.__version__,
            problem,
        )
    if enabled is None and path is None and problem is None:
        return None
    with _lock:
        if _process_metrics is None:
            from prometheus_client import REGISTRY, CollectorRegistry

            # With Prometheus, its exposition server reads every process's
            # files, not a registry: a registry of their own keeps them
            # out of any other exposition, as Prometheus does with its own.
            registry = REGISTRY if path is None else CollectorRegistry()
            _process_metrics = AbortMetrics(registry)
        return _process_metrics
