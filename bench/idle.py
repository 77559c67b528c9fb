"""The idle scenario (``python -m bench.run --idle-scenario``): N WebSocket connections open on
one server process and then do nothing but answer the server's pings, as the protocol asks.

One run per target: start one node, open N connections with the broadcast scenario's load
generator (``bench.loadgen``, which answers ``ping`` with ``pong`` and pings nothing itself),
wait ``IDLE_SETTLE_S``, then measure over ``--idle-window`` seconds the server process's CPU
(user + system seconds from ``/proc/PID/stat``, as a percentage of one core) and its RSS with
every connection open minus its RSS before the first one (per connection). Each server keeps
its default heartbeat: realtime ``HEARTBEAT_INTERVAL`` (25 s), daphne's WebSocket ping (20 s)
for plain Channels, ``websockets``' keepalive (20 s) for the bare server. Sockets the server
closed during the window are reported: an idle client that answers its pings must stay.
"""

from __future__ import annotations

import asyncio
import secrets
import sys
import time
from pathlib import Path
from typing import Any

from bench._common import median, proc_cpu_seconds, proc_rss_kib
from bench.nodes import cleanup_redis, merge_counts, run_env, split, start_nodes
from bench.procs import ChildFailed, Children
from bench.targets import TARGETS

#: The targets compared, side by side in one run (those of them ``--targets`` names).
IDLE_TARGETS = ("realtime", "channels-pubsub", "bare")
#: Seconds between the last connection opened and the start of the window (the connects'
#: own work, registry writes included, must not be charged to idle).
IDLE_SETTLE_S = 5.0
#: The issue's targets for realtime: CPU % of one core, KiB per connection.
CPU_TARGET_PCT = 5.0
RSS_TARGET_KIB = 20.0


async def run_idle(opts: Any, name: str, repeat: int, log_root: Path) -> dict[str, Any]:
    """One idle run of target ``name``; a flat row (``error`` set if it failed)."""
    target = TARGETS[name]
    conns = opts.idle_connections
    prefix = f"bench-{secrets.token_hex(5)}"
    run_dir = log_root / f"idle-{name}-r{repeat}"
    run_dir.mkdir(parents=True, exist_ok=True)
    children = Children(run_dir, run_env(opts.redis_url, target, prefix, run_dir))
    row: dict[str, Any] = {"target": name, "connections": conns, "error": None}
    try:
        (server,), (port,) = await start_nodes(
            children, target, 1, prefix, opts.redis_url, opts.server
        )
        await asyncio.sleep(1.0)
        rss_before = proc_rss_kib(server.pid)
        workers = []
        offset = 0
        connect_timeout = 60.0 + conns / 20.0
        for i, count in enumerate(c for c in split(conns, opts.client_procs) if c > 0):
            argv = [sys.executable, "-m", "bench.loadgen", "--urls", target.url(port)]
            argv += ["--protocol", target.protocol, "--count", str(count)]
            argv += ["--offset", str(offset), "--messages", "1"]
            argv += ["--concurrency", str(opts.concurrency)]
            argv += ["--connect-timeout", str(connect_timeout)]
            argv += ["--command-timeout", str(opts.idle_window + IDLE_SETTLE_S + 120.0)]
            workers.append(await children.start(f"client{i}", argv, pipes=True))
            offset += count
        t0 = time.monotonic()
        readies = await asyncio.gather(
            *(w.read_event("ready", connect_timeout + 30.0) for w in workers)
        )
        row["connected"] = sum(int(r["connected"]) for r in readies)
        row["connect_s"] = round(time.monotonic() - t0, 1)
        await asyncio.sleep(IDLE_SETTLE_S)
        cpu0, wall0 = proc_cpu_seconds(server.pid), time.monotonic()
        await asyncio.sleep(opts.idle_window)
        cpu1, wall1 = proc_cpu_seconds(server.pid), time.monotonic()
        rss_after = proc_rss_kib(server.pid)
        if None in (cpu0, cpu1, rss_before, rss_after):
            raise ChildFailed(f"the server exited during the window:\n{server.log_tail()}")
        command = {"t_last": time.time(), "drain": 0.0, "idle": 0.0, "max_drain": 0.0}
        for w in workers:
            await w.send_line(command)
        results = await asyncio.gather(*(w.read_event("result", 60.0) for w in workers))
    except (ChildFailed, OSError, TimeoutError) as exc:
        row["error"] = str(exc)
        return row
    finally:
        await children.stop_all()
        await asyncio.to_thread(cleanup_redis, opts.redis_url, prefix)
    assert cpu0 is not None and cpu1 is not None
    assert rss_before is not None and rss_after is not None
    row.update(
        window_s=round(wall1 - wall0, 1),
        cpu_pct=round(100.0 * (cpu1 - cpu0) / (wall1 - wall0), 2),
        rss_before_kib=rss_before,
        rss_after_kib=rss_after,
        rss_per_conn_kib=round((rss_after - rss_before) / max(1, row["connected"]), 2),
        closed=merge_counts(r["closed"] for r in results),
        client_errors=merge_counts(r["errors"] for r in results),
    )
    return row


