"""Run every benchmark under this checkout's dramatiq-abort and under the
published 1.2.1 (installed in a throwaway venv), and print one table.

    python benchmarks/run.py [--quick] [--only NAME ...]

The interpreter that runs this script runs "ours", with the repository
root first on PYTHONPATH; it needs dramatiq and redis installed. The venv
gets the same dramatiq and redis-py versions, so only dramatiq-abort
differs. Unless ``--redis-url`` is given, the benchmarks run against a
private redis-server started for the run (and ``idle`` always does).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
BASELINE = "1.2.1"


@dataclass(frozen=True)
class Row:
    """One line of the table: a figure of one benchmark."""

    benchmark: str
    figure: str
    label: str
    unit: str
    lower_is_better: bool
    #: The figure ours is meant to reach (at most, or at least when higher is better).
    target: float | None = None
    digits: int = 0
    #: Whether the figure depends on the dramatiq-abort version, so that ours
    #: and 1.2.1 can be compared.
    compare: bool = True


ROWS = [
    Row("latency", "idle_p50_ms", "abort latency, idle worker, p50", "ms", True, 8, 1),
    Row("latency", "idle_p99_ms", "abort latency, idle worker, p99", "ms", True, 15, 1),
    Row("latency", "busy_io_p50_ms", "abort latency, 20 I/O-bound tasks, p50", "ms", True, 8, 1),
    Row("latency", "busy_io_p99_ms", "abort latency, 20 I/O-bound tasks, p99", "ms", True, 30, 1),
    Row("latency", "busy_cpu_p50_ms", "abort latency, 20 CPU-bound tasks, p50", "ms", True, 50, 1),
    Row("latency", "busy_cpu_p99_ms", "abort latency, 20 CPU-bound tasks, p99", "ms", True, 30, 1),
    Row("throughput", "rate_without", "throughput, no middleware", "msg/s", False, None, 0, False),
    Row("throughput", "rate_with", "throughput, with Abortable", "msg/s", False),
    Row("throughput", "ratio", "throughput with / without", "", False, 0.98, digits=3),
    Row("throughput", "pair_ratio_median", "  median of pair ratios", "", False, 0.98, digits=3),
    Row("throughput", "pair_ratio_spread", "  spread of pair ratios", "", True, None, 3, False),
    Row("hooks", "plain_us_1", "hook loop, 1 thread, no middleware", "µs", True, None, 2, False),
    Row("hooks", "added_us_1", "hook loop, 1 thread, added", "µs", True, 3, 2),
    Row("hooks", "added_us_1_spread", "  spread over rounds", "µs", True, None, 2, False),
    Row("hooks", "plain_us_8", "hook loop, 8 threads, no middleware", "µs", True, None, 2, False),
    Row("hooks", "added_us_8", "hook loop, 8 threads, added", "µs", True, 4, 2),
    Row("hooks", "added_us_8_spread", "  spread over rounds", "µs", True, None, 2, False),
    Row("idle", "no_messages", "idle Redis commands, no message", "cmd/s", True, 0, digits=2),
    Row("idle", "running", "idle Redis commands, 8 running", "cmd/s", True, 0, digits=2),
    Row("abort_requested", "default_us", "abort_requested() per call", "µs", True, 1, digits=3),
    Row("abort_requested", "explicit_us", "abort_requested(middleware=m)", "µs", True, digits=3),
    Row("abort_requested", "get_p50_us", "for scale: Redis GET, p50", "µs", True, None, 1, False),
    Row("abort_requested", "get_p99_us", "for scale: Redis GET, p99", "µs", True, None, 1, False),
]
BENCHMARKS = list(dict.fromkeys(row.benchmark for row in ROWS))
#: The benchmarks whose figures depend on how subscriptions are read: they
#: run a second time with ``DRAMATIQ_ABORT_PLAIN_READS=1``.
READS = frozenset({"latency", "throughput", "hooks"})
#: The variable that makes RedisBackend read through redis-py's PubSub.
PLAIN_READS_VARIABLE = "DRAMATIQ_ABORT_PLAIN_READS"


@dataclass
class Side:
    """One dramatiq-abort under test: the interpreter that has it."""

    name: str
    python: str
    env: dict[str, str]
    #: Where its dramatiq_abort must be imported from; None: wherever pip put it.
    package_dir: Path | None
    #: Extra arguments per benchmark.
    args: dict[str, list[str]]
    #: The benchmarks it runs; None: all of them.
    runs: frozenset[str] | None = None
    results: dict[str, dict[str, Any]] = field(default_factory=dict)
    failed: list[str] = field(default_factory=list)


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    option = parser.add_argument
    option("--quick", action="store_true", help="few samples: a smoke run of a minute or two")
    option("--only", action="append", choices=BENCHMARKS, help="run only this one (repeatable)")
    option(
        "--redis-url",
        help="run against this Redis instead of a private redis-server "
        "(keys go under a namespace of their own and are deleted)",
    )
    option(
        "--baseline-python",
        help=f"an interpreter that has dramatiq-abort {BASELINE}, instead of a throwaway venv",
    )
    option(
        "--latency-samples",
        type=int,
        nargs=2,
        metavar=("OURS", "BASELINE"),
        help="aborts per latency case (default 100 40; 10 5 with --quick)",
    )
    option(
        "--ours-ref",
        metavar="REF",
        help="benchmark dramatiq_abort/ as committed at this git revision instead of "
        "the working tree",
    )
    option("--seed", type=int, default=1, help="seed of the random abort delays")
    return parser.parse_args()


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def make_baseline(directory: str, notes: list[str]) -> str:
    """Install dramatiq-abort 1.2.1 in a venv under ``directory``; its python."""
    venv = os.path.join(directory, "venv")
    subprocess.run([sys.executable, "-m", "venv", venv], check=True)
    python = os.path.join(venv, "bin", "python")
    same = [f"{name}=={importlib.metadata.version(name)}" for name in ("dramatiq", "redis")]
    attempts = [
        # 1.2.1's [redis] extra asks for redis<6: first try without it, on ours' versions.
        (
            [f"dramatiq-abort=={BASELINE}", *same],
            "without its [redis] extra (which asks for redis<6), on the same "
            "dramatiq and redis-py as ours",
        ),
        ([f"dramatiq-abort[redis]=={BASELINE}"], "with its [redis] extra, on versions pip chose"),
    ]
    for requirements, how in attempts:
        log(f"installing {' '.join(requirements)} in a throwaway venv")
        pip = [python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
        pip += requirements
        if subprocess.run(pip).returncode == 0:
            notes.append(f"dramatiq-abort {BASELINE} was installed {how}.")
            return python
    raise RuntimeError(f"could not install dramatiq-abort {BASELINE}")


def git(*args: str) -> str:
    done = subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True)
    return done.stdout.strip() if done.returncode == 0 else ""


def ours_source(ref: str | None, directory: str, notes: list[str]) -> Path:
    """The directory to import our dramatiq_abort from: the checkout, or
    ``ref`` exported under ``directory``."""
    if ref is None:
        head = git("rev-parse", "--short", "HEAD") or "?"
        changed = git("status", "--porcelain", "--", "dramatiq_abort")
        state = "with uncommitted changes" if changed else "clean"
        notes.append(f"ours is the working tree's dramatiq_abort/ (HEAD {head}, {state}).")
        return REPO
    commit = git("rev-parse", "--short", f"{ref}^{{commit}}")
    if not commit:
        raise RuntimeError(f"no git revision {ref!r} in {REPO}")
    root = Path(directory, "ours")
    root.mkdir()
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", "--format=tar", commit, "dramatiq_abort"],
        check=True,
        capture_output=True,
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(root)], input=archive, check=True)
    notes.append(f"ours is dramatiq_abort/ as committed at {ref} ({commit}).")
    return root


def sides(ours_root: Path, baseline_python: str, latency_samples: Sequence[int]) -> list[Side]:
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    path = os.pathsep.join(filter(None, [str(ours_root), os.environ.get("PYTHONPATH")]))
    ours_env = {**env, "PYTHONPATH": path}
    plain_env = {**ours_env, PLAIN_READS_VARIABLE: "1"}
    ours, baseline = (["--samples", str(count)] for count in latency_samples)
    package = ours_root / "dramatiq_abort"
    return [
        Side("ours", sys.executable, ours_env, package, {"latency": ours}),
        Side("ours, plain reads", sys.executable, plain_env, package, {"latency": ours}, READS),
        Side(BASELINE, baseline_python, env, None, {"latency": baseline}),
    ]


def run_benchmark(side: Side, benchmark: str, common_args: list[str], cwd: str) -> None:
    """Run one benchmark program under one side and keep the JSON it printed;
    if it fails, say so and go on with the others."""
    command = [side.python, str(HERE / f"{benchmark}.py"), *common_args]
    command += side.args.get(benchmark, [])
    started = time.monotonic()
    log(f"running {benchmark} under {side.name} ...")
    done = subprocess.run(
        command, env=side.env, cwd=cwd, capture_output=True, text=True, timeout=1800
    )
    if done.returncode != 0:
        log(f"{benchmark} failed under {side.name}:\n{done.stderr}")
        side.failed.append(benchmark)
        return
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    log(f"  {time.monotonic() - started:.0f} s")
    check_package(side, result["package"])
    side.results[benchmark] = result


def check_package(side: Side, package: dict[str, str]) -> None:
    """Refuse results that came from the wrong dramatiq-abort."""
    if side.package_dir is not None:
        imported = package["dramatiq_abort_file"]
        if Path(imported) != side.package_dir:
            raise RuntimeError(f"{side.name} imported dramatiq_abort from {imported}")
    elif package["dramatiq_abort"] != BASELINE:
        raise RuntimeError(f"the baseline imported dramatiq-abort {package['dramatiq_abort']}")


def server_version(url: str) -> str:
    import redis

    client = redis.Redis.from_url(url)
    try:
        return str(client.info("server").get("redis_version", "?"))
    finally:
        client.close()


def figure(side: Side, row: Row) -> float | None:
    result = side.results.get(row.benchmark)
    return None if result is None else result["figures"].get(row.figure)


def number(value: float | None, digits: int) -> str:
    if value is None or math.isnan(value):
        return "—"
    return f"{value:,.{digits}f}"


def gain(row: Row, ours: float | None, baseline: float | None) -> str:
    """How many times better ours is than the baseline (> 1: ours is better)."""
    if not row.compare:
        return ""
    if ours is None or baseline is None or math.isnan(ours) or math.isnan(baseline):
        return "—"
    better, worse = (baseline, ours) if row.lower_is_better else (ours, baseline)
    if worse == 0:
        return "same" if better == 0 else "∞"
    return f"{better / worse:,.2f}x"


def verdict(row: Row, ours: float | None) -> tuple[str, str]:
    """The target as text, and whether ours meets it (by how much it misses)."""
    if row.target is None:
        return "", ""
    sign = "≤" if row.lower_is_better else "≥"
    target = f"{sign} {number(row.target, row.digits)}"
    if ours is None or math.isnan(ours):
        return target, "—"
    miss = ours - row.target if row.lower_is_better else row.target - ours
    if miss <= 0:
        return target, "yes"
    times = f" ({ours / row.target:.1f}x)" if row.lower_is_better and row.target else ""
    return target, f"NO, by {number(miss, row.digits)}{times}"


def table(rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [
        "  ".join(
            [row[0].ljust(widths[0])]
            + [c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=False)]
        )
        for row in rows
    ]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def report(sides: Sequence[Side], selected: list[str]) -> str:
    """The table: a column per side, then how ours (the first side)
    compares with 1.2.1 (the last) and with its target."""
    cells = [["figure", "unit", *(side.name for side in sides), "ours better by", "target", "met"]]
    for row in ROWS:
        if row.benchmark not in selected:
            continue
        values = [figure(side, row) for side in sides]
        shown = [
            number(value, row.digits) if side.runs is None or row.benchmark in side.runs else ""
            for side, value in zip(sides, values, strict=False)
        ]
        cells.append(
            [
                row.label,
                row.unit,
                *shown,
                gain(row, values[0], values[-1]),
                *verdict(row, values[0]),
            ]
        )
    return table(cells)


def details(sides: Sequence[Side]) -> Iterator[str]:
    """The lines under the table: versions, sample counts, single runs."""
    for side in sides:
        results = side.results
        if side.failed:
            yield f"{side.name}: FAILED (see the log above): {', '.join(side.failed)}"
        if not results:
            continue
        package = next(iter(results.values()))["package"]
        yield (
            f"{side.name}: dramatiq-abort {package['dramatiq_abort']}, dramatiq "
            f"{package['dramatiq']}, redis-py {package['redis']}, Python {package['python']}"
        )
        if "latency" in results:
            latency = results["latency"]["details"]
            yield (
                f"  latency: a worker of {latency['threads']} threads (worker_timeout "
                f"{latency['worker_timeout_ms']} ms); aborts sent 0-{latency['max_delay_s']} s "
                "after the actor started (uniform)"
            )
            for case in ("idle", "busy_io", "busy_cpu"):
                counts = latency.get(case)
                if counts is None:
                    continue
                yield (
                    f"  latency, {case}: {counts['n']} aborts, {counts['missed']} missed, "
                    f"max {number(counts['max'], 1)} ms"
                )
        if "throughput" in results:
            throughput = results["throughput"]["details"]
            for case in ("without", "with"):
                rates = ", ".join(number(rate, 0) for rate in throughput[f"rates_{case}"])
                yield f"  throughput {case} Abortable, msg/s per run: {rates}"
        if "hooks" in results:
            hooks = results["hooks"]["details"]
            for threads in (1, 8):
                rounds = ", ".join(number(us, 2) for us in hooks[f"added_us_{threads}_all"])
                cpu = number(hooks[f"added_us_{threads}_cpu"], 2)
                yield (
                    f"  hook loop, {threads} thread(s), µs added per message by round: {rounds};"
                    f" in CPU time, median {cpu}"
                )
        if "idle" in results:
            idle = results["idle"]["details"]
            for case in ("no_messages", "running"):
                counted = sorted(idle[case]["with"]["backend"].items())
                commands = ", ".join(f"{name} {rate:.2f}/s" for name, rate in counted)
                yield f"  idle, {case}: commands to the backend: {commands or 'none'}"


@contextmanager
def redis_for_run(url: str | None) -> Iterator[str]:
    if url is not None:
        yield url
        return
    import common

    with common.private_redis() as private:
        yield private


def main() -> None:
    args = arguments()
    selected = [name for name in BENCHMARKS if not args.only or name in args.only]
    latency_samples = args.latency_samples or ([10, 5] if args.quick else [100, 40])
    notes: list[str] = []
    load_before = os.getloadavg()
    started = time.monotonic()
    with ExitStack() as stack:
        directory = stack.enter_context(tempfile.TemporaryDirectory(prefix="dramatiq-abort-bench-"))
        ours_root = ours_source(args.ours_ref, directory, notes)
        # The benchmarks' shared module (for the private redis-server) imports dramatiq_abort.
        sys.path.insert(0, str(ours_root))
        baseline_python = args.baseline_python or make_baseline(directory, notes)
        url = stack.enter_context(redis_for_run(args.redis_url))
        every = sides(ours_root, baseline_python, latency_samples)
        common_args = ["--redis-url", url, "--seed", str(args.seed)]
        common_args += ["--quick"] if args.quick else []
        for benchmark in selected:
            for side in every:
                if side.runs is None or benchmark in side.runs:
                    run_benchmark(side, benchmark, common_args, directory)
        version = server_version(url)
    load_after = os.getloadavg()
    print(report(every, selected))
    print()
    for line in [*details(every), *notes]:
        print(line)
    print(
        f"redis-server {version}; {os.cpu_count()} CPUs; load average {load_before[0]:.2f} before, "
        f"{load_after[0]:.2f} after; {time.monotonic() - started:.0f} s in all"
        + (" (--quick: too few samples to trust)" if args.quick else "")
    )


if __name__ == "__main__":
    main()
