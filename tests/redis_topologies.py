"""Redis topologies beyond one server, started by the suite on free loopback ports: a
three-master Redis Cluster (:class:`LocalCluster`), and the helpers tests use on it (which
master holds a key, topics spread over every master, deleting a prefix on every master)."""

from __future__ import annotations

import random
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterable

import pytest
import redis
from redis.cluster import RedisCluster
from redis.crc import key_slot


def _port_with_bus() -> int:
    """A free loopback port whose cluster bus port (port + 10000, what ``redis-cli --cluster
    create`` assumes) is free too."""
    for _ in range(200):
        port = random.randrange(20000, 55000)
        with socket.socket() as first, socket.socket() as second:
            try:
                first.bind(("127.0.0.1", port))
                second.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port
    raise RuntimeError("no free pair of ports for a cluster node")


class LocalCluster:
    """``masters`` ``redis-server --cluster-enabled yes`` processes on 127.0.0.1 without
    persistence, joined with ``redis-cli --cluster create`` (no replicas); :meth:`stop` ends
    them by pid. :attr:`url` is the ``redis+cluster://`` URL realtime takes."""

    def __init__(self, masters: int = 3) -> None:
        server, cli = shutil.which("redis-server"), shutil.which("redis-cli")
        if server is None or cli is None:
            pytest.fail("No redis-server or redis-cli: run `make test`, which installs them.")
        self.workdir = tempfile.mkdtemp(prefix="rt-cluster-")
        self.ports = [_port_with_bus() for _ in range(masters)]
        self.processes: list[subprocess.Popen[bytes]] = []
        try:
            for port in self.ports:
                self.processes.append(self._start(server, port))
            self._join(cli)
        except BaseException:
            self.stop()
            raise
        self.url = "redis+cluster://" + ",".join(f"127.0.0.1:{p}" for p in self.ports) + "/"

    def _start(self, binary: str, port: int) -> subprocess.Popen[bytes]:
        process = subprocess.Popen(
            [
                binary,
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                f"{self.workdir}/nodes-{port}.conf",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                self.workdir,
            ],
            stdout=subprocess.DEVNULL,
        )
        self._wait(port, process, lambda client: bool(client.ping()))
        return process

    def _join(self, cli: str) -> None:
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
            stdout=subprocess.DEVNULL,
            timeout=30,
        )
        for port, process in zip(self.ports, self.processes, strict=True):
            self._wait(port, process, _cluster_ok)

    @staticmethod
    def _wait(port: int, process: subprocess.Popen[bytes], ready: object) -> None:
        client = redis.Redis(port=port, socket_connect_timeout=1)
        deadline = time.monotonic() + 20
        try:
            while True:
                try:
                    if ready(client):  # type: ignore[operator]
                        return
                except redis.RedisError:
                    pass
                if time.monotonic() > deadline or process.poll() is not None:
                    pytest.fail(f"The cluster's redis-server on port {port} did not get ready")
                time.sleep(0.05)
        finally:
            client.close()

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.terminate()
        for process in self.processes:
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)
        self.processes = []
        shutil.rmtree(self.workdir, ignore_errors=True)

    def client(self) -> RedisCluster:
        """A synchronous cluster client (close it after use)."""
        return RedisCluster(host="127.0.0.1", port=self.ports[0])

    def owner(self, slot: int) -> int:
        """The port of the master that owns ``slot`` now (``CLUSTER SLOTS``, no cached map)."""
        with redis.Redis(port=self.ports[0]) as client:
            for start, end, master, *_ in client.execute_command("CLUSTER SLOTS"):
                if start <= slot <= end:
                    return int(master[1])
        raise LookupError(slot)


def _cluster_ok(client: redis.Redis) -> bool:
    info = client.execute_command("CLUSTER INFO")  # parsed into a dict by redis-py
    return bool(info.get("cluster_state") == "ok")


def master_of(client: RedisCluster, key: str) -> str:
    """The ``host:port`` of the master holding ``key``."""
    return str(client.get_node_from_key(key).name)


def topics_on_every_master(client: RedisCluster, prefix: str, stem: str) -> list[str]:
    """One topic ``<stem><n>`` per master: the first ``n`` whose log keys (hash tag: the
    topic) land on a master not yet covered, in the order of the masters' names."""
    found: dict[str, str] = {}
    masters = {node.name for node in client.get_primaries()}
    for n in range(10_000):
        topic = f"{stem}{n}"
        found.setdefault(master_of(client, f"{prefix}:log:{{{topic}}}"), topic)
        if set(found) == masters:
            return [found[name] for name in sorted(found)]
    raise AssertionError("no topics found for every master")


def slots(keys: Iterable[str]) -> set[int]:
    """The hash slots of ``keys`` (CRC16 of the hash tag, as Redis Cluster computes them)."""
    return {key_slot(key.encode()) for key in keys}


def delete_prefix(client: RedisCluster, prefix: str) -> None:
    """Delete every key under ``prefix`` on every master (a test's cleanup, never a request
    path)."""
    for node in client.get_primaries():
        keys = list(client.scan_iter(match=f"{prefix}:*", count=1000, target_nodes=node))
        for key in keys:
            client.delete(key)
