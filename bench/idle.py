"""The idle scenario (``python -m bench.run --idle-scenario``): N WebSocket connections open on
one server process and then do nothing but answer the server's pings, as the protocol asks.

One run per target: start one node, open N connections with the broadcast scenario's load
generator (``bench.loadgen``, which answers ``ping`` with ``pong`` and pings nothing itself),
wait ``IDLE_SETTLE_S``, then measure over ``--idle-window`` seconds the server process's CPU
(user + system seconds from ``/proc/PID/stat``, as a percentage of one core) and its RSS with
every connection open minus its RSS before the first one (per connection). Each target keeps
its heartbeat: realtime ``HEARTBEAT_INTERVAL`` (25 s, the server's own ping off, as
docs/deployment.md runs it), the server's WebSocket ping (20 s) for plain Channels,
``websockets``' keepalive (20 s) for the bare server. Sockets the server
closed during the window are reported: an idle client that answers its pings must stay.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import sys
import time
from pathlib import Path
from typing import Any, NamedTuple

from bench._common import median, proc_cpu_seconds, proc_rss_kib
from bench.nodes import cleanup_redis, free_ports, merge_counts, run_env, split, wait_ready
from bench.procs import ChildFailed, Children
from bench.targets import TARGETS

BENCH_DIR = Path(__file__).resolve().parent
#: The targets compared, side by side in one run (those of them ``--targets`` names).
IDLE_TARGETS = ("realtime", "channels-pubsub", "asgi-floor", "bare")
#: Seconds between the last connection opened and the start of the window (the connects'
#: own work, registry writes included, must not be charged to idle).
IDLE_SETTLE_S = 5.0
#: The issue's targets for realtime: CPU % of one core, KiB per connection.
CPU_TARGET_PCT = 5.0
RSS_TARGET_KIB = 20.0


class IdleRun(NamedTuple):
    """One column of the idle table: a target under a server, maybe from another checkout."""

    target: str
    server: str
    label: str
    code: str | None = None  # a checkout whose realtime/ replaces ours (``--idle-code``)
    server_pings: bool | None = None  # None: the target's default (off for realtime)


def idle_runs(opts: Any) -> list[IdleRun]:
    """What one repeat runs: each target of ``--targets`` under each server of ``--servers``
    (the bare server once); `realtime` also with the server's own pings on
    (``--idle-server-pings``) and from each ``--idle-code`` checkout (with them on, as the
    commands documented before they were turned off)."""
    runs = []
    for name in [t for t in IDLE_TARGETS if t in opts.targets]:
        for server in opts.servers if TARGETS[name].asgi else opts.servers[:1]:
            suffix = f"/{server}" if len(opts.servers) > 1 and TARGETS[name].asgi else ""
            runs.append(IdleRun(name, server, name + suffix))
            if name != "realtime":
                continue
            if opts.idle_server_pings:
                runs.append(IdleRun(name, server, f"{name}+pings{suffix}", server_pings=True))
            for label, path in opts.idle_code:
                # another checkout as it was run then: with the server's own pings
                runs.append(IdleRun(name, server, f"{name}@{label}{suffix}", path, True))
    return runs


async def run_idle(opts: Any, run: IdleRun, repeat: int, log_root: Path) -> dict[str, Any]:
    """One idle run of ``run``; a flat row (``error`` set if it failed)."""
    name = run.target
    target = TARGETS[name]
    conns = opts.idle_connections
    prefix = f"bench-{secrets.token_hex(5)}"
    run_dir = log_root / f"idle-{run.label.replace('@', '-').replace('/', '-')}-r{repeat}"
    run_dir.mkdir(parents=True, exist_ok=True)
    env = run_env(opts.redis_url, target, prefix, run_dir)
    shim: Path | None = None
    if run.code:
        # only the package comes from the other checkout: the same bench app runs it. The
        # server starts in this directory, which Python imports from before PYTHONPATH.
        shim = run_dir / "code"
        shim.mkdir(exist_ok=True)
        (shim / "realtime").symlink_to(Path(run.code) / "realtime")
        (shim / "bench").symlink_to(BENCH_DIR)
    profile = run_dir / "server.pstats"
    if opts.idle_profile and target.asgi is not None:
        env["BENCH_PROFILE_FILE"] = str(profile)
    children = Children(run_dir, env)
    row: dict[str, Any] = {
        "target": name,
        "label": run.label,
        "server": run.server,
        "connections": conns,
        "error": None,
    }
    try:
        (port,) = free_ports(1)
        argv = target.server_command(port, prefix, opts.redis_url, run.server, run.server_pings)
        server = await children.start("server0", argv, cwd=shim)
        await wait_ready(server, port, target, 60.0)
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
        profiling = "BENCH_PROFILE_FILE" in env
        if profiling:
            os.kill(server.pid, signal.SIGUSR1)
        cpu0, wall0 = proc_cpu_seconds(server.pid), time.monotonic()
        await asyncio.sleep(opts.idle_window)
        cpu1, wall1 = proc_cpu_seconds(server.pid), time.monotonic()
        if profiling:
            os.kill(server.pid, signal.SIGUSR2)
            for _ in range(100):  # written by the server's signal handler
                if profile.exists():
                    break
                await asyncio.sleep(0.1)
            row["profile"] = str(profile)
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
    """The idle table (medians over repeats) and the issue's targets for each `realtime` row."""
    lines = [
        f"{'target':<25}  {'conns':>7}  connected  connect s  {'cpu % of a core':>15}  "
        "RSS/conn KiB  closed",
        f"{'-' * 25}  {'-' * 7}  ---------  ---------  {'-' * 15}  ------------  ------",
    ]
    medians: dict[str, dict[str, float | None]] = {}
    for run in idle_runs(opts):
        same = [r for r in rows if r["label"] == run.label and not r.get("error")]
        if not same:
            continue
        m = medians[run.label] = {
            k: median(r.get(k) for r in same)
            for k in ("connected", "connect_s", "cpu_pct", "rss_per_conn_kib")
        }
        closed = sum(sum(r["closed"].values()) for r in same)
        lines.append(
            f"{run.label:<25}  {same[0]['connections']:>7,}  {m['connected'] or 0:>9,.0f}  "
            f"{m['connect_s'] or 0:>9.1f}  {m['cpu_pct'] or 0:>15.2f}  "
            f"{m['rss_per_conn_kib'] or 0:>12.2f}  {closed:>6}"
        )
    for r in rows:
        if r.get("error"):
            lines.append(f"  {r['label']}: ERROR {str(r['error']).splitlines()[0][:300]}")
        elif r["closed"] or r["client_errors"]:
            lines.append(f"  {r['label']}: closed {r['closed']}, errors {r['client_errors']}")
    ours = {label: m for label, m in medians.items() if label.startswith("realtime")}
    if ours:
        lines.append("")
    for label, m in ours.items():
        cpu, rss = m["cpu_pct"], m["rss_per_conn_kib"]
        lines += [
            f"{label}: server CPU {cpu:.2f}% of one core (target < {CPU_TARGET_PCT:g}%): "
            f"{'PASS' if cpu is not None and cpu < CPU_TARGET_PCT else 'FAIL'}; "
            f"RSS per connection {rss:.2f} KiB (target <= {RSS_TARGET_KIB:g} KiB): "
            f"{'PASS' if rss is not None and rss <= RSS_TARGET_KIB else 'FAIL'}",
        ]
    if ours and opts.idle_connections < 10_000:
        lines.append(
            f"(the issue's targets are for 10,000 connections; this run had "
            f"{opts.idle_connections:,})"
        )
    if opts.idle_profile:
        lines.append("(profiled: cProfile inflates the CPU figures; profiles printed above)")
    return "\n".join(lines)


async def run_idles(opts: Any, log_root: Path) -> list[dict[str, Any]]:
    """Every repeat of every idle run, interleaved; with ``--idle-profile``, each profile's
    summary goes to stderr."""
    from bench.profiling import summary

    rows = []
    runs = idle_runs(opts)
    for repeat in range(opts.repeat):
        for run in runs:
            print(f"[idle {repeat + 1}/{opts.repeat}] {run.label} ...", file=sys.stderr, flush=True)
            t0 = time.monotonic()
            row = await run_idle(opts, run, repeat, log_root)
            row["repeat"] = repeat
            rows.append(row)
            summary_line = row.get("error") or (
                f"cpu {row['cpu_pct']}%, {row['rss_per_conn_kib']} KiB/conn"
            )
            print(
                f"    {summary_line} ({time.monotonic() - t0:.0f} s)", file=sys.stderr, flush=True
            )
            if row.get("profile"):
                text = await asyncio.to_thread(summary, Path(row["profile"]))
                print(text, file=sys.stderr, flush=True)
    return rows
