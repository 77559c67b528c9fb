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

import argparse
import asyncio
import contextlib
import json
import os
import platform
import secrets
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from bench._common import (
    REPO_ROOT,
    censored_percentile,
    free_port,
    machine_cpu_jiffies,
    proc_cpu_seconds,
    proc_rss_kib,
    raise_fd_limit,
    redis_url_from_env,
    require_loopback_redis,
)
from bench.ack_report import compare_acks, format_ack_checks
from bench.asgi_servers import ASGI_SERVERS
from bench.connect_report import format_connect
from bench.databases import target_database
from bench.loadgen import make_client
from bench.nginx import Nginx, site_config
from bench.procs import Child, ChildFailed, Children
from bench.recording import Stats
from bench.report import (
    aggregate,
    compare,
    compare_transports,
    format_checks,
    format_table,
    format_transport_checks,
)
from bench.targets import (
    ACK_TARGETS,
    HTTP_TARGETS,
    REALTIME_TARGETS,
    ROUTES,
    TARGETS,
    Target,
)
from bench.variant_report import (
    compare_variants,
    format_variant_checks,
    is_baseline,
    variant_label,
)

DEFAULT_TARGETS = (
    "realtime",
    "realtime-redis",
    "channels-core",
    "channels-pubsub",
    "bare",
    "realtime-sse",
    "realtime-longpoll",
    "realtime-ack",
    "realtime-ack-batch",
)
SERVER_START_TIMEOUT = 60.0
SETTLE_S = 1.0
SERVER_LOG_MARKERS = {
    "over_capacity": "over capacity",
    "tracebacks": "Traceback",
    "errors": "ERROR",
}


@dataclass(frozen=True)
class Options:
    """Everything one invocation runs."""

    connections: list[int]
    messages: int
    rate: float
    nodes: list[int]
    targets: list[str]
    repeat: int
    client_procs: int
    concurrency: int
    drain: float
    idle: float
    max_drain: float
    redis_url: str
    json_path: str | None
    keep_logs: bool
    quick: bool
    #: ASGI servers of the Django targets; each run compares them, the first is the baseline.
    servers: tuple[str, ...] = ("daphne",)
    #: How the clients reach the nodes: ``direct`` (split over them), ``nginx`` (through
    #: docs/deployment.md's configuration, plain HTTP); the first is the baseline.
    via: tuple[str, ...] = ("direct",)
    #: Sizes of the HTTP-transport targets (``--connections`` sizes the WebSocket ones).
    sse_connections: tuple[int, ...] = (1000,)
    longpoll_connections: tuple[int, ...] = (500,)
    ack_connections: tuple[int, ...] = (1000,)
    #: The storm scenario (bench/storm.py) instead of the broadcast one.
    storm: bool = False
    storm_connections: int = 2000
    storm_messages: int = 100
    storm_rate: float = 5.0
    storm_jitter: float = 0.5
    storm_variants: tuple[str, ...] = ("shared", "admission")
    storm_admission: float = 300.0
    #: The idle scenario (bench/idle.py) instead of the broadcast one.
    idle_scenario: bool = False
    idle_connections: int = 10_000
    idle_window: float = 60.0
    #: Idle: other checkouts whose ``realtime`` the `realtime` target also runs, as
    #: ``label=path`` (A/B in one run), and whether to profile the server over the window.
    idle_code: tuple[tuple[str, str], ...] = ()
    idle_profile: bool = False
    idle_server_pings: bool = False

    @property
    def server(self) -> str:
        """The baseline server (the only one the storm and idle scenarios use)."""
        return self.servers[0]

    def sizes(self, target: str) -> list[int]:
        """The connection counts ``target`` runs at."""
        if target in ACK_TARGETS:
            return list(self.ack_connections)
        if target == "realtime-sse":
            return list(self.sse_connections)
        if target == "realtime-longpoll":
            return list(self.longpoll_connections)
        return list(self.connections)


def _int_list(text: str) -> list[int]:
    values = [int(part.replace("_", "")) for part in text.split(",") if part.strip()]
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError("expected positive integers, e.g. 1000,5000")
    return values


