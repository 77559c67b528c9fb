"""Rolling restart under load (``python -m bench.rolling``): two realtime nodes (daphne, one
Redis), N WebSocket clients spread over them, a publisher at 50 messages/s; node A gets
SIGTERM, is started again once it exited, then node B the same. Run once with a drain window
(``DRAIN_WINDOW``, docs/deployment.md, "Graceful drain") and once without, and report per run
the messages lost and received twice over all clients, and the peak of reconnects per second
the surviving node saw (one-second buckets) while the other restarted.

Direct (``--via direct``, the default), the clients (``bench.rolling_clients``) play the load
balancer, sending a reconnect to the node that is in rotation (the orchestrator takes a node
out when it sends it SIGTERM and puts it back once its replacement answers), as a load
balancer checking ``realtime/ready/`` does. ``--via nginx``: the clients connect to
docs/deployment.md's nginx configuration in front of the two nodes (bench/nginx.py, plain
HTTP), which passes a refused handshake on to the other node and skips a stopped one.
tests/test_rolling.py runs it through nginx. Loopback only; every wait bounded."""

from __future__ import annotations

import argparse
import asyncio
import collections
import datetime
import secrets
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench._common import (
    busy_share,
    machine_cpu_jiffies,
    proc_cpu_seconds,
    redis_url_from_env,
    require_loopback_redis,
)
from bench.nodes import cleanup_redis, free_ports, run_env, wait_ready
from bench.procs import Child, Children
from bench.scenario import start_nginx
from bench.targets import TARGETS

MAX_CLIENTS = 5000
SETTLE_S = 2.0  # publishing before the first restart, and after the last
CPU_SAMPLE_S = 0.5


def server_command(port: int, access_log: Path) -> list[str]:
    """The realtime target's daphne, writing its access log (one line per WebSocket
    handshake accepted, ``WSCONNECT``, stamped to the second) to ``access_log``."""
    command = TARGETS["realtime"].server_command(port, "", "")
    return [*command[:-1], "--access-log", str(access_log), command[-1]]


def handshakes(access_log: Path) -> list[int]:
    """The second (Unix time) of every WebSocket handshake the node accepted (its log is in
    UTC: bench/realtime_app/settings.py)."""
    seconds = []
    for line in access_log.read_text().splitlines():
        if '"WSCONNECT ' in line:
            stamp = line.split("[", 1)[1].split("]", 1)[0]
            when = datetime.datetime.strptime(stamp, "%d/%b/%Y:%H:%M:%S")
            seconds.append(int(when.replace(tzinfo=datetime.UTC).timestamp()))
    return seconds


def access_log_seconds(run_dir: Path, port: int) -> list[int]:
    """The handshakes in the access logs of every node that listened on ``port``."""
    return [second for log in run_dir.glob(f"access-{port}*.log") for second in handshakes(log)]


def peak_per_second(seconds: list[int], start: float, end: float) -> tuple[int, int]:
    """How many of ``seconds`` fall in [start, end], and the most in one second."""
    counts = collections.Counter(s for s in seconds if int(start) <= s <= end)
    return sum(counts.values()), max(counts.values(), default=0)


async def sample_server_cpu(children: Children, seconds: dict[int, float]) -> None:
    """Keep ``seconds`` (pid: CPU seconds) up to date for every node started, until
    cancelled: a node's last reading is at most :data:`CPU_SAMPLE_S` old when it exits."""
    for _ in range(100_000):  # bounded: cancelled at the end of the run
        for child in children.started:
            if child.name.startswith("server") and child.alive():
                used = proc_cpu_seconds(child.pid)
                if used is not None:
                    seconds[child.pid] = used
        await asyncio.sleep(CPU_SAMPLE_S)


