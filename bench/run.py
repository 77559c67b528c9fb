"""Run the broadcast scenario against every target in one go and print one table.

    python -m bench.run                       # 1,000 and 5,000 WebSockets, 1,000 SSE streams,
                                              # 500 long-poll clients; 1 and 2 nodes
    python -m bench.run --quick               # smoke run: 200 of each, 20 messages
    python -m bench.run --connections 1000 --nodes 1 --targets channels-core,bare
    python -m bench.run --targets realtime-sse,realtime-longpoll   # the HTTP transports only
    python -m bench.run --storm               # reconnect storm: 2,000 clients drop and resume
    python -m bench.run --idle-scenario       # 10,000 idle sockets: server CPU and RSS/conn

For each (nodes, connections, target) and each repeat: start the server node(s) on free
127.0.0.1 ports, wait until they answer the target's client, measure their idle RSS, open the
connections from a few load-generator worker processes (round-robin over the nodes), measure
RSS again, run a separate publisher process at the given rate, drain, collect, stop every
process started (by pid) and delete the run's Redis keys (a unique prefix per run; never a
FLUSH). Targets run interleaved within each scenario so they share the machine's conditions.
See bench/README.md for the columns and the caveats.
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from importlib import metadata
from pathlib import Path
from typing import Any

from bench._common import raise_fd_limit
from bench.ack_report import compare_acks, format_ack_checks
from bench.connect_report import format_connect
from bench.nodes import base_env, check_realtime
from bench.options import Options, parse_args
from bench.report import (
    aggregate,
    compare,
    compare_transports,
    format_checks,
    format_table,
    format_transport_checks,
)
from bench.scenario import run_once
from bench.targets import HTTP_TARGETS, REALTIME_TARGETS, TARGETS
from bench.variant_report import (
    compare_variants,
    format_variant_checks,
    is_baseline,
    variant_label,
)


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for dist in ("django", "channels", "daphne", "channels-redis", "redis", "websockets"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "-"
    return out


def _progress(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _gt(row: dict[str, Any], pct: int) -> str:
    return ">" if row.get(f"p{pct}_censored") else ""


def _summary(row: dict[str, Any]) -> str:
    if row.get("error"):
        first = str(row["error"]).splitlines()[0]
        return f"ERROR {first[:200]}"
    p99 = row.get("p99_ms")
    return (
        f"delivered {row['delivered']:,}/{row['expected']:,}, "
        f"p99 {'-' if p99 is None else f'{_gt(row, 99)}{p99:,.0f}'} ms, "
        f"end {row['status']}, conns {row['connected']:,}"
    )


async def _main_scenario(
    opts: Options,
    key: str,
    title: str,
    setup: str,
    run: Callable[[Options, Path], Awaitable[list[dict[str, Any]]]],
    table: Callable[[list[dict[str, Any]]], str],
) -> int:
    """A scenario of its own (storm, idle): ``run`` it, print a heading (``title``, when, how
    long, its ``setup``, the repeats and the load before) and its ``table``, write its rows
    under ``key`` to ``--json``."""
    log_root = Path(tempfile.mkdtemp(prefix="bench-logs-"))
    started = time.time()
    load_before = os.getloadavg()
    rows = await run(opts, log_root)
    print(
        f"\n{title}, {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(started))}, "
        f"{time.time() - started:.0f} s ({setup}; {opts.repeat} repeat(s), medians; load average "
        f"before {', '.join(f'{v:.2f}' for v in load_before)})\n"
    )
    print(table(rows))
    if opts.json_path:
        _write_json(Path(opts.json_path), {"options": asdict(opts), key: rows})
        print(f"JSON written to {opts.json_path}")
    if opts.keep_logs:
        print(f"logs kept in {log_root}")
    else:
        shutil.rmtree(log_root, ignore_errors=True)
    return 1 if any(r.get("error") for r in rows) else 0


async def main_storm(opts: Options) -> int:
    """The storm scenario only (``--storm``): run it, print its table."""
    from bench.storm import format_storm, run_storms

    setup = (
        f"{opts.storm_connections:,} clients, {opts.storm_messages} messages at "
        f"{opts.storm_rate:g}/s, drop after 2 s, reconnect within {opts.storm_jitter:g} s"
    )
    return await _main_scenario(opts, "storm", "Reconnect storm", setup, run_storms, format_storm)


async def main_idle(opts: Options) -> int:
    """The idle scenario only (``--idle-scenario``): run it, print its table."""
    from bench.idle import format_idle, run_idles

    setup = f"{opts.idle_connections:,} connections on one node, {opts.idle_window:g} s window"
    return await _main_scenario(
        opts, "idle", "Idle connections", setup, run_idles, lambda rows: format_idle(rows, opts)
    )


async def main_async(opts: Options) -> int:
    """Run everything, print the report; the exit code is 0 unless a run failed."""
    if opts.storm:
        return await main_storm(opts)
    if opts.idle_scenario:
        return await main_idle(opts)
    env = base_env(opts.redis_url)
    targets = list(opts.targets)
    unavailable: dict[str, str] = {}
    wanted = [t for t in targets if t in REALTIME_TARGETS]
    if wanted:
        http = any(t in HTTP_TARGETS for t in wanted)
        reason = await check_realtime(env, http=http)
        # maybe only the HTTP transports are missing: keep the WebSocket target if it runs
        if reason is not None and http and "realtime" in wanted and not await check_realtime(env):
            wanted = [t for t in wanted if t in HTTP_TARGETS]
        if reason is not None:
            for name in wanted:
                unavailable[name] = reason
                targets.remove(name)
                _progress(f"{name} target unavailable: {reason}")
    log_root = Path(tempfile.mkdtemp(prefix="bench-logs-"))
    started = time.time()
    load_before = os.getloadavg()
    runs: list[dict[str, Any]] = []
    sizes = sorted({c for name in targets for c in opts.sizes(name)})
    plan = [
        (rep, nodes, conns, name, server, via)
        for rep in range(opts.repeat)
        for nodes in opts.nodes
        for conns in sizes
        for name in targets
        for server in (opts.servers if TARGETS[name].asgi else opts.servers[:1])
        for via in opts.via
        if conns in opts.sizes(name)
    ]
    for n, (rep, nodes, conns, name, server, via) in enumerate(plan, 1):
        what = variant_label(name, server, via, opts.servers, opts.via)
        _progress(f"[{n}/{len(plan)}] {what}: {conns:,} connections, {nodes} node(s) ...")
        t0 = time.monotonic()
        row = await run_once(TARGETS[name], conns, nodes, rep, opts, log_root, server, via)
        runs.append(row)
        _progress(f"    {_summary(row)} ({time.monotonic() - t0:.0f} s)")
    rows = []
    for nodes in opts.nodes:
        for conns in sizes:
            for name in targets:
                for server in opts.servers:
                    for via in opts.via:
                        same = [
                            r
                            for r in runs
                            if r["target"] == name
                            and r["nodes"] == nodes
                            and r["connections"] == conns
                            and r["server"] in (server, "websockets")
                            and r["via"] == via
                        ]
                        if same and not (server != opts.server and same[0]["server"] != server):
                            row = aggregate(same)
                            row.update(server=same[0]["server"], via=via)
                            row["label"] = variant_label(name, server, via, opts.servers, opts.via)
                            rows.append(row)
    # The targets' checks compare the baseline (first server, first route) with each other.
    baseline = [r for r in rows if is_baseline(r, opts.servers, opts.via)]
    checks = compare(baseline)
    transport_checks = compare_transports(baseline)
    ack_checks = compare_acks(baseline)
    variant_checks = compare_variants(rows, opts.servers, opts.via)
    elapsed = time.time() - started
    meta = {
        "started": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started)),
        "elapsed_s": round(elapsed, 1),
        "cpus": os.cpu_count(),
        "loadavg_before": [round(v, 2) for v in load_before],
        "versions": _versions(),
        "options": asdict(opts),
        "unavailable": unavailable,
        "logs": str(log_root) if opts.keep_logs else None,
    }
    print(render_report(meta, rows, checks, runs, opts, transport_checks, ack_checks))
    if variant_checks:
        print(
            "\nThe same target under each server and route, against "
            f"{opts.server}, {opts.via[0]} (ratios of the medians within this run):\n"
            + format_variant_checks(variant_checks)
        )
    for server in opts.servers:  # the plain-Channels rows run under each server too
        under = [r for r in rows if r.get("server") in (server, "websockets")]
        under = [r for r in under if r.get("via") == opts.via[0]]
        connect_lines = format_connect(under, server if len(opts.servers) > 1 else None)
        if connect_lines:
            print("\n" + connect_lines)
    if opts.json_path:
        document = {
            "meta": meta,
            "results": rows,
            "checks": checks,
            "transport_checks": transport_checks,
            "ack_checks": ack_checks,
            "variant_checks": variant_checks,
            "runs": runs,
        }
        _write_json(Path(opts.json_path), document)
        print(f"JSON written to {opts.json_path}")
    if opts.keep_logs:
        print(f"logs kept in {log_root}")
    else:
        shutil.rmtree(log_root, ignore_errors=True)
    return 1 if any(r.get("error") for r in runs) else 0


def _write_json(path: Path, document: dict[str, Any]) -> None:
    path.write_text(json.dumps(document, indent=2, default=str) + "\n")


def render_report(
    meta: dict[str, Any],
    rows: list[dict[str, Any]],
    checks: list[dict[str, Any]],
    runs: list[dict[str, Any]],
    opts: Options,
    transport_checks: list[dict[str, Any]] | None = None,
    ack_checks: list[dict[str, Any]] | None = None,
) -> str:
    """The whole printed report: context, table, ratios, notes."""
    v = meta["versions"]
    lines = [
        "",
        f"Broadcast benchmark, {meta['started']}, {meta['elapsed_s']:.0f} s "
        f"({opts.messages} messages at {opts.rate:g}/s per run, "
        f"{opts.repeat} repeat(s), medians shown; Django targets under "
        f"{' and '.join(opts.servers)}; clients {' and '.join(opts.via)})",
        f"Machine: {meta['cpus']} CPU(s), load average before "
        f"{', '.join(map(str, meta['loadavg_before']))}. Servers, Redis, the publisher and "
        f"{opts.client_procs} load-generator process(es) all share these CPUs, so every "
        "number is a lower bound on what the server alone could do.",
        f"Python {v['python']}, Django {v['django']}, Channels {v['channels']}, "
        f"daphne {v['daphne']}, channels-redis {v['channels-redis']}, redis-py {v['redis']}, "
        f"websockets {v['websockets']}.",
        "",
        format_table(rows),
        "",
        "Targets for realtime (ratios within this run):",
        format_checks(checks),
    ]
    if transport_checks:
        lines += [
            "",
            "realtime over SSE and long-poll, against realtime over WebSocket at the same size "
            "(ratios within this run; no targets set beyond zero loss):",
            format_transport_checks(transport_checks),
        ]
    if ack_checks:
        lines += [
            "",
            "realtime with ack=True messages, against realtime without ACKs at the same size "
            "(ratios within this run):",
            format_ack_checks(ack_checks),
        ]
    for name, reason in meta["unavailable"].items():
        lines.append(f"{name} target unavailable: {reason}")
    notes = []
    for r in runs:
        where = f"{r['target']} {r['connections']:,}x{r['nodes']}"
        if (r.get("server"), r.get("via")) != (opts.server, "direct"):
            where += f" ({r.get('server')}, {r.get('via')})"
        if r.get("error"):
            notes.append(f"{where}: ERROR {str(r['error']).splitlines()[0][:300]}")
            continue
        log = r.get("server_log") or {}
        if log.get("over_capacity"):
            notes.append(f"{where}: server log has {log['over_capacity']} 'over capacity' lines")
        if log.get("tracebacks"):
            notes.append(f"{where}: server log has {log['tracebacks']} tracebacks")
        if r.get("closed_codes"):
            protocol = TARGETS[r["target"]].protocol
            what = {
                "sse": "streams that ended or broke",
                "longpoll": "polls that failed (HTTP status or error)",
            }.get(protocol, "sockets closed by the server")
            notes.append(f"{where}: {what}: {r['closed_codes']}")
        if r.get("reconnects"):
            notes.append(f"{where}: {r['reconnects']} resumed reconnects (from the cursor)")
        if r.get("connect_retries"):
            notes.append(
                f"{where}: {r['connect_retries']} handshakes retried {r['connect_retry_reasons']}"
            )
        if r.get("connect_failures"):
            notes.append(f"{where}: connect failures {r['connect_failures']}")
        if r.get("publisher", {}).get("errors"):
            notes.append(f"{where}: publish errors: {r['publisher'].get('first_error')}")
        if r.get("client_errors"):
            notes.append(f"{where}: client errors {r['client_errors']}")
        busy = r.get("machine_cpu_busy")
        if busy is not None and busy >= 0.85:
            notes.append(
                f"{where}: the machine's CPUs were {busy:.0%} busy from first publish to the end "
                "of the drain; servers and clients were competing for them"
            )
    if notes:
        lines += ["", "Notes:", *(f"  {n}" for n in notes)]
    lines += [
        "",
        "end: complete = every connection got every message; idle = nothing arrived for "
        f"{opts.idle:g} s after the {opts.drain:g} s drain; cutoff = still arriving at "
        f"{opts.max_drain:g} s after the last publish (the rest counts as lost); closed = some "
        "sockets were closed by the server and not resumed.",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point."""
    raise_fd_limit()
    opts = parse_args(argv)
    try:
        code = asyncio.run(main_async(opts))
    except KeyboardInterrupt:
        code = 130
    sys.exit(code)


if __name__ == "__main__":
    main()