def parse_args(argv: list[str] | None = None) -> Options:
    """Parse the command line (``--quick`` changes the defaults it is not given)."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.run",
        description="Broadcast benchmark: realtime (WebSocket, SSE, long-poll) vs plain Channels "
        "vs a bare websockets server.",
    )
    parser.add_argument(
        "--connections", type=_int_list, help="WebSocket targets: default 1000,5000 (quick: 200)"
    )
    parser.add_argument(
        "--sse-connections", type=_int_list, help="SSE streams: default 1000 (quick: 200)"
    )
    parser.add_argument(
        "--longpoll-connections",
        type=_int_list,
        help="long-poll clients: default 500 (quick: 200)",
    )
    parser.add_argument(
        "--ack-connections",
        type=_int_list,
        help="realtime-ack and realtime-ack-batch clients: default 1000 (quick: 200)",
    )
    parser.add_argument("--messages", type=int, help="messages per run (default 40, quick: 20)")
    parser.add_argument("--rate", type=float, default=50.0, help="messages per second (50)")
    parser.add_argument("--nodes", type=_int_list, default=[1, 2], help="default 1,2")
    parser.add_argument("--targets", default=",".join(DEFAULT_TARGETS))
    parser.add_argument("--repeat", type=int, default=1, help="repeats; medians are reported")
    parser.add_argument("--client-procs", type=int, default=2, help="load-generator processes")
    parser.add_argument("--concurrency", type=int, default=100, help="handshakes per process")
    parser.add_argument("--drain", type=float, help="min. wait after the last publish (10, q: 3)")
    parser.add_argument("--idle", type=float, help="then stop after this long idle (2, q: 1.5)")
    parser.add_argument("--max-drain", type=float, help="hard stop after last publish (45, q: 15)")
    parser.add_argument(
        "--server",
        choices=ASGI_SERVERS,
        help="ASGI server of the Django targets (daphne; uvicorn to compare)",
    )
    parser.add_argument(
        "--servers",
        help="ASGI servers compared in one run, interleaved per repeat (e.g. daphne,uvicorn)",
    )
    parser.add_argument(
        "--via",
        default="direct",
        help="direct, nginx, or both (direct,nginx): clients through docs/deployment.md's nginx",
    )
    parser.add_argument(
        "--storm",
        action="store_true",
        help="run the reconnect-storm scenario (bench/storm.py) instead of the broadcast one",
    )
    parser.add_argument("--storm-connections", type=int, default=2000, help="storm: clients")
    parser.add_argument("--storm-messages", type=int, default=100, help="storm: messages (100)")
    parser.add_argument("--storm-rate", type=float, default=5.0, help="storm: messages/s (5)")
    parser.add_argument(
        "--storm-jitter", type=float, default=0.5, help="storm: reconnect pause up to (0.5 s)"
    )
    parser.add_argument(
        "--storm-variants",
        default="shared,admission",
        help="storm: variants to run, of shared, unshared, admission (shared,admission)",
    )
    parser.add_argument(
        "--storm-admission",
        type=float,
        default=300.0,
        help="storm: ADMISSION_RATE of the admission variant (300 connections/s)",
    )
    parser.add_argument(
        "--idle-scenario",
        action="store_true",
        help="run the idle scenario (bench/idle.py) instead of the broadcast one",
    )
    parser.add_argument(
        "--idle-connections", type=int, help="idle: connections (10,000; quick: 1,000)"
    )
    parser.add_argument("--idle-window", type=float, help="idle: CPU window (60 s; quick: 20)")
    parser.add_argument(
        "--idle-code",
        default="",
        help="idle: also run `realtime` from these checkouts, LABEL=PATH[,LABEL=PATH] (A/B)",
    )
    parser.add_argument(
        "--idle-profile",
        action="store_true",
        help="idle: cProfile the server over the window (inflates its CPU figure)",
    )
    parser.add_argument(
        "--idle-server-pings",
        action="store_true",
        help="idle: also run `realtime` with the ASGI server's own WebSocket pings on",
    )
    parser.add_argument("--redis-url", default=redis_url_from_env())
    parser.add_argument("--json", dest="json_path", help="also write the results to this file")
    parser.add_argument("--keep-logs", action="store_true", help="keep the processes' logs")
    parser.add_argument("--quick", action="store_true", help="smoke run, well under 2 minutes")
    args = parser.parse_args(argv)
    targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    unknown = [t for t in targets if t not in TARGETS]
    if unknown:
        parser.error(f"unknown target(s) {unknown}; choose from {', '.join(TARGETS)}")
    if "asgi-floor" in targets and not args.idle_scenario:
        parser.error("the asgi-floor target is for --idle-scenario only")
    if args.messages is not None and args.messages < 1:
        parser.error("--messages must be at least 1")
    if args.rate <= 0 or args.repeat < 1 or args.client_procs < 1 or args.concurrency < 1:
        parser.error("--rate, --repeat, --client-procs and --concurrency must be positive")
    if args.server and args.servers:
        parser.error("--server and --servers exclude each other")
    servers = _choices(parser, "--servers", args.servers or args.server or "daphne", ASGI_SERVERS)
    via = _choices(parser, "--via", args.via, ROUTES)
    if "nginx" in via and args.nodes != [2]:
        parser.error("--via nginx runs the documented upstream of two nodes: use --nodes 2")
    quick = bool(args.quick)
    return Options(
        connections=args.connections or ([200] if quick else [1000, 5000]),
        messages=args.messages or (20 if quick else 40),
        rate=args.rate,
        nodes=args.nodes,
        targets=targets,
        repeat=args.repeat,
        client_procs=args.client_procs,
        concurrency=args.concurrency,
        drain=args.drain if args.drain is not None else (3.0 if quick else 10.0),
        idle=args.idle if args.idle is not None else (1.5 if quick else 2.0),
        max_drain=args.max_drain if args.max_drain is not None else (15.0 if quick else 45.0),
        redis_url=require_loopback_redis(args.redis_url),
        json_path=args.json_path,
        keep_logs=args.keep_logs,
        quick=quick,
        servers=servers,
        via=via,
        sse_connections=tuple(args.sse_connections or ([200] if quick else [1000])),
        longpoll_connections=tuple(args.longpoll_connections or ([200] if quick else [500])),
        ack_connections=tuple(args.ack_connections or ([200] if quick else [1000])),
        storm=args.storm,
        storm_connections=args.storm_connections,
        storm_messages=args.storm_messages,
        storm_rate=args.storm_rate,
        storm_jitter=args.storm_jitter,
        storm_variants=tuple(v for v in args.storm_variants.split(",") if v),
        storm_admission=args.storm_admission,
        idle_scenario=args.idle_scenario,
        idle_connections=args.idle_connections or (1000 if quick else 10_000),
        idle_window=args.idle_window or (20.0 if quick else 60.0),
        idle_code=_idle_code(parser, args.idle_code),
        idle_profile=args.idle_profile,
        idle_server_pings=args.idle_server_pings,
    )


def _idle_code(parser: argparse.ArgumentParser, text: str) -> tuple[tuple[str, str], ...]:
    pairs = []
    for item in filter(None, (i.strip() for i in text.split(","))):
        label, _, path = item.partition("=")
        if not path or not (Path(path) / "realtime" / "__init__.py").exists():
            parser.error(f"--idle-code: {item!r} is not LABEL=PATH of a checkout with realtime/")
        pairs.append((label, str(Path(path).resolve())))
    return tuple(pairs)


def _choices(
    parser: argparse.ArgumentParser, option: str, text: str, allowed: Sequence[str]
) -> tuple[str, ...]:
    values = tuple(dict.fromkeys(v.strip() for v in text.split(",") if v.strip()))
    if not values or any(v not in allowed for v in values):
        parser.error(f"{option}: choose from {', '.join(allowed)}")
    return values


def base_env(redis_url: str) -> dict[str, str]:
    """The environment of every child: ours, minus proxies, plus the repo on the path."""
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"
    env["REDIS_URL"] = redis_url
    env["BENCH_REDIS_URL"] = redis_url
    env.pop("DJANGO_SETTINGS_MODULE", None)
    return env


async def check_realtime(
    env: dict[str, str], http: bool = False, timeout: float = 90.0
) -> str | None:
    """None if the realtime targets can run here; otherwise why not, in one line.

    With ``http``, the HTTP transports' URLs (``realtime.urls``) must import too.
    """
    if not (REPO_ROOT / "realtime" / "asgi.py").exists():
        return "realtime/asgi.py does not exist yet"
    code = (
        "import django; django.setup(); import realtime; "
        "realtime.publish; realtime.apublish; realtime.register_topic; realtime.allow_any; "
        "from realtime.asgi import get_asgi_application; "
        "import bench.realtime_app.asgi"
    )
    if http:
        code += "; import realtime.urls; from django.urls import reverse; reverse('realtime:sse')"
    child_env = {
        **env,
        "DJANGO_SETTINGS_MODULE": TARGETS["realtime"].settings or "",
        "BENCH_PREFIX": f"bench-check-{secrets.token_hex(4)}",
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        code,
        cwd=REPO_ROOT,
        env=child_env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        _, err = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
        return f"importing it took more than {timeout:.0f} s"
    if proc.returncode != 0:
        lines = err.decode(errors="replace").strip().splitlines()
        return lines[-1] if lines else f"exit code {proc.returncode}"
    return None


def cleanup_redis(redis_url: str, prefix: str) -> int:
    """Delete the keys of one run (those containing its unique prefix); return how many."""
    import redis

    client = redis.Redis.from_url(redis_url, socket_timeout=10)
    deleted = 0
    try:
        batch: list[bytes] = []
        for key in client.scan_iter(match=f"*{prefix}*", count=1000):
            batch.append(key)
            if len(batch) >= 500:
                deleted += int(client.unlink(*batch))
                batch.clear()
        if batch:
            deleted += int(client.unlink(*batch))
    finally:
        client.close()
    return deleted


async def wait_ready(child: Child, port: int, target: Target, timeout: float) -> None:
    """Wait until the node completes a handshake (WebSocket, or subscribed over SSE or
    long-poll) the way a load client does."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    url = target.url(port)
    last_error = "not tried"
    while loop.time() < deadline:
        if not child.alive():
            raise ChildFailed(
                f"{child.name} exited (code {child.proc.returncode}):\n{child.log_tail()}"
            )
        probe = make_client(target.protocol, [url], 0, 1, Stats(), 5.0)
        try:
            await asyncio.wait_for(probe.open(), 10.0)
            return
        except Exception as exc:
            last_error = f"{type(exc).__name__}: {exc}"
        finally:
            await probe.abort()
        await asyncio.sleep(0.25)
    raise ChildFailed(
        f"{child.name} did not accept a {target.protocol} client in {timeout:.0f} s "
        f"({last_error}):\n{child.log_tail()}"
    )


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


