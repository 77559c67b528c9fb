"""Small helpers shared by the orchestrator, the servers, the load generator and the publisher."""

from __future__ import annotations

import json
import math
import os
import resource
import socket
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

#: The topic (realtime) / group (Channels) / Redis channel suffix (bare) every target uses.
TOPIC = "bench"
#: The event name of published messages on the realtime target.
EVENT = "tick"
#: Where the repository root is: subprocesses run from here so `bench` and `realtime` import.
REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
#: Offered next to ``realtime.v1`` by a client that takes ``batch`` frames (docs/protocol.md).
BATCH_SUBPROTOCOL = "realtime.batch"


def raise_fd_limit() -> int:
    """Raise this process's soft RLIMIT_NOFILE to its hard limit; return the new soft limit.

    Thousands of sockets per process need far more than the usual 1,024 descriptors. Called
    at the start of every process the harness runs (and, through ``preexec_fn``, before
    ``exec`` of daphne, which inherits it).
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = 1 << 20
    if soft == resource.RLIM_INFINITY or soft >= hard:
        return soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ValueError, OSError):
        return soft
    return hard


def redis_url_from_env() -> str:
    """The Redis URL for this run: ``BENCH_REDIS_URL``, else ``REDIS_URL``, else loopback."""
    return os.environ.get("BENCH_REDIS_URL") or os.environ.get("REDIS_URL") or DEFAULT_REDIS_URL


def require_loopback_redis(url: str) -> str:
    """Return ``url`` if it points at a loopback Redis; raise ``SystemExit`` otherwise.

    The harness only ever talks to 127.0.0.1: it creates and deletes keys and may push a lot of
    traffic, which must never reach a shared remote server by mistake.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss") or parts.hostname not in LOOPBACK_HOSTS:
        raise SystemExit(f"bench: refusing non-loopback Redis URL {url!r}; use redis://127.0.0.1")
    return url


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now (the server binds it a moment later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def percentile(sorted_values: Sequence[float], pct: float) -> float | None:
    """The ``pct`` percentile (0-100) of already sorted values, nearest-rank; None if empty."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(pct / 100.0 * len(sorted_values)))
    return float(sorted_values[min(rank, len(sorted_values)) - 1])


def censored_percentile(
    sorted_values: Sequence[float], total: int, pct: float, lower_bound: float
) -> tuple[float | None, bool]:
    """The ``pct`` percentile over ``total`` samples of which only ``sorted_values`` were seen.

    The missing samples (messages never delivered within the wait) are known only to be larger
    than ``lower_bound``. Returns ``(value, censored)``: when the percentile falls among the
    missing ones, ``value`` is that lower bound and ``censored`` is True; the true percentile is
    larger. None when there are no samples at all.
    """
    if total <= 0:
        return None, False
    rank = max(1, math.ceil(pct / 100.0 * total))
    if rank <= len(sorted_values):
        return float(sorted_values[rank - 1]), False
    return float(lower_bound), True


def median(values: Iterable[float | None]) -> float | None:
    """The median of the values that are not None; None when there are none."""
    present = sorted(v for v in values if v is not None)
    if not present:
        return None
    mid = len(present) // 2
    if len(present) % 2:
        return present[mid]
    return (present[mid - 1] + present[mid]) / 2.0


def emit(event: str, **fields: Any) -> None:
    """Write one JSON line for the orchestrator on stdout and flush it at once."""
    sys.stdout.write(json.dumps({"event": event, **fields}, separators=(",", ":")) + "\n")
    sys.stdout.flush()


class BatchCounts(Protocol):
    """Where :func:`unbatch` counts the ``batch`` frames and the frames they held."""

    batch_frames: int
    batched: int


def unbatch(frame: dict[str, Any], counts: BatchCounts) -> list[dict[str, Any]]:
    """The server frames a decoded realtime frame stands for, in order: those a ``batch``
    frame holds (docs/protocol.md, "Batch frames"; counted in ``counts``), any other frame
    alone."""
    if frame.get("type") != "batch":
        return [frame]
    frames: list[dict[str, Any]] = frame.get("frames") or []
    counts.batch_frames += 1
    counts.batched += len(frames)
    return frames


def busy_share(before: Sequence[int] | None, after: Sequence[int] | None) -> float | None:
    """How busy the machine's CPUs were between two :func:`machine_cpu_jiffies` readings
    (0 to 1); None without both."""
    if before is None or after is None or after[1] <= before[1]:
        return None
    return round((after[0] - before[0]) / (after[1] - before[1]), 3)


def proc_rss_kib(pid: int) -> int | None:
    """Resident set size of ``pid`` in KiB from /proc (VmRSS); None if the process is gone."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    return None


def proc_cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds used so far by ``pid`` (from /proc/PID/stat); None if gone."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as fh:
            raw = fh.read()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # The command name may contain spaces and parentheses: split after its last ")".
    fields = raw[raw.rfind(")") + 2 :].split()
    ticks = int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
    return ticks / os.sysconf("SC_CLK_TCK")


def machine_cpu_jiffies() -> tuple[int, int] | None:
    """(busy, total) jiffies of all CPUs since boot, from /proc/stat; None where unavailable.

    The difference of two readings tells how busy the whole machine was in between, Redis,
    the publisher and other tenants included.
    """
    try:
        with open("/proc/stat", encoding="ascii") as fh:
            first = fh.readline().split()
    except OSError:
        return None
    if not first or first[0] != "cpu":
        return None
    values = [int(v) for v in first[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
    total = sum(values[:8])  # guest time is already counted in user
    return total - idle, total
