"""The reconnect-storm scenario (``python -m bench.run --storm``): N clients with cursors drop
at once and come back while publishing continues.

One run: a private ``redis-server`` on a free loopback port (so its ``INFO commandstats``
counts this run's commands only; the shared Redis of ``--redis-url`` when no
``redis-server`` is installed, then other work's commands count too), one realtime node,
N clients opened as in the broadcast scenario (the time that takes is *connect fresh*), a
publisher at ``--storm-rate``; ``STORM_AFTER_S`` after the first publish every socket is
dropped at once, and each client reconnects after a random pause of up to ``--storm-jitter``
seconds (the JS client's first backoff is up to 0.5 s) and resumes from its cursor. *Resume*
is the time from the drop until the last client has its ``subscribed`` answer again. Redis
commands are counted from the drop until then. Then the drain, as in the broadcast scenario:
every client must hold every message exactly once.

Each repeat runs twice: ``shared`` (this app as it is) and ``unshared``
(``BENCH_UNSHARED_READS=1``: subscriptions read the log once per resume, as before reads were
shared), interleaved.
"""

from __future__ import annotations

import asyncio
import secrets
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from bench._common import median
from bench.nodes import cleanup_redis, free_ports, merge_counts, run_env, split, start_nodes
from bench.procs import ChildFailed, Children
from bench.targets import TARGETS

#: Seconds between the first publish and the drop.
STORM_AFTER_S = 2.0
VARIANTS = ("shared", "unshared", "admission")
STATUS_ORDER = ("complete", "idle", "closed", "cutoff")


def _commandstats(url: str) -> dict[str, int]:
    import redis

    client = redis.Redis.from_url(url, socket_timeout=10)
    try:
        stats = client.info("commandstats")
    finally:
        client.close()
    return {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in stats.items()}


async def _private_redis(children: Children) -> str | None:
    """Start a redis-server on a free loopback port; its URL, or None without the binary."""
    binary = shutil.which("redis-server")
    if binary is None:
        return None
    (port,) = free_ports(1)
    argv = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly"]
    child = await children.start("redis", [*argv, "no", "--maxclients", "20000"])
    url = f"redis://127.0.0.1:{port}/0"
    for _ in range(200):  # bounded: 10 s
        try:
            await asyncio.to_thread(_commandstats, url)
            return url
        except Exception:
            if not child.alive():
                raise ChildFailed(f"redis-server exited:\n{child.log_tail()}") from None
            await asyncio.sleep(0.05)
    raise ChildFailed("redis-server did not answer within 10 s")


async def run_storm(opts: Any, variant: str, repeat: int, log_root: Path) -> dict[str, Any]:
    """One storm run; a flat row (``error`` set if it failed)."""
    target = TARGETS["realtime"]
    conns, messages = opts.storm_connections, opts.storm_messages
    prefix = f"bench-{secrets.token_hex(5)}"
    run_dir = log_root / f"storm-{variant}-r{repeat}"
    run_dir.mkdir(parents=True, exist_ok=True)
    children = Children(run_dir, {})
    row: dict[str, Any] = {
        "variant": variant,
        "connections": conns,
        "messages": messages,
        "rate": opts.storm_rate,
        "error": None,
    }
    redis_url = opts.redis_url
    try:
        private = await _private_redis(children)
        redis_url = private or redis_url
        row["private_redis"] = private is not None
        env = run_env(redis_url, target, prefix, run_dir)
        env["BENCH_UNSHARED_READS"] = "1" if variant == "unshared" else "0"
        if variant == "admission":
            env["BENCH_ADMISSION_RATE"] = str(opts.storm_admission)
        children.base_env = env
        _, (port,) = await start_nodes(children, target, 1, prefix, redis_url, opts.server)
        workers = []
        offset = 0
        for i, count in enumerate(c for c in split(conns, opts.client_procs) if c > 0):
            argv = [sys.executable, "-m", "bench.loadgen", "--urls", target.url(port)]
            argv += ["--protocol", "realtime", "--count", str(count), "--offset", str(offset)]
            argv += ["--messages", str(messages), "--concurrency", str(opts.concurrency)]
            workers.append(await children.start(f"client{i}", argv, pipes=True))
            offset += count
        readies = await asyncio.gather(*(w.read_event("ready", 60 + conns / 20) for w in workers))
        row["connected"] = sum(int(r["connected"]) for r in readies)
        row["connect_s"] = max(float(r["connect_s"]) for r in readies)
        argv = [sys.executable, "-m", "bench.publisher", "--kind", "realtime"]
        argv += ["--messages", str(messages), "--rate", str(opts.storm_rate)]
        argv += ["--prefix", prefix, "--redis-url", redis_url]
        publisher = await children.start("publisher", argv, pipes=True)
        await asyncio.sleep(STORM_AFTER_S)
        before = await asyncio.to_thread(_commandstats, redis_url)
        for w in workers:
            await w.send_line({"storm": opts.storm_jitter, "timeout": 60 + conns / 20})
        stormed = await asyncio.gather(*(w.read_event("stormed", 90 + conns / 20) for w in workers))
        after = await asyncio.to_thread(_commandstats, redis_url)
        published = await publisher.read_event("done", messages / opts.storm_rate + 90.0)
        command = {"t_last": published.get("t_last") or time.time(), "drain": opts.drain}
        command |= {"idle": opts.idle, "max_drain": opts.max_drain}
        for w in workers:
            await w.send_line(command)
        results = await asyncio.gather(
            *(w.read_event("result", opts.max_drain + 90.0) for w in workers)
        )
    except (ChildFailed, OSError, TimeoutError) as exc:
        row["error"] = str(exc)
        return row
    finally:
        await children.stop_all()
        if redis_url == opts.redis_url:
            await asyncio.to_thread(cleanup_redis, redis_url, prefix)
    started = min(float(s["started"]) for s in stormed)
    resume_s = max((s["resume_s"] for s in stormed if s["resume_s"] is not None), default=None)
    ended = started + (resume_s or 0.0)
    diff = {k: v - before.get(k, 0) for k, v in after.items() if v - before.get(k, 0) > 0}
    diff.pop("info", None)  # our own INFO calls
    appends = sum(1 for t in published.get("times", []) if started <= t <= ended)
    delivered = sum(int(r["unique"]) for r in results)
    row.update(
        dropped=sum(int(s["dropped"]) for s in stormed),
        resumed=sum(int(s["resumed"]) for s in stormed),
        resume_s=resume_s,
        resume_p50_s=round(median(s["resume_p50_s"] for s in stormed) or 0.0, 3),
        expected=conns * messages,
        delivered=delivered,
        lost=conns * messages - delivered,
        dups=sum(int(r["dups"]) for r in results),
        resets=sum(int(r["resets"]) for r in results),
        status=max((r["status"] for r in results), key=STATUS_ORDER.index),
        redis_commands=sum(diff.values()),
        redis_by_command=dict(sorted(diff.items(), key=lambda kv: -kv[1])[:8]),
        # EVAL runs the log's read and append scripts: the appends are the messages published
        # during the storm, so the rest are log reads
        log_reads=diff.get("eval", 0) + diff.get("evalsha", 0) - appends,
        appends_during=appends,
        closed=merge_counts(r["closed"] for r in results),
        client_errors=merge_counts(r["errors"] for r in results),
        # handshakes answered "try again later", fresh and during the storm
        refused_fresh=sum(int(r.get("refused", 0)) for r in readies),
        refused=sum(int(r.get("refused", 0)) for r in results)
        - sum(int(r.get("refused", 0)) for r in readies),
    )
    row["timeouts"] = sum(n for k, n in row["client_errors"].items() if "Timeout" in k)
    return row


