"""Starting what a scenario measures: the children's environment, the server nodes on free
loopback ports (ready when they answer the target's own client), and cleaning up after a run
(its Redis keys). Shared by the broadcast (bench/scenario.py), storm, idle and rolling
scenarios."""

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

from bench._common import REPO_ROOT, free_port
from bench.loadgen import make_client
from bench.procs import Child, ChildFailed, Children
from bench.recording import Stats
from bench.targets import TARGETS, Target

SERVER_START_TIMEOUT = 60.0


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


def run_env(redis_url: str, target: Target, prefix: str, run_dir: Path) -> dict[str, str]:
    """The environment of one run's children: :func:`base_env`, the target's variables, the
    run's key prefix and its SQLite file."""
    return {
        **base_env(redis_url),
        **target.process_env(),
        "BENCH_PREFIX": prefix,
        "BENCH_DB": str(run_dir / "db.sqlite3"),
    }


async def start_nodes(
    children: Children, target: Target, count: int, prefix: str, redis_url: str, server: str
) -> tuple[list[Child], list[int]]:
    """``count`` nodes of ``target`` under ``server`` on free ports, each ready (it accepted a
    client of the target's protocol); raises :class:`ChildFailed` when one is not."""
    ports = free_ports(count)
    nodes = []
    for i, port in enumerate(ports):
        argv = target.server_command(port, prefix, redis_url, server)
        argv = profiled(argv, target, server, port)
        nodes.append(await children.start(f"server{i}", argv))
    await asyncio.gather(
        *(wait_ready(n, p, target, SERVER_START_TIMEOUT) for n, p in zip(nodes, ports, strict=True))
    )
    return nodes, ports


def profiled(argv: list[str], target: Target, server: str, port: int) -> list[str]:
    """With ``BENCH_PROFILE=DIR``, a Django node's argv under bench/profiled.py, writing
    ``DIR/<target>-<server>-<port>.prof`` (bench/README.md, "Profiling a node")."""
    out = os.environ.get("BENCH_PROFILE")
    if not out or target.asgi is None:
        return argv
    Path(out).mkdir(parents=True, exist_ok=True)
    path = Path(out) / f"{target.name}-{server}-{port}.prof"
    return [argv[0], "-m", "bench.profiled", str(path), *argv[2:]]


def signal_profilers(pids: list[int], signum: int) -> None:
    """With ``BENCH_PROFILE``, tell the nodes the broadcast window starts (SIGUSR1) or ends
    (SIGUSR2, which writes their profiles; wait for the writes before the nodes stop)."""
    if os.environ.get("BENCH_PROFILE"):
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)
        time.sleep(2.0 if signum == signal.SIGUSR2 else 0.0)


def split(total: int, parts: int) -> list[int]:
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


def merge_counts(counters: Any) -> dict[str, int]:
    merged: dict[str, int] = {}
    for counter in counters:
        for key, n in counter.items():
            merged[key] = merged.get(key, 0) + int(n)
    return merged


def free_ports(count: int) -> list[int]:
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
