"""A Redis Sentinel deployment on free loopback ports for the tests: a master, a replica and
three sentinels (quorum 2, a master is down after 500 ms of silence), each a redis-server
process started here and stopped by pid."""

from __future__ import annotations

import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from tests.conftest import free_port
from tests.servers import stop_process

SERVICE = "rt-service"
DOWN_AFTER_MS = 500
# Long enough that no sentinel "fixes" the replica detached by detach_replica() during a
# test (a sentinel points a replica back at the master failover-timeout after it strayed).
FAILOVER_TIMEOUT_MS = 15000


def _wait(condition: Callable[[], bool], within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while True:
        try:
            if condition():
                return
        except redis.RedisError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} within {within} s")
        time.sleep(0.05)


class _Process:
    """One redis-server process (a data server or a sentinel) with its config file."""

    def __init__(
        self,
        workdir: Path,
        name: str,
        lines: list[str],
        sentinel: bool = False,
        port: int | None = None,
    ):
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.fail("No redis-server: run `make test`, which installs it.")
        self.port = port or free_port()
        config = workdir / f"{name}.conf"
        config.write_text(
            "\n".join(
                [
                    f"port {self.port}",
                    "bind 127.0.0.1",
                    "protected-mode no",
                    f"dir {workdir}",
                    *lines,
                ]
            )
            + "\n"
        )
        argv = [binary, str(config)] + (["--sentinel"] if sentinel else [])
        self.process = subprocess.Popen(argv, stdout=subprocess.DEVNULL)
        self.client = redis.Redis(port=self.port, socket_timeout=2, decode_responses=True)
        _wait(self._answers, 10, f"redis-server {name} did not start")

    def _answers(self) -> bool:
        if self.process.poll() is not None:
            raise RuntimeError(f"redis-server on port {self.port} exited")
        return bool(self.client.ping())

    def kill(self) -> None:
        """SIGKILL: the server dies at once, whatever it had not sent yet is lost."""
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        self.client.close()
        stop_process(self.process)


class SentinelSetup:
    """A master, its replica and three sentinels watching them as :data:`SERVICE`; started
    and ready (the sentinels know the replica and each other) when the constructor returns.
    :meth:`stop` stops every process."""

    def __init__(self) -> None:
        self.workdir = Path(tempfile.mkdtemp(prefix="rt-sentinel-"))
        self.processes: list[_Process] = []
        try:
            plain = ['save ""', "appendonly no", "repl-diskless-sync-delay 0"]
            self.master = self._start("master", plain)
            self.replica = self._start(
                "replica", [*plain, f"replicaof 127.0.0.1 {self.master.port}"]
            )
            _wait(
                lambda: self.replica.client.info("replication")["master_link_status"] == "up",
                10,
                "the replica did not sync",
            )
            monitor = [
                f"sentinel monitor {SERVICE} 127.0.0.1 {self.master.port} 2",
                f"sentinel down-after-milliseconds {SERVICE} {DOWN_AFTER_MS}",
                f"sentinel failover-timeout {SERVICE} {FAILOVER_TIMEOUT_MS}",
                f"sentinel known-replica {SERVICE} 127.0.0.1 {self.replica.port}",
            ]
            # Each sentinel is told the others (ids and ports) instead of finding them through
            # the master's hello messages, which takes seconds.
            ids = [f"{n + 1:040x}" for n in range(3)]
            ports = [free_port() for _ in ids]
            self.sentinels = [
                self._start(
                    f"sentinel{n}",
                    [
                        *monitor,
                        f"sentinel myid {ids[n]}",
                        *(
                            f"sentinel known-sentinel {SERVICE} 127.0.0.1 {port} {id_}"
                            for id_, port in zip(ids, ports, strict=True)
                            if id_ != ids[n]
                        ),
                    ],
                    sentinel=True,
                    port=ports[n],
                )
                for n in range(3)
            ]
            _wait(self._sentinels_ready, 20, "the sentinels did not see the replica and each other")
        except BaseException:
            self.stop()
            raise

    def _start(
        self, name: str, lines: list[str], sentinel: bool = False, port: int | None = None
    ) -> _Process:
        process = _Process(self.workdir, name, lines, sentinel, port)
        self.processes.append(process)
        return process

    def _sentinels_ready(self) -> bool:
        for sentinel in self.sentinels:
            state = sentinel.client.sentinel_master(SERVICE)
            if state["num-slaves"] != 1 or state["num-other-sentinels"] != 2:
                return False
        return True

    @property
    def url(self) -> str:
        """``REALTIME["REDIS_URL"]`` for this deployment."""
        hosts = ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels)
        return f"redis+sentinel://{hosts}/{SERVICE}/0"

    def layer_host(self) -> dict[str, Any]:
        """The channels_redis host entry for this deployment (docs/scaling.md)."""
        return {
            "sentinels": [("127.0.0.1", s.port) for s in self.sentinels],
            "master_name": SERVICE,
            "db": 0,
            "sentinel_kwargs": {
                "socket_connect_timeout": 2,
                "socket_timeout": 2,
                "retry": Retry(NoBackoff(), 0),
            },
        }

    def master_ports(self) -> set[int]:
        """The master's port as each answering sentinel names it."""
        ports = set()
        for sentinel in self.sentinels:
            try:
                _, port = sentinel.client.sentinel_get_master_addr_by_name(SERVICE)
            except redis.RedisError:
                continue
            ports.add(int(port))
        return ports

    def detach_replica(self) -> None:
        """Point the replica at a port where nothing listens: the master's writes from now
        on never reach it, as when the link broke shortly before the master died."""
        self.replica.client.execute_command("REPLICAOF", "127.0.0.1", str(free_port()))
        _wait(
            lambda: self.replica.client.info("replication")["master_link_status"] == "down",
            5,
            "the replica did not leave its master",
        )

    def kill_master(self) -> None:
        self.master.kill()

    def wait_for_failover(self, within: float = 20) -> None:
        """Until every sentinel names the replica as the master, and the replica knows it."""
        _wait(
            lambda: (
                self.master_ports() == {self.replica.port}
                and self.replica.client.info("replication")["role"] == "master"
            ),
            within,
            "the sentinels did not promote the replica",
        )

    def stop(self) -> None:
        for process in reversed(self.processes):
            process.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)