def format_storm(rows: list[dict[str, Any]]) -> str:
    """The storm table: medians over repeats, one line per variant."""
    lines = [
        "variant    conns  msgs  lost  dup  connect fresh s  resume s  resume/fresh  "
        "timed out  refused  log reads  redis cmds  end",
        "---------  -----  ----  ----  ---  ---------------  --------  ------------  "
        "---------  -------  ---------  ----------  --------",
    ]
    for variant in VARIANTS:
        same = [r for r in rows if r["variant"] == variant and not r.get("error")]
        if not same:
            continue
        m = {k: median(r.get(k) for r in same) for k in _NUMERIC}
        ratio = m["resume_s"] / m["connect_s"] if m["resume_s"] and m["connect_s"] else None
        status = max((r["status"] for r in same), key=STATUS_ORDER.index)
        lines.append(
            f"{variant:<9}  {same[0]['connections']:>5,}  {same[0]['messages']:>4}  "
            f"{m['lost']:>4,.0f}  {m['dups']:>3,.0f}  {m['connect_s']:>15.2f}  "
            f"{m['resume_s'] or 0:>8.2f}  {f'{ratio:.2f}x' if ratio else '-':>12}  "
            f"{m['timeouts']:>9,.0f}  {m['refused']:>7,.0f}  "
            f"{m['log_reads']:>9,.0f}  {m['redis_commands']:>10,.0f}  {status}"
        )
    for r in rows:
        where = f"{r['variant']} (repeat {r.get('repeat', 0) + 1})"
        if r.get("error"):
            lines.append(f"  {where}: ERROR {str(r['error']).splitlines()[0][:300]}")
        else:
            lines.append(
                f"  {where}: {r['resumed']:,}/{r['dropped']:,} resumed, median "
                f"{r['resume_p50_s']} s; {r['appends_during']} messages published during "
                f"the storm; Redis commands {r['redis_by_command']}"
            )
            if r.get("client_errors"):
                lines.append(f"    client errors {r['client_errors']}, closes {r['closed']}")
    return "\n".join(lines)


_NUMERIC = (
    "lost",
    "dups",
    "connect_s",
    "resume_s",
    "timeouts",
    "refused",
    "log_reads",
    "redis_commands",
)


async def run_storms(opts: Any, log_root: Path) -> list[dict[str, Any]]:
    """Every repeat of both variants, interleaved."""
    rows = []
    for repeat in range(opts.repeat):
        for variant in opts.storm_variants:
            print(f"[storm {repeat + 1}/{opts.repeat}] {variant} ...", file=sys.stderr, flush=True)
            row = await run_storm(opts, variant, repeat, log_root)
            row["repeat"] = repeat
            rows.append(row)
    return rows
