"""Per-message cost of the rules in force (``abort_where``), none matching.

The loop of ``hooks.py`` (what a worker thread calls for every message),
with ``Abortable`` on a subscribed ``RedisBackend`` holding 0, 10 and
1,000 rules: half name other actors, a quarter other queues, and a
quarter the looping actor itself, with a ``sent_before`` an hour before
its messages. Rounds rotate between the set-ups; the figure is, for 10 and
1,000 rules, the median per-round difference of wall time per message
with the set-up that holds none, and its spread (largest minus smallest).
Ours only: 1.x has no rules. Run it from the repository's root:
``python benchmarks/rules.py``.
"""

from __future__ import annotations

import logging
import statistics
import time
from typing import Any

import common
import dramatiq
import hooks

#: How many rules each set-up holds.
COUNTS = (0, 10, 1000)


def hold_rules(middleware: Any, count: int) -> None:
    """Record ``count`` rules that match none of the looping actor's
    messages, and wait until the worker holds them."""
    an_hour_ago = time.time() - 3600
    for n in range(count):
        kind = n % 4
        if kind in (0, 1):
            middleware.abort_where(actor=f"other-{n}", abort_ttl=600_000)
        elif kind == 2:
            middleware.abort_where(queue=f"other-{n}", abort_ttl=600_000)
        else:
            middleware.abort_where(
                actor="bench_hooks_noop", sent_before=an_hour_ago, abort_ttl=600_000
            )
    common.wait_for(lambda: len(middleware.rules) == count, 60, f"the worker holds {count} rules")


def main() -> None:
    parser = common.parser(__doc__ or "")
    option = parser.add_argument
    option("--messages", type=int, help="messages per round (default 20000)")
    option("--rounds", type=int, help="rounds of each set-up (default 7; 2 with --quick)")
    args = parser.parse_args()
    messages = args.messages or (5000 if args.quick else 20000)
    rounds = args.rounds or (2 if args.quick else 7)
    # Rules naming actors this process does not declare are warned of, once each.
    logging.getLogger("dramatiq_abort").setLevel(logging.ERROR)
    set_ups: dict[int, tuple[dramatiq.Broker, Any, Any]] = {}
    with common.namespace_on(args.redis_url, "rules") as namespace:
        for count in COUNTS:
            set_ups[count] = hooks.setup(args.redis_url, f"{namespace}{count}:")
            hold_rules(set_ups[count][2], count)
        seconds: dict[int, list[float]] = {count: [] for count in COUNTS}
        for round_ in range(rounds):
            order = COUNTS[round_ % 3 :] + COUNTS[: round_ % 3]
            for count in order:
                broker, actor, _ = set_ups[count]
                seconds[count].append(hooks.looping(broker, actor, 1, messages)[0] * 1e6)
        figures: dict[str, float | None] = {"none_us": statistics.median(seconds[0])}
        details: dict[str, Any] = {"messages": messages, "rounds": rounds}
        for count in COUNTS[1:]:
            added = [ours - none for ours, none in zip(seconds[count], seconds[0], strict=False)]
            figures[f"added_us_{count}"] = statistics.median(added)
            figures[f"added_us_{count}_spread"] = max(added) - min(added)
            details[f"added_us_{count}_all"] = [round(value, 2) for value in added]
        for broker, _, _ in set_ups.values():
            broker.emit_after("worker_shutdown", hooks._Worker())
        common.emit(figures, details)


if __name__ == "__main__":
    main()