def _split(total: int, parts: int) -> list[int]:
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


async def start_nginx(ports: list[int], run_dir: Path, conns: int) -> tuple[Nginx, int]:
    """docs/deployment.md's nginx in front of the nodes on ``ports``, over plain HTTP (one
    worker, no access log), sized for ``conns`` clients; returns it and its site's port."""
    directory = run_dir / "nginx"
    directory.mkdir()
    directory.chmod(0o755)
    http, site = _free_ports(2)
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
    env = {
        **base_env(opts.redis_url),
        **target.process_env(),
        "BENCH_PREFIX": prefix,
        "BENCH_DB": str(run_dir / "db.sqlite3"),
    }
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
    servers: list[Child] = []
    proxy: Nginx | None = None
    database = contextlib.AsyncExitStack()
    tokens_path = run_dir / "tokens.json"
    try:
        await database.enter_async_context(target_database(target, children))
        if target.tokens:  # users and their tokens, in the database the server will use
            await make_tokens(conns, tokens_path, {**os.environ, **env})
        ports = _free_ports(nodes)
        for i, port in enumerate(ports):
            argv = target.server_command(port, prefix, opts.redis_url, server)
            servers.append(await children.start(f"server{i}", argv))
        await asyncio.gather(
            *(
                wait_ready(s, p, target, SERVER_START_TIMEOUT)
                for s, p in zip(servers, ports, strict=True)
            )
        )
        if via == "nginx":
            proxy, port = await start_nginx(ports, run_dir, conns)
            await wait_ready(servers[0], port, target, SERVER_START_TIMEOUT)
            urls = target.url(port)
        else:
            urls = ",".join(target.url(p) for p in ports)
        await asyncio.sleep(SETTLE_S)
        pids = [s.pid for s in servers]
        rss_before = _sum_over(pids, proc_rss_kib)

        counts = [c for c in _split(conns, opts.client_procs) if c > 0]
        offset = 0
        connect_timeout = 60.0 + conns / 50.0
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
            workers.append(await children.start(f"client{i}", argv, pipes=True))
            offset += count
        readies = await asyncio.gather(
            *(w.read_event("ready", connect_timeout + 30.0) for w in workers)
        )
        connected = sum(int(r["connected"]) for r in readies)
        row["connected"] = connected
        row["failed_connections"] = conns - connected
        row["connect_s"] = max(float(r["connect_s"]) for r in readies)
        row["connect_failures"] = _merge_counts(r["fail_reasons"] for r in readies)
        row["connect_retries"] = sum(int(r["retries"]) for r in readies)
        row["connect_retry_reasons"] = _merge_counts(r["retry_reasons"] for r in readies)
        row["connect_refused"] = sum(int(r.get("refused", 0)) for r in readies)
        if connected == 0:
            raise ChildFailed(f"no connection could be opened: {row['connect_failures']}")
        await asyncio.sleep(SETTLE_S)
        rss_after = _sum_over(pids, proc_rss_kib)
        cpu_before = _sum_over(pids, proc_cpu_seconds)
        proxy_before = _sum_over(proxy.pids, proc_cpu_seconds) if proxy else None
        machine_before = machine_cpu_jiffies()

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
        row["server_log"] = _scan_logs([s.log_path for s in servers])
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
        rate_limited=closed.get("4429", 0),
        resets=sum(int(r["resets"]) for r in results),
        client_errors=_merge_counts(r["errors"] for r in results),
        publisher={k: v for k, v in published.items() if k not in ("event", "times")},
        publisher_warnings=publisher.warnings,
        publish_call_p99_ms=published.get("call_ms_p99"),
        machine_cpu_busy=_busy(machine_before, machine_after),
    )
    return row


