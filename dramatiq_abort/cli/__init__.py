"""The ``dramatiq-abort`` command: ``demo`` to see aborts at work, ``abort``,
``list`` and ``web`` for operators. Its arguments (:mod:`.arguments`), its
commands (:mod:`.commands`), what they print (:mod:`.output`) and the demo
(:mod:`.demo`)."""

from .arguments import REDIS_URL_VARIABLE, default_reason
from .commands import ACTOR_CHECK_WAIT, main

__all__ = ["ACTOR_CHECK_WAIT", "REDIS_URL_VARIABLE", "default_reason", "main"]
