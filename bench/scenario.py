"""One run of the broadcast scenario (:func:`run_once`): a target's nodes, its load clients and
a publisher, measured from the first publish to the end of the drain."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import sys
import time
from pathlib import Path
from typing import Any

from bench._common import (
    busy_share,
    censored_percentile,
    machine_cpu_jiffies,
    proc_cpu_seconds,
    proc_rss_kib,
)
from bench.databases import target_database
from bench.nginx import Nginx, site_config
from bench.nodes import (
    SERVER_START_TIMEOUT,
    cleanup_redis,
    free_ports,
    merge_counts,
    run_env,
    signal_profilers,
    split,
    start_nodes,
    wait_ready,
)
from bench.options import Options
from bench.procs import Child, ChildFailed, Children
from bench.targets import Target

SETTLE_S = 1.0
SERVER_LOG_MARKERS = {
    "over_capacity": "over capacity",
    "tracebacks": "Traceback",
    "errors": "ERROR",
}


def _sum_over(pids: list[int], read: Any) -> float | None:
    values = [read(pid) for pid in pids]
    if any(v is None for v in values):
        return None
    return float(sum(values))


def _scan_logs(paths: list[Path]) -> dict[str, int]:
    counts = dict.fromkeys(SERVER_LOG_MARKERS, 0)
    for path in paths:
        try:
            text = path.read_text(errors="replace")
        except OSError:
            continue
        for name, marker in SERVER_LOG_MARKERS.items():
            counts[name] += text.count(marker)
    return counts


async def start_nginx(ports: list[int], run_dir: Path, conns: int) -> tuple[Nginx, int]:
    """docs/deployment.md's nginx in front of the nodes on ``ports``, over plain HTTP (one
    worker, no access log), sized for ``conns`` clients; returns it and its site's port."""
    directory = run_dir / "nginx"
    directory.mkdir()
    directory.chmod(0o755)
    http, site = free_ports(2)
    config = site_config(ports, http, site, "127.0.0.1", None)
    # each client holds two connections in nginx: its own and the one to its node
    proxy = Nginx(directory, config, connections=2 * conns + 256, access_log=False)
    await asyncio.to_thread(proxy.wait_listening, site)
    return proxy, site