def _busy(before: Sequence[int] | None, after: Sequence[int] | None) -> float | None:
    if before is None or after is None or after[1] <= before[1]:
        return None
    return round((after[0] - before[0]) / (after[1] - before[1]), 3)


def _merge_counts(counters: Any) -> dict[str, int]:
    merged: dict[str, int] = {}
    for counter in counters:
        for key, n in counter.items():
            merged[key] = merged.get(key, 0) + int(n)
    return merged


def _free_ports(count: int) -> list[int]:
    ports: list[int] = []
    for _ in range(count * 20):
        if len(ports) == count:
            break
        port = free_port()
        if port not in ports:
            ports.append(port)
    if len(ports) < count:
        raise OSError("could not find free ports on 127.0.0.1")
    return ports


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


async def main_storm(opts: Options) -> int:
    """The storm scenario only (``--storm``): run it, print its table."""
    from bench.storm import format_storm, run_storms

    log_root = Path(tempfile.mkdtemp(prefix="bench-logs-"))
    started = time.time()
    load_before = os.getloadavg()
    rows = await run_storms(opts, log_root)
    print(
        f"\nReconnect storm, {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(started))}, "
        f"{time.time() - started:.0f} s ({opts.storm_connections:,} clients, "
        f"{opts.storm_messages} messages at {opts.storm_rate:g}/s, drop after 2 s, reconnect "
        f"within {opts.storm_jitter:g} s; {opts.repeat} repeat(s), medians; load average "
        f"before {', '.join(f'{v:.2f}' for v in load_before)})\n"
    )
    print(format_storm(rows))
    if opts.json_path:
        _write_json(Path(opts.json_path), {"options": asdict(opts), "storm": rows})
        print(f"JSON written to {opts.json_path}")
    if opts.keep_logs:
        print(f"logs kept in {log_root}")
    else:
        shutil.rmtree(log_root, ignore_errors=True)
    return 1 if any(r.get("error") for r in rows) else 0


async def main_idle(opts: Options) -> int:
    """The idle scenario only (``--idle-scenario``): run it, print its table."""
    from bench.idle import format_idle, run_idles

    log_root = Path(tempfile.mkdtemp(prefix="bench-logs-"))
    started = time.time()
    load_before = os.getloadavg()
    rows = await run_idles(opts, log_root)
    print(
        f"\nIdle connections, {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(started))}, "
        f"{time.time() - started:.0f} s ({opts.idle_connections:,} connections on one node, "
        f"{opts.idle_window:g} s window; {opts.repeat} repeat(s), medians; "
        f"load average before {', '.join(f'{v:.2f}' for v in load_before)})\n"
    )
    print(format_idle(rows, opts))
    if opts.json_path:
        _write_json(Path(opts.json_path), {"options": asdict(opts), "idle": rows})
        print(f"JSON written to {opts.json_path}")
    if opts.keep_logs:
        print(f"logs kept in {log_root}")
    else:
        shutil.rmtree(log_root, ignore_errors=True)
    return 1 if any(r.get("error") for r in rows) else 0


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
    connect_lines = format_connect(baseline)
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
