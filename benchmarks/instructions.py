"""Instructions the middleware's hooks add per message, counted by
valgrind's callgrind: a figure that a loaded machine does not blur.

The loop is ``hooks.py``'s, in one thread. Each set-up (with ``Abortable``
and without middleware) runs twice under callgrind, with few and with
many messages; the difference of the two counts, divided by the
difference of messages, leaves out start-up and shutdown. The figure is
the difference of that per-message count between the two set-ups.
Garbage collection is off and ``PYTHONHASHSEED`` fixed, so that two runs
agree within about 100 instructions.

    python benchmarks/instructions.py          # needs valgrind on PATH
"""

from __future__ import annotations

import gc
import os
import re
import subprocess
import sys
import tempfile

import common
import hooks
from dramatiq.broker import MessageProxy

#: Messages of the short and the long run.
FEW, MANY = 2_000, 10_000
#: Messages run before counting starts, so that every cache is warm.
WARM_UP = 50


def loop(url: str, abortable: bool, messages: int) -> None:
    """Run ``messages`` through the hooks, as a worker thread would."""
    with common.namespace_on(url, "instructions") as namespace:
        broker, actor, middleware = hooks.setup(url, namespace if abortable else None)
        if middleware is not None:
            common.wait_for(middleware._watcher.connected.is_set, 30, "the watcher to subscribe")
        proxies = [MessageProxy(actor.message()) for _ in range(WARM_UP + messages)]
        gc.freeze()
        gc.disable()
        emit_before, emit_after, fn = broker.emit_before, broker.emit_after, actor.fn
        for message in proxies:
            emit_before("process_message", message)
            result = fn()
            emit_after("process_message", message, result=result)
        if middleware is not None:
            broker.emit_after("worker_shutdown", hooks._Worker())


def counted(url: str, abortable: bool, messages: int) -> int:
    """Instructions callgrind counts for a :func:`loop` of ``messages``."""
    with tempfile.TemporaryDirectory() as directory:
        command = [
            "valgrind",
            "--tool=callgrind",
            f"--callgrind-out-file={os.path.join(directory, 'out')}",
            sys.executable,
            __file__,
            "--loop",
            url,
            "abortable" if abortable else "plain",
            str(messages),
        ]
        environment = {**os.environ, "PYTHONHASHSEED": "0"}
        finished = subprocess.run(
            command, capture_output=True, text=True, env=environment, check=True
        )
    found = re.search(r"Collected : (\d+)", finished.stderr)
    if found is None:
        raise RuntimeError(f"callgrind printed no count: {finished.stderr[-2000:]}")
    return int(found.group(1))


def main() -> None:
    if sys.argv[1:2] == ["--loop"]:
        url, kind, messages = sys.argv[2:5]
        loop(url, kind == "abortable", int(messages))
        return
    args = common.parser(__doc__ or "").parse_args()
    per_message = {}
    for abortable in (False, True):
        few, many = (counted(args.redis_url, abortable, n) for n in (FEW, MANY))
        per_message[abortable] = (many - few) / (MANY - FEW)
    common.emit(
        {"added_instructions": per_message[True] - per_message[False]},
        {"plain_instructions": per_message[False], "abortable_instructions": per_message[True]},
    )


if __name__ == "__main__":
    main()