def format_idle(rows: list[dict[str, Any]], opts: Any) -> str:
    """The idle table (medians over repeats) and the issue's targets for realtime."""
    lines = [
        "target            conns  connected  connect s  cpu % of a core  RSS/conn KiB  closed",
        "---------------  ------  ---------  ---------  ---------------  ------------  ------",
    ]
    medians: dict[str, dict[str, float | None]] = {}
    for name in IDLE_TARGETS:
        same = [r for r in rows if r["target"] == name and not r.get("error")]
        if not same:
            continue
        m = medians[name] = {
            k: median(r.get(k) for r in same)
            for k in ("connected", "connect_s", "cpu_pct", "rss_per_conn_kib")
        }
        closed = sum(sum(r["closed"].values()) for r in same)
        lines.append(
            f"{name:<15}  {same[0]['connections']:>6,}  {m['connected'] or 0:>9,.0f}  "
            f"{m['connect_s'] or 0:>9.1f}  {m['cpu_pct'] or 0:>15.2f}  "
            f"{m['rss_per_conn_kib'] or 0:>12.2f}  {closed:>6}"
        )
    for r in rows:
        if r.get("error"):
            lines.append(f"  {r['target']}: ERROR {str(r['error']).splitlines()[0][:300]}")
        elif r["closed"] or r["client_errors"]:
            lines.append(f"  {r['target']}: closed {r['closed']}, errors {r['client_errors']}")
    ours = medians.get("realtime")
    if ours:
        cpu, rss = ours["cpu_pct"], ours["rss_per_conn_kib"]
        lines += [
            "",
            f"realtime: server CPU {cpu:.2f}% of one core (target < {CPU_TARGET_PCT:g}%): "
            f"{'PASS' if cpu is not None and cpu < CPU_TARGET_PCT else 'FAIL'}",
            f"realtime: RSS per connection {rss:.2f} KiB (target <= {RSS_TARGET_KIB:g} KiB): "
            f"{'PASS' if rss is not None and rss <= RSS_TARGET_KIB else 'FAIL'}",
        ]
        if opts.idle_connections < 10_000:
            lines.append(
                f"(the issue's targets are for 10,000 connections; this run had "
                f"{opts.idle_connections:,})"
            )
    return "\n".join(lines)


async def run_idles(opts: Any, log_root: Path) -> list[dict[str, Any]]:
    """Every repeat of every idle target, interleaved."""
    rows = []
    for repeat in range(opts.repeat):
        for name in [t for t in IDLE_TARGETS if t in opts.targets]:
            print(f"[idle {repeat + 1}/{opts.repeat}] {name} ...", file=sys.stderr, flush=True)
            t0 = time.monotonic()
            row = await run_idle(opts, name, repeat, log_root)
            row["repeat"] = repeat
            rows.append(row)
            summary = row.get("error") or (
                f"cpu {row['cpu_pct']}%, {row['rss_per_conn_kib']} KiB/conn"
            )
            print(f"    {summary} ({time.monotonic() - t0:.0f} s)", file=sys.stderr, flush=True)
    return rows