async def make_tokens(count: int, path: Path, env: dict[str, str]) -> None:
    """Create ``count`` users and write their tokens to ``path`` (bench/tokens.py)."""
    argv = [sys.executable, "-m", "bench.tokens", "--count", str(count), "--out", str(path)]
    process = await asyncio.create_subprocess_exec(
        *argv, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    _, err = await asyncio.wait_for(process.communicate(), 120 + count / 100)
    if process.returncode != 0:
        raise ChildFailed(f"bench.tokens failed:\n{err.decode()[-2000:]}")


async def run_once(
    target: Target,
    conns: int,
    nodes: int,
    repeat: int,
    opts: Options,
    log_root: Path,
    server: str = "daphne",
    via: str = "direct",
) -> dict[str, Any]:
    """One run of one target at one size, under ``server``, reached ``via`` (``direct`` or
    ``nginx``); returns a flat result row (``error`` if it failed)."""
    prefix = f"bench-{secrets.token_hex(5)}"
    run_dir = log_root / f"{target.name}-{server}-{via}-c{conns}-n{nodes}-r{repeat}"
    run_dir.mkdir(parents=True, exist_ok=True)
    env = run_env(opts.redis_url, target, prefix, run_dir)
    children = Children(run_dir, env)
    row: dict[str, Any] = {
        "target": target.name,
        "nodes": nodes,
        "connections": conns,
        "messages": opts.messages,
        "rate": opts.rate,
        "server": server if target.asgi else "websockets",
        "via": via,
        "repeat": repeat,
        "prefix": prefix,
        "error": None,
    }
    workers: list[Child] = []
    proxy: Nginx | None = None
    database = contextlib.AsyncExitStack()
    tokens_path = run_dir / "tokens.json"
    try:
        await database.enter_async_context(target_database(target, children))
        if target.tokens:  # users and their tokens, in the database the server will use
            await make_tokens(conns, tokens_path, {**os.environ, **env})
        servers, ports = await start_nodes(children, target, nodes, prefix, opts.redis_url, server)
        if via == "nginx":
            proxy, port = await start_nginx(ports, run_dir, conns)
            await wait_ready(servers[0], port, target, SERVER_START_TIMEOUT)
            urls = target.url(port)
        else:
            urls = ",".join(target.url(p) for p in ports)
        await asyncio.sleep(SETTLE_S)
        pids = [s.pid for s in servers]
        rss_before = _sum_over(pids, proc_rss_kib)

        counts = [c for c in split(conns, opts.client_procs) if c > 0]
        offset = 0
        connect_timeout = 60.0 + conns / 50.0
        connect_cpu_before = _sum_over(pids, proc_cpu_seconds)
        for i, count in enumerate(counts):
            argv = [
                sys.executable,
                "-m",
                "bench.loadgen",
                "--urls",
                urls,
                "--protocol",
                target.protocol,
                "--count",
                str(count),
                "--offset",
                str(offset),
                "--messages",
                str(opts.messages),
                "--concurrency",
                str(opts.concurrency),
                "--connect-timeout",
                str(connect_timeout),
                "--ack-batch-ms",
                str(target.ack_batch_ms),
            ]
            if target.tokens:
                argv += ["--tokens", str(tokens_path)]
            if target.batch:
                argv.append("--batch")
            workers.append(await children.start(f"client{i}", argv, pipes=True))
            offset += count
        readies = await asyncio.gather(
            *(w.read_event("ready", connect_timeout + 30.0) for w in workers)
        )
        connected = sum(int(r["connected"]) for r in readies)
        row["connected"] = connected
        row["failed_connections"] = conns - connected
        row["connect_s"] = max(float(r["connect_s"]) for r in readies)
        connect_cpu_after = _sum_over(pids, proc_cpu_seconds)
        if connect_cpu_before is not None and connect_cpu_after is not None:
            # the nodes' CPU from the first load generator's start until every one was ready
            row["connect_cpu_s"] = round(connect_cpu_after - connect_cpu_before, 3)
        row["connect_failures"] = merge_counts(r["fail_reasons"] for r in readies)
        row["connect_retries"] = sum(int(r["retries"]) for r in readies)
        row["connect_retry_reasons"] = merge_counts(r["retry_reasons"] for r in readies)
        row["connect_refused"] = sum(int(r.get("refused", 0)) for r in readies)
        if connected == 0:
            raise ChildFailed(f"no connection could be opened: {row['connect_failures']}")
        await asyncio.sleep(SETTLE_S)
        rss_after = _sum_over(pids, proc_rss_kib)
        cpu_before = _sum_over(pids, proc_cpu_seconds)
        proxy_before = _sum_over(proxy.pids, proc_cpu_seconds) if proxy else None
        machine_before = machine_cpu_jiffies()
        signal_profilers(pids, signal.SIGUSR1)

        publisher = await children.start(
            "publisher",
            [
                sys.executable,
                "-m",
                "bench.publisher",
                "--kind",
                target.publisher,
                "--messages",
                str(opts.messages),
                "--rate",
                str(opts.rate),
                "--prefix",
                prefix,
                "--redis-url",
                opts.redis_url,
                *(["--ack"] if target.publish_ack else []),
            ],
            pipes=True,
        )
        published = await publisher.read_event("done", opts.messages / opts.rate + 90.0)
        t_last = published.get("t_last") or time.time()
        command = {"t_last": t_last, "drain": opts.drain, "idle": opts.idle}
        command["max_drain"] = opts.max_drain
        for w in workers:
            await w.send_line(command)
        results = await asyncio.gather(
            *(w.read_event("result", opts.max_drain + 90.0) for w in workers)
        )
        cpu_after = _sum_over(pids, proc_cpu_seconds)
        signal_profilers(pids, signal.SIGUSR2)
        if proxy is not None and proxy_before is not None:
            proxy_after = _sum_over(proxy.pids, proc_cpu_seconds)
            row["proxy_cpu_s"] = None if proxy_after is None else proxy_after - proxy_before
        rss_end = _sum_over(pids, proc_rss_kib)
    except (ChildFailed, OSError, TimeoutError, RuntimeError) as exc:
        row["error"] = str(exc)
        return row
    finally:
        if proxy is not None:
            await asyncio.to_thread(proxy.stop)
        await children.stop_all()
        await database.aclose()
        # every server started, those of a start that failed half-way included
        started = [c for c in children.started if c.name.startswith("server")]
        row["server_log"] = _scan_logs([c.log_path for c in started])
        try:
            row["redis_keys_deleted"] = await asyncio.to_thread(
                cleanup_redis, opts.redis_url, prefix
            )
        except Exception as exc:  # never let cleanup hide the result; say so instead
            row["redis_cleanup_error"] = f"{type(exc).__name__}: {exc}"

    latencies = sorted(v for r in results for v in r.pop("latencies_ms"))
    stopped_at = min(float(r["stopped_at"]) for r in results)
    first_stop = min(results, key=lambda r: float(r["stopped_at"]))
    machine_after = first_stop.get("machine_jiffies")
    # A message still missing when recording stopped took longer than this, if it comes at all.
    missing_bound_ms = max(stopped_at - t_last, 0.0) * 1000.0
    delivered = sum(int(r["unique"]) for r in results)
    expected = conns * opts.messages
    t_first = published.get("t_first")
    last_rx = max((r["last_rx"] for r in results if r["last_rx"]), default=None)
    span = (last_rx - t_first) if (last_rx and t_first) else None
    for pct in (50, 90, 99):
        value, censored = censored_percentile(latencies, expected, pct, missing_bound_ms)
        row[f"p{pct}_ms"] = value
        row[f"p{pct}_censored"] = censored
    closed: dict[str, int] = {}
    for r in results:
        for code, n in r["closed"].items():
            closed[code] = closed.get(code, 0) + int(n)
    row.update(
        expected=expected,
        delivered=delivered,
        lost=expected - delivered,
        dups=sum(int(r["dups"]) for r in results),
        out_of_range=sum(int(r["out_of_range"]) for r in results),
        delivered_per_s=(delivered / span) if span and span > 0 else None,
        max_ms=latencies[-1] if latencies else None,
        rss_before_kib=rss_before,
        rss_after_kib=rss_after,
        rss_end_kib=rss_end,
        rss_per_conn_kib=(
            (rss_after - rss_before) / connected
            if rss_after is not None and rss_before is not None
            else None
        ),
        server_cpu_s=(
            cpu_after - cpu_before if cpu_after is not None and cpu_before is not None else None
        ),
        client_cpu_s=sum(float(r["cpu_s"]) for r in results),
        drain_s=(last_rx - t_last) if last_rx else None,
        status=max(
            (r["status"] for r in results),
            key=("complete", "idle", "closed", "cutoff").index,
        ),
        closed_codes=closed,
        reconnects=sum(int(r["reconnects"]) for r in results),
        http_requests=sum(int(r.get("http_requests", 0)) for r in results),
        tcp_connects=sum(int(r.get("tcp_connects", 0)) for r in results),
        ack_frames=sum(int(r.get("ack_frames", 0)) for r in results),
        ack_ids=sum(int(r.get("ack_ids", 0)) for r in results),
        batch_frames=sum(int(r.get("batch_frames", 0)) for r in results),
        batched=sum(int(r.get("batched", 0)) for r in results),
        rate_limited=closed.get("4429", 0),
        resets=sum(int(r["resets"]) for r in results),
        client_errors=merge_counts(r["errors"] for r in results),
        publisher={k: v for k, v in published.items() if k not in ("event", "times")},
        publisher_warnings=publisher.warnings,
        publish_call_p99_ms=published.get("call_ms_p99"),
        machine_cpu_busy=busy_share(machine_before, machine_after),
    )
    return row
