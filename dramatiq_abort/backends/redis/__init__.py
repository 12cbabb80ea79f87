"""The Redis event backend: the backend (:mod:`.backend`), its clients
(:mod:`.clients`), a listing's answers (:mod:`.answers`), its Lua scripts
(``scripts/``), its subscribed connections (:mod:`.channels`) and a
worker's subscription (:mod:`.subscription`)."""

from ..sockets import KEEPALIVE
from .backend import DEFAULT_NAMESPACE, PLAIN_READS_VARIABLE, RedisBackend
from .subscription import RedisSubscription

__all__ = [
    "DEFAULT_NAMESPACE",
    "KEEPALIVE",
    "PLAIN_READS_VARIABLE",
    "RedisBackend",
    "RedisSubscription",
]
