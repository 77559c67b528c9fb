"""A throw-away three-master Redis Cluster on free loopback ports, for the Redis broker's
tests: three ``redis-server --cluster-enabled yes`` joined by ``redis-cli --cluster create``
(no replicas), stopped by pid."""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import tempfile
import time

import redis

from tests.conftest import free_port


def _free_cluster_port() -> int:
    """A free port whose cluster bus port (port + 10000) is free too."""
    for _ in range(100):
        port = free_port()
        if port < 55000:
            try:
                with socket.socket() as sock:
                    sock.bind(("127.0.0.1", port + 10000))
                return port
            except OSError:
                continue
    raise RuntimeError("No free pair of ports for a cluster node")


class LocalCluster:
    """Three masters on 127.0.0.1; :attr:`url` is its ``redis+cluster://`` URL."""

    def __init__(self, masters: int = 3) -> None:
        server, cli = shutil.which("redis-server"), shutil.which("redis-cli")
        if server is None or cli is None:
            raise RuntimeError(
                "No redis-server or redis-cli: run `make test`, which installs them."
            )
        self.workdir = tempfile.mkdtemp(prefix="rt-cluster-")
        self.ports = [_free_cluster_port() for _ in range(masters)]
        self.processes: list[subprocess.Popen[bytes]] = []
        try:
            for port in self.ports:
                self.processes.append(
                    subprocess.Popen(
                        [
                            server,
                            "--port",
                            str(port),
                            "--bind",
                            "127.0.0.1",
                            "--cluster-enabled",
                            "yes",
                            "--cluster-config-file",
                            f"nodes-{port}.conf",
                            "--cluster-node-timeout",
                            "2000",
                            "--save",
                            "",
                            "--appendonly",
                            "no",
                            "--dir",
                            self.workdir,
                        ],
                        stdout=subprocess.DEVNULL,
                    )
                )
            for port in self.ports:
                self._wait(lambda p=port: redis.Redis(port=p).ping())
            subprocess.run(
                [
                    cli,
                    "--cluster",
                    "create",
                    *(f"127.0.0.1:{p}" for p in self.ports),
                    "--cluster-replicas",
                    "0",
                    "--cluster-yes",
                ],
                check=True,
                capture_output=True,
                timeout=30,
            )
            for port in self.ports:
                self._wait(
                    lambda p=port: redis.Redis(port=p).cluster("info")["cluster_state"] == "ok"
                )
        except BaseException:
            self.stop()
            raise
        self.url = "redis+cluster://" + ",".join(f"127.0.0.1:{p}" for p in self.ports) + "/"

    @staticmethod
    def _wait(ready, within: float = 20) -> None:
        deadline = time.monotonic() + within
        while True:
            try:
                if ready():
                    return
            except redis.RedisError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("The local Redis Cluster did not come up")
            time.sleep(0.05)

    def client(self, port: int) -> redis.Redis:
        return redis.Redis(port=port)

    def owner(self, slot: int) -> int:
        """The port of the master that owns ``slot``."""
        for start, end, master, *_ in redis.Redis(port=self.ports[0]).execute_command(
            "CLUSTER SLOTS"
        ):
            if start <= slot <= end:
                return int(master[1])
        raise LookupError(slot)

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGCONT)
                process.terminate()
                process.wait(10)
        self.processes.clear()
        shutil.rmtree(self.workdir, ignore_errors=True)