async def restart(
    children: Children, servers: list[Child], index: int, port: int, window: float
) -> tuple[float, float]:
    """SIGTERM node ``index``, wait until it exits, start it again; return when the SIGTERM
    was sent and when the new node answered."""
    target = TARGETS["realtime"]
    node = servers[index]
    sent = time.time()
    node.proc.send_signal(signal.SIGTERM)
    await asyncio.wait_for(node.proc.wait(), window + 30)
    access_log = children.log_dir / f"access-{port}-{int(sent)}.log"
    servers[index] = await children.start(
        f"server{index}-{int(sent)}", server_command(port, access_log)
    )
    await wait_ready(servers[index], port, target, 60.0)
    return sent, time.time()


async def run_once(opts: argparse.Namespace, window: float, log_root: Path) -> dict[str, Any]:
    target = TARGETS["realtime"]
    prefix = f"bench-{secrets.token_hex(5)}"
    run_dir = Path(tempfile.mkdtemp(prefix=f"rolling-{window:g}-", dir=log_root))  # per repeat
    env = run_env(opts.redis_url, target, prefix, run_dir)
    if window > 0:
        env["BENCH_DRAIN_WINDOW"] = str(window)
    children = Children(run_dir, env)
    proxy = None
    server_cpu: dict[int, float] = {}
    sampler = asyncio.create_task(sample_server_cpu(children, server_cpu))
    machine_before = machine_cpu_jiffies()
    row: dict[str, Any] = {
        "window": window,
        "clients": opts.clients,
        "rate": opts.rate,
        "via": opts.via,
        "batch": opts.batch,
    }
    try:
        ports = free_ports(2)
        servers = [
            await children.start(f"server{i}", server_command(port, run_dir / f"access-{port}.log"))
            for i, port in enumerate(ports)
        ]
        for server, port in zip(servers, ports, strict=True):
            await wait_ready(server, port, target, 60.0)
        urls = [target.url(port) for port in ports]
        if opts.via == "nginx":
            proxy, site = await start_nginx(ports, run_dir, opts.clients)
            urls = [target.url(site)]  # one address: nginx chooses the node
        workers = []
        started = time.time()
        share = -(-opts.clients // opts.client_procs)
        for i, offset in enumerate(range(0, opts.clients, share)):
            count = min(share, opts.clients - offset)
            argv = [sys.executable, "-m", "bench.rolling_clients", "--urls", *urls]
            argv += ["--count", str(count), "--offset", str(offset)]
            argv += ["--max-wait", str(opts.max_wait)] + (["--batch"] if opts.batch else [])
            workers.append(await children.start(f"client{i}", argv, pipes=True))
        await asyncio.gather(*(w.read_event("ready", 60 + opts.clients / 20) for w in workers))
        row["subscribe_s"] = round(time.time() - started, 1)
        messages = int(opts.rate * opts.duration)
        argv = [sys.executable, "-m", "bench.publisher", "--kind", "realtime"]
        argv += ["--messages", str(messages), "--rate", str(opts.rate)]
        argv += ["--prefix", prefix, "--redis-url", opts.redis_url]
        publisher = await children.start("publisher", argv, pipes=True)
        await asyncio.sleep(SETTLE_S)
        phases = []
        for index in (0, 1):
            up = [True, True]
            up[index] = False
            for worker in workers:
                await worker.send_line({"up": up})
            phases.append((index, *await restart(children, servers, index, ports[index], window)))
            for worker in workers:
                await worker.send_line({"up": [True, True]})
        await publisher.read_event("done", messages / opts.rate + 120)
        row["messages"] = messages
        row["restart_s"] = round(max(ended - sent for _, sent, ended in phases), 1)
        published = time.time()
        for worker in workers:
            await worker.send_line({"total": messages})
        results = await asyncio.gather(*(w.read_event("result", 180) for w in workers))
        row["catch_up_s"] = round(time.time() - published, 1)
        row["lost"] = sum(int(r["lost"]) for r in results)
        row["duplicates"] = sum(int(r["duplicates"]) for r in results)
        # clients that had not caught up when the workers gave up: their gap counts as lost
        row["incomplete"] = sum(int(r["incomplete"]) for r in results)
        peaks = []
        for index, sent, ended in phases:
            # what the surviving node accepted while the other restarted: its access logs
            survivor = ports[1 - index]
            seconds = await asyncio.to_thread(access_log_seconds, run_dir, survivor)
            moved, peak = peak_per_second(seconds, sent, ended)
            peaks.append(peak)
            row[f"moved_{'ab'[index]}"] = moved
            if opts.verbose:
                spread = collections.Counter(
                    s - int(sent) for s in seconds if int(sent) <= s <= ended
                )
                print(f"window {window:g}, node {'ab'[index]} restarted:", sorted(spread.items()))
        row["peak_reconnects_per_s"] = max(peaks)
        # where the CPU went (from the start of the nodes to the clients' results)
        row["server_cpu_s"] = round(sum(server_cpu.values()), 1)
        row["client_cpu_s"] = round(sum(float(r["cpu_s"]) for r in results), 1)
        row["batched"] = sum(int(r["batched"]) for r in results)
        row["batch_frames"] = sum(int(r["batch_frames"]) for r in results)
        row["resets"] = sum(int(r["resets"]) for r in results)
        row["machine_busy"] = busy_share(machine_before, machine_cpu_jiffies())
    finally:
        sampler.cancel()
        await children.stop_all()
        if proxy is not None:
            await asyncio.to_thread(proxy.stop)
        cleanup_redis(opts.redis_url, prefix)
    return row


def print_table(rows: list[dict[str, Any]]) -> None:
    print(
        f"{'drain window':>12} {'clients':>7} {'messages':>8} {'lost':>5} {'dups':>5} "
        f"{'reconnects':>10} {'peak/s':>6} {'restart s':>9} {'incomplete':>10} "
        f"{'resets':>6} {'batched':>7} {'srv cpu s':>9} {'cli cpu s':>9} {'busy':>4}"
    )
    for row in rows:
        moved = row["moved_a"] + row["moved_b"]
        print(
            f"{row['window']:>12g} {row['clients']:>7} {row['messages']:>8} {row['lost']:>5} "
            f"{row['duplicates']:>5} {moved:>10} {row['peak_reconnects_per_s']:>6} "
            f"{row['restart_s']:>9} {row['incomplete']:>10} "
            f"{row['resets']:>6} {row['batched'] / max(row['messages'] * row['clients'], 1):>7.0%} "
            f"{row['server_cpu_s']:>9} {row['client_cpu_s']:>9} {row['machine_busy'] or 0:>4.0%}"
        )


def parser() -> argparse.ArgumentParser:
    """The command line (tests/test_rolling.py builds its options with it too)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--client-procs", type=int, default=2)
    parser.add_argument("--rate", type=float, default=50.0)
    parser.add_argument("--window", type=float, default=10.0, help="DRAIN_WINDOW of the run")
    parser.add_argument(
        "--duration", type=float, default=45.0, help="seconds of publishing (rate x this)"
    )
    parser.add_argument("--via", choices=("direct", "nginx"), default="direct")
    parser.add_argument(
        "--batch",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="clients offer realtime.batch, as the bundled JS client does (default: on)",
    )
    parser.add_argument("--max-wait", type=float, default=120.0, help="clients' catch-up, s")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--verbose", action="store_true", help="print reconnects per second")
    parser.add_argument("--redis-url", default=redis_url_from_env())
    return parser


async def main(opts: argparse.Namespace) -> None:
    log_root = Path(tempfile.mkdtemp(prefix="bench-rolling-"))
    rows = []
    for _ in range(opts.repeat):
        for window in (opts.window, 0.0):
            rows.append(await run_once(opts, window, log_root))
    print_table(rows)
    print(f"logs: {log_root}")


if __name__ == "__main__":
    options = parser().parse_args()
    if not 0 < options.clients <= MAX_CLIENTS:
        raise SystemExit(f"--clients: 1 to {MAX_CLIENTS}")
    require_loopback_redis(options.redis_url)
    asyncio.run(main(options))
