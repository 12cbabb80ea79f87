"""The Redis event backend: abort events recorded with their TTL and pushed
to workers over one subscription each."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable
from typing import Any

import redis
from redis.cluster import RedisCluster

from ...backend import Event, EventBackend, MessageRecords, TimedEvent
from ...checks import check_milliseconds, check_redis_url, check_text
from ...mode import AbortMode
from ...wire import event_key
from ..files import shipped_text
from ..pushed import decode_batch, encode_batch, encode_params
from .answers import Answers
from .channels import Channel, PubSubChannel, RawChannel, text
from .clients import client_for_url, database, node_client, socket_timeout
from .subscription import RedisSubscription

__all__ = [
    "CHUNK_SIZE",
    "DEFAULT_MAX_PAYLOAD",
    "DEFAULT_NAMESPACE",
    "HASH_TAG",
    "PLAIN_READS_VARIABLE",
    "RedisBackend",
]

#: The environment variable that makes ``plain_reads`` default to true when
#: it is ``1``, ``true`` or ``yes``.
PLAIN_READS_VARIABLE = "DRAMATIQ_ABORT_PLAIN_READS"

#: The namespace of a backend built without one.
DEFAULT_NAMESPACE = "dramatiq:aborts:"
#: Appended to a namespace without a hash tag, so that all of its keys fall
#: in one slot of a Redis Cluster, as its Lua scripts require.
HASH_TAG = "{aborts}:"
#: Most events recorded and published by one script call: a larger batch
#: is sent in chunks, so that no call blocks Redis for long.
CHUNK_SIZE = 1000
#: Larger than any notification this package sends in one call (about 70
#: bytes an id), small enough that a hostile one cannot exhaust memory.
DEFAULT_MAX_PAYLOAD = 16 * 1024 * 1024

#: The name under which it logs since 2.0, the package's rather than this module's.
logger = logging.getLogger("dramatiq_abort.backends.redis")

# The Lua scripts, each run by Redis as one atomic step: what each does is
# said atop its file.
_NOTIFY = shipped_text(__package__, "scripts/notify.lua")
_RECORD_OUTCOME = shipped_text(__package__, "scripts/record_outcome.lua")
_RECORDED = shipped_text(__package__, "scripts/recorded.lua")


def _safe_repr(value: Any) -> str:
    """A short repr of ``value``, with no password of a URL in it."""
    if isinstance(value, str) and "@" in value:
        return "a str (a URL?)"
    return f"{value!r:.100}"


def _hash_tag(key: str) -> str:
    """The part of ``key`` that Redis Cluster hashes to pick its slot, when
    that is not the whole key."""
    start = key.find("{")
    end = key.find("}", start + 1)
    return key[start + 1 : end] if start >= 0 and end > start + 1 else ""


def _prefix_of(namespace: object) -> str:
    """What every key and channel of ``namespace`` starts with; ``ValueError``
    when it is not a namespace."""
    if not isinstance(namespace, str) or not namespace:
        raise ValueError(f"namespace must be a non-empty str, not {namespace!r:.100}")
    check_text("namespace", namespace)
    prefix = namespace if _hash_tag(namespace) else namespace + HASH_TAG
    if not _hash_tag(prefix):
        raise ValueError(f"namespace {namespace!r} holds an empty hash tag '{{}}'")
    return prefix


class RedisBackend(EventBackend):
    """An event backend for Redis, Redis Sentinel or Redis Cluster.

    Every key and channel starts with ``namespace``, followed by a hash
    tag (``{aborts}:``) unless the namespace has one: all of them are in one
    slot of a cluster. Each event is a key ``prefix + event.key`` holding
    its parameters for its TTL; ``prefix + "index"`` indexes them by expiry,
    and every notification is published on ``prefix + "db<n>:events"``,
    ``n`` being the client's database: Redis hands what is published to the
    subscribers of every database (and of every node of a cluster), so
    applications on different databases of one server never hear each
    other. Workers subscribe once per process, on the node that holds the
    keys, and issue no command while nothing is aborted.

    :param client: The redis-py client: a ``redis.Redis`` (one from a
        Sentinel's ``master_for()`` too) or a ``redis.cluster.RedisCluster``.
        Defaults to one for ``redis://localhost:6379/0``.
    :param namespace: Prefix of every key and of the channels. Applications
        that share a Redis but not their messages use different databases
        or different namespaces.
    :param max_payload: Largest notification or record, in bytes, that is
        read; a larger one is refused with a warning.
    :param plain_reads: Read subscriptions through redis-py's ``PubSub``
        instead of this package's own reads, which keep the GIL and so
        deliver an abort sooner to a process busy with CPU-bound actors
        (see the benchmarks). ``None``: true when the environment variable
        ``DRAMATIQ_ABORT_PLAIN_READS`` is ``1``, ``true`` or ``yes``.
    """

    pushes = True
    records_outcomes = True
    records_reasons = True
    stores_states = True
    carries_answers = True

    def __init__(
        self,
        *,
        client: Any | None = None,
        namespace: str = DEFAULT_NAMESPACE,
        max_payload: int = DEFAULT_MAX_PAYLOAD,
        plain_reads: bool | None = None,
    ) -> None:
        _prefix_of(namespace)
        if isinstance(max_payload, bool) or not isinstance(max_payload, int) or max_payload <= 0:
            raise ValueError(f"max_payload must be a positive number of bytes, not {max_payload!r}")
        if client is not None and not callable(getattr(client, "register_script", None)):
            hint = ": for a URL, use RedisBackend.from_url(url)" if isinstance(client, str) else ""
            raise TypeError(
                f"client must be a redis-py client (redis.Redis or RedisCluster),"
                f" not {_safe_repr(client)}{hint}"
            )
        self.max_payload = max_payload
        if plain_reads is None:
            plain_reads = os.environ.get(PLAIN_READS_VARIABLE, "").lower() in ("1", "true", "yes")
        #: Whether subscriptions are read through redis-py's ``PubSub``.
        self.plain_reads = plain_reads
        self.client: Any = client if client is not None else redis.Redis()
        self.namespace = namespace
        #: What carries a listing's answers.
        self.answers = Answers(self.client, max_payload, socket_timeout(self._node_client()))
        self._notify = self.client.register_script(_NOTIFY)
        self._recorded = self.client.register_script(_RECORDED)
        self._record_outcome = self.client.register_script(_RECORD_OUTCOME)

    @property
    def namespace(self) -> str:
        """The ``namespace`` parameter. Set anew, as the callers of
        dramatiq-abort 1.x may, every key and channel follows it: set it
        before the backend is used."""
        return self._namespace

    @namespace.setter
    def namespace(self, namespace: str) -> None:
        prefix = _prefix_of(namespace)
        self._namespace = namespace
        #: What every key and channel name starts with.
        self.prefix = prefix
        self.index_key = prefix + "index"
        # Channels are server-wide; keys are not: the database in the name
        # keeps apart what the keys of each database keep apart.
        channels = f"{prefix}db{database(self.client)}:"
        #: The channel of every notification: requests, rules, inquiries.
        self.channel = channels + "events"
        #: The channel on which a recorded outcome names its message.
        self.outcomes_channel = channels + "outcomes"

    @classmethod
    def from_url(cls, url: str, *args: Any, **kwargs: Any) -> RedisBackend:
        """Build the backend on a client for ``url`` (``redis://``, ``rediss://``
        or ``unix://``). Extra arguments go to the constructor.

        The client's pool holds up to ``clients.POOL_SIZE`` connections (or the URL's
        ``max_connections``) and makes a thread wait for a free one rather
        than fail, however many threads a worker runs. With ``cluster=true``
        in the query string (``redis://node:7000/0?cluster=true``) the
        client is a ``RedisCluster`` that discovers the cluster from that node.
        """
        return cls(*args, client=client_for_url(check_redis_url(url)), **kwargs)

    def notify(self, events: Iterable[Event], ttl: int) -> None:
        ttl = check_milliseconds("ttl", ttl, positive=True)
        events = list(events)
        if not events:
            return
        chunks = [events[i : i + CHUNK_SIZE] for i in range(0, len(events), CHUNK_SIZE)]
        # A cluster client cannot pipeline scripts.
        if len(chunks) > 1 and not isinstance(self.client, RedisCluster):
            with self.client.pipeline(transaction=False) as pipe:
                for chunk in chunks:
                    self._notify_chunk(chunk, ttl, pipe)
                pipe.execute()
        else:
            for chunk in chunks:
                self._notify_chunk(chunk, ttl, self.client)
        # Redis may answer the script before it writes the pushes to the
        # subscribers; once a second command to the same node is answered,
        # they are out. So when this returns, every worker's socket has the
        # events.
        self.client.exists(self.index_key)

    def _notify_chunk(self, events: list[Event], ttl: int, client: Any) -> None:
        encoded = encode_params(events)
        stored = [f'{{"ttl": {ttl}, "params": {encoded[id(params)]}}}' for _, params in events]
        self._notify(
            keys=[self.index_key, *(self.prefix + key for key, _ in events)],
            args=[ttl, self.channel, encode_batch(events, ttl, encoded), *stored],
            client=client,
        )

    def poll(self, key: str) -> Event | None:
        return self._decode_event(key, self.client.get(self.prefix + key))

    def _decode_event(self, key: str, value: Any) -> Event | None:
        decoded = self._decode_record(key, value)
        return None if decoded is None else decoded[0]

    def wait_many(self, keys: Iterable[str], timeout: int) -> Event | None:
        wanted = set(keys)
        with self.listen(self.channel) as channel:
            # Subscribed first, so an event signaled while looking is pushed.
            for key in wanted:
                event = self.poll(key)
                if event is not None:
                    return event
            for payload in channel.payloads(timeout / 1000):
                for timed in self.decode_pushed(payload):
                    if timed.event.key in wanted:
                        return timed.event
        return None

    def record_state(self, message_id: str, state: str, ttl: int) -> None:
        ttl = check_milliseconds("ttl", ttl, positive=True)
        self.client.set(self._state_key(message_id), state, px=ttl)

    def records(self, message_id: str) -> MessageRecords:
        # All four keys share the namespace's hash tag: one MGET, on a cluster too.
        abort, cancel, outcome, state = self.client.mget(
            [
                self.prefix + event_key(message_id, AbortMode.ABORT),
                self.prefix + event_key(message_id, AbortMode.CANCEL),
                self._outcome_key(message_id),
                self._state_key(message_id),
            ]
        )
        return MessageRecords(
            self._decode_event(event_key(message_id, AbortMode.ABORT), abort),
            self._decode_event(event_key(message_id, AbortMode.CANCEL), cancel),
            None if outcome is None else text(outcome),
            None if state is None else text(state),
        )

    def forget(self, message_id: str) -> None:
        self.client.delete(
            self._outcome_key(message_id),
            self._reason_key(message_id),
            self._state_key(message_id),
        )

    def _outcome_key(self, message_id: str) -> str:
        return self.prefix + "outcome:" + message_id

    def _reason_key(self, message_id: str) -> str:
        return self.prefix + "reason:" + message_id

    def _state_key(self, message_id: str) -> str:
        return self.prefix + "state:" + message_id

    def record_outcome(
        self, message_id: str, outcome: str, ttl: int, *, reason: str | None = None
    ) -> None:
        ttl = check_milliseconds("ttl", ttl, positive=True)
        self._record_outcome(
            keys=[self._outcome_key(message_id), self._reason_key(message_id)],
            args=[
                outcome,
                ttl,
                self.outcomes_channel,
                json.dumps([message_id, outcome]),
                reason or "",
            ],
        )

    def outcome_reason(self, message_id: str) -> str | None:
        reason = self.client.get(self._reason_key(message_id))
        # Empty: the outcome was recorded with no reason.
        return None if reason is None else text(reason) or None

    def wait_outcome(self, message_id: str, timeout: float | None) -> str | None:
        key = self._outcome_key(message_id)
        if timeout is not None and timeout <= 0:
            recorded = self.client.get(key)
            return None if recorded is None else text(recorded)
        with self.listen(self.outcomes_channel) as channel:
            # Subscribed first, so an outcome recorded while looking is pushed.
            recorded = self.client.get(key)
            if recorded is not None:
                return text(recorded)
            for payload in channel.payloads(timeout):
                try:
                    pushed_id, outcome = json.loads(payload)
                except (ValueError, TypeError):
                    logger.warning("Skipping a malformed outcome: %.200r", payload)
                    continue
                if pushed_id == message_id:
                    return str(outcome)
        return None

    def answer(self, reply_to: str, payload: str, ttl: int) -> None:
        self.answers.answer(self._answers_key(reply_to), payload, ttl)

    def collect_answers(self, reply_to: str, expected: int | None, timeout: float) -> list[str]:
        return self.answers.collect(self._answers_key(reply_to), expected, timeout)

    def subscribers(self) -> int | None:
        """How many subscriptions to the events channel Redis counts
        (``PUBSUB NUMSUB``); ``None`` on a cluster, whose nodes count only
        their own, or when the user may not ask."""
        if isinstance(self.client, RedisCluster):
            return None
        try:
            ((_, count),) = self.client.pubsub_numsub(self.channel)
        except (redis.RedisError, ValueError):
            return None
        return int(count)

    def _answers_key(self, reply_to: str) -> str:
        return self.prefix + "answers:" + reply_to

    def subscribe(self) -> RedisSubscription:
        return RedisSubscription(self)

    def listen(self, channel: str) -> Channel:
        """A new connection subscribed to ``channel`` on the node that holds
        this backend's keys, where its scripts publish."""
        kind = PubSubChannel if self.plain_reads else RawChannel
        return kind(self._node_client(), channel, self.max_payload)

    def _node_client(self) -> Any:
        """The ``redis.Redis`` of the node that holds this backend's keys:
        the client itself, unless it is a cluster's."""
        return node_client(self.client, self.index_key)

    def recorded(self) -> list[TimedEvent]:
        """Every event still valid, with the milliseconds it has left."""
        found = self._recorded(keys=[self.index_key])
        events = []
        for i in range(0, len(found), 3):
            key = text(found[i])[len(self.prefix) :]
            decoded = self._decode_record(key, found[i + 1])
            if decoded is not None:
                event, ttl = decoded
                events.append(TimedEvent(event, int(found[i + 2]), ttl))
        return events

    def decode_pushed(self, payload: Any) -> list[TimedEvent]:
        """The events of one published notification; malformed ones are
        logged and skipped."""
        return decode_batch(payload)

    def _decode_record(self, key: str, value: Any) -> tuple[Event, int] | None:
        if value is None:
            return None
        if len(value) > self.max_payload:
            logger.warning("Skipping abort record %r of %d bytes: too large.", key, len(value))
            return None
        try:
            data = json.loads(value)
            params, ttl = data["params"], data["ttl"]
            if not isinstance(params, dict) or not isinstance(ttl, int):
                raise ValueError("bad params or ttl")
        except (ValueError, TypeError, KeyError) as e:
            logger.warning("Skipping malformed abort record %r (%s): %.200r", key, e, value)
            return None
        return Event(key, params), ttl
