"""Behind a real nginx: the configuration and the settings docs/deployment.md gives, filled
in with free loopback ports, a self-signed certificate and a temporary STATIC_ROOT, in front
of two nodes on one Redis (round-robin, no sticky sessions), daphne and then uvicorn.
WebSocket over wss://, SSE, long-poll, POST, static files and the client's address all go
through it."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
from asgiref.sync import sync_to_async

import realtime
from bench.nginx import Nginx, documented, site_config
from realtime import conf
from realtime.backends import get_registry
from realtime.publishing import aget_cursors
from tests.conftest import free_port
from tests.proxy import self_signed_certificate, trusting
from tests.servers import ROOT, Daphne, SSEReader, Uvicorn, running_nodes

pytestmark = pytest.mark.e2e

HOST = "localhost"  # the site's name, in place of the documented shop.example.com
CLIENT = "127.0.0.2"  # browsers connect from here; nginx reaches the nodes from 127.0.0.1


def documented_settings() -> dict[str, Any]:
    """The Django settings docs/deployment.md tells every node to have."""
    namespace: dict[str, Any] = {"REALTIME": {}}
    exec(documented("settings"), namespace)
    return namespace


def timeouts(config: str) -> dict[str, float]:
    """``proxy_read_timeout`` of each location of the documented configuration, in seconds."""
    found = {}
    for path, body in re.findall(r"location (\S+) \{(.*?)\n    \}", config, re.S):
        if match := re.search(r"proxy_read_timeout (\d+)s;", body):
            found[path] = float(match.group(1))
    return found


@pytest.fixture(scope="module")
def workdir() -> Iterator[Path]:
    # Readable by nginx's workers (which drop root's privileges) for the static files.
    path = Path(tempfile.mkdtemp(prefix="rt-nginx-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module", params=[Daphne, Uvicorn], ids=["daphne", "uvicorn"])
def nodes(
    request: pytest.FixtureRequest, database: tuple[str, Any], node_env: dict[str, str]
) -> Iterator[list[Daphne]]:
    """Two nodes on one Redis, started with docs/deployment.md's daphne command, then with
    its uvicorn command."""
    with running_nodes(database[0], node_env, node=request.param) as servers:
        yield servers


@pytest.fixture(scope="module")
def node_settings(workdir: Path) -> dict[str, str]:
    settings = documented_settings()
    return {
        "RT_TRUSTED_PROXIES": ",".join(settings["REALTIME"]["TRUSTED_PROXIES"]),
        "RT_SECURE_PROXY_SSL_HEADER": ",".join(settings["SECURE_PROXY_SSL_HEADER"]),
        "RT_STATIC_ROOT": str(workdir / "static"),
        "RT_POLL_TIMEOUT": "1.0",
    }


@dataclass
class Site:
    nginx: Nginx
    https: int
    http: int
    cert: Path

    @property
    def origin(self) -> str:
        return f"https://{HOST}:{self.https}"

    def client(self, **kwargs: Any) -> httpx.AsyncClient:
        """An httpx client of the site, connecting from :data:`CLIENT`."""
        context = trusting(self.cert)
        transport = httpx.AsyncHTTPTransport(verify=context, local_address=CLIENT)
        return httpx.AsyncClient(
            base_url=self.origin, transport=transport, timeout=10, verify=context, **kwargs
        )

    async def websocket(self, **kwargs: Any) -> Any:
        return await websockets.connect(
            f"wss://{HOST}:{self.https}/realtime/ws/",
            ssl=trusting(self.cert),
            local_addr=(CLIENT, 0),
            subprotocols=["realtime.v1"],  # type: ignore[list-item]
            open_timeout=10,
            **kwargs,
        )


@pytest.fixture(scope="module")
def site(workdir: Path, nodes: list[Daphne], node_settings: dict[str, str]) -> Iterator[Site]:
    # `manage.py collectstatic --noinput`, as the docs say, into the nodes' STATIC_ROOT
    subprocess.run(
        [sys.executable, "-m", "django", "collectstatic", "--noinput", "-v0"],
        env={
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "tests.settings",
            "RT_STATIC_ROOT": node_settings["RT_STATIC_ROOT"],
        },
        cwd=ROOT,
        check=True,
        timeout=120,
    )
    directory = Path(tempfile.mkdtemp(dir=workdir))  # for this module's nodes: own logs
    directory.chmod(0o755)
    cert, key = self_signed_certificate(directory, HOST)
    https, http = free_port(), free_port()
    static_root = documented_settings()["STATIC_ROOT"]
    config = site_config(
        [node.port for node in nodes],
        http,
        https,
        HOST,
        (cert, key),
        {f"alias {static_root}/;": f"alias {node_settings['RT_STATIC_ROOT']}/;"},
    )
    nginx = Nginx(directory, config)
    try:
        nginx.wait_listening(https)
        nginx.wait_listening(http)
        yield Site(nginx, https, http, cert)
    finally:
        nginx.stop()


def topic() -> str:
    return f"public.nginx-{uuid.uuid4().hex[:8]}"


async def publish(*args: Any, **kwargs: Any) -> str:
    return await sync_to_async(realtime.publish)(*args, **kwargs)


async def registered_client(connection_id: str) -> str:
    """The client address the registry lists for a connection (nodes write it a moment
    after ``welcome``)."""
    deadline = time.monotonic() + 5
    while True:
        entries = {entry.id: entry for entry in await get_registry().all()}
        if connection_id in entries:
            return entries[connection_id].client
        assert time.monotonic() < deadline, f"{connection_id} is not in the registry"
        await asyncio.sleep(0.05)


# ---- the documented configuration ---------------------------------------------------------


def test_the_documented_timeouts_outlast_the_settings_they_cover():
    found = timeouts(documented("nginx"))
    heartbeat = conf.DEFAULTS["HEARTBEAT_INTERVAL"] + conf.DEFAULTS["HEARTBEAT_TIMEOUT"]
    assert found["/realtime/ws/"] > heartbeat
    assert found["/realtime/sse/"] > conf.DEFAULTS["SSE_KEEPALIVE"]
    assert found["/realtime/poll/"] > conf.DEFAULTS["POLL_TIMEOUT"]


def test_the_nodes_run_the_documented_command(nodes):
    server = type(nodes[0]).__name__.lower()  # daphne or uvicorn
    commands = [shlex.split(line) for line in documented(server).strip().splitlines()]
    ports = [command.index("-p" if server == "daphne" else "--port") + 1 for command in commands]
    assert [command[n] for command, n in zip(commands, ports, strict=True)] == ["8001", "8002"]
    for command, port, node in zip(commands, ports, nodes, strict=True):
        # python -m <server>, with the node's port and the tests' application
        assert node.process.args[1:] == [
            "-m",
            *command[:port],
            str(node.port),
            *command[port + 1 : -1],
            "tests.asgi:application",
        ]


# ---- through nginx -------------------------------------------------------------------------


async def test_plain_http_is_redirected_to_https(site):
    async with httpx.AsyncClient() as http:
        response = await http.get(f"http://127.0.0.1:{site.http}/page/?x=1", headers={"Host": HOST})
    assert response.status_code == 301
    assert response.headers["location"] == f"https://{HOST}/page/?x=1"


async def test_nginx_serves_the_collected_js_client(site):
    async with site.client() as http:
        response = await http.get("/static/realtime/realtime.js")
    assert response.status_code == 200
    assert "javascript" in response.headers["content-type"]
    assert response.content == (ROOT / "realtime/static/realtime/realtime.js").read_bytes()
    [served] = [line for line in site.nginx.access_log() if line[1].startswith("/static/")]
    assert served[3] == "-", "served by nginx itself, from STATIC_ROOT, not by a node"


async def test_websocket_over_wss_checks_the_browsers_origin(site, use_redis):
    async with await site.websocket(origin=site.origin) as ws:  # type: ignore[arg-type]
        welcome = json.loads(await ws.recv())
        assert welcome["type"] == "welcome"
        name = topic()
        await ws.send(json.dumps({"type": "subscribe", "topic": name}))
        assert json.loads(await ws.recv())["type"] == "subscribed"
        message_id = await publish(name, "hello", 1)
        assert json.loads(await ws.recv())["id"] == message_id
    with pytest.raises(websockets.InvalidStatus) as refused:
        await site.websocket(origin="https://evil.example")  # type: ignore[arg-type]
    assert refused.value.response.status_code == 403


async def test_sse_events_arrive_unbuffered(site, use_redis):
    name = topic()
    async with site.client() as http:
        started = time.monotonic()
        async with http.stream("GET", "/realtime/sse/", params={"topic": name}) as response:
            assert response.status_code == 200
            events = SSEReader(response)
            assert (await events.frame())["type"] == "welcome"
            first = time.monotonic() - started
            assert (await events.frame())["type"] == "subscribed"
            published = time.monotonic()
            message_id = await publish(name, "hello", 1)
            assert (await events.frame())["id"] == message_id
            live = time.monotonic() - published
    assert first < 1.0, f"the first event took {first:.2f} s"
    assert live < 1.0, f"a live message took {live:.2f} s"


async def test_long_polls_alternate_upstream_nodes_and_lose_nothing(site, nodes, use_redis):
    name = topic()
    position = (await aget_cursors([name]))[name]
    cursor = f"{name}~{position['epoch']}~{position['offset']}"

    async def producer() -> list[str]:
        ids = []
        for n in range(10):
            ids.append(await publish(name, "n", n))
            await asyncio.sleep(0.05)  # the topic's pace, not a synchronisation
        return ids

    producing = asyncio.create_task(producer())
    received: list[str] = []
    async with site.client() as http:
        for _ in range(60):
            if len(received) == 10:
                break
            response = await http.get("/realtime/poll/", params={"topic": name, "cursor": cursor})
            if response.status_code == 204:
                continue
            body = response.json()
            received += [frame["id"] for frame in body["frames"] if frame["type"] == "message"]
            cursor = body["cursor"]
    assert received == await producing
    upstreams = [line[3] for line in site.nginx.access_log() if line[1] == "/realtime/poll/"]
    assert {f"127.0.0.1:{node.port}" for node in nodes} == set(upstreams)
    assert all(a != b for a, b in itertools.pairwise(upstreams)), "round-robin alternates"


async def test_a_session_post_passes_csrf_over_https_through_the_proxy(site, nodes):
    # A browser's POST authenticated by the session cookie (here an anonymous session, with
    # Django's CSRF cookie and header). Its Origin is https://: Django accepts it only when
    # the request counts as secure, i.e. from nginx's X-Forwarded-Proto
    # (SECURE_PROXY_SSL_HEADER), and when Host is the browser's, port included.
    csrf = uuid.uuid4().hex
    frame = {"type": "send", "id": f"c-{uuid.uuid4().hex[:8]}", "event": "echo", "data": 1}
    headers = {"Origin": site.origin, "X-CSRFToken": csrf, "Cookie": f"csrftoken={csrf}"}
    async with site.client() as http:
        through = await http.post("/realtime/send/", json=frame, headers=headers)
    assert through.status_code == 200, through.text
    assert through.json()["type"] == "ack"
    async with httpx.AsyncClient(base_url=nodes[0].http) as http:  # the same, without nginx
        direct = await http.post(
            "/realtime/send/",
            json={**frame, "id": f"d-{uuid.uuid4().hex[:8]}"},
            headers={**headers, "Host": f"{HOST}:{site.https}"},
        )
    assert direct.status_code == 403


async def test_the_client_address_comes_from_x_forwarded_for_set_by_the_trusted_proxy(
    site, nodes, use_redis
):
    # The client sends a made-up X-Forwarded-For; nginx appends the address it was reached
    # from (CLIENT). The nodes trust 127.0.0.1 (nginx) alone: the rightmost untrusted entry.
    spoofed = {"X-Forwarded-For": "203.0.113.9"}
    async with await site.websocket(  # type: ignore[arg-type]
        origin=site.origin, additional_headers=spoofed
    ) as ws:
        welcome = json.loads(await ws.recv())
        assert await registered_client(welcome["connection_id"]) == CLIENT
    # Straight to a node, from an address that is no trusted proxy: the header is ignored.
    async with websockets.connect(
        nodes[0].url, origin=nodes[0].origin, local_addr=(CLIENT, 0), additional_headers=spoofed
    ) as ws:
        welcome = json.loads(await ws.recv())
        client = await registered_client(welcome["connection_id"])
    assert client.startswith(f"{CLIENT}:")


@pytest.fixture
def plain_site(workdir: Path, nodes: list[Daphne]) -> Iterator[tuple[Nginx, int]]:
    """bench/nginx.py's variant for `python -m bench.run --via nginx`: the documented site
    over plain HTTP (no ssl listener, no certificate) in front of the same two nodes."""
    directory = Path(tempfile.mkdtemp(dir=workdir))
    directory.chmod(0o755)
    http, port = free_port(), free_port()
    config = site_config([node.port for node in nodes], http, port, "127.0.0.1", None)
    assert "ssl" not in config
    nginx = Nginx(directory, config)
    try:
        nginx.wait_listening(port)
        yield nginx, port
    finally:
        nginx.stop()


async def test_the_benchmarks_plain_http_variant_reaches_both_nodes(plain_site, nodes):
    nginx, port = plain_site
    for _ in nodes:
        async with websockets.connect(
            f"ws://127.0.0.1:{port}/realtime/ws/",
            origin=f"http://127.0.0.1:{port}",  # type: ignore[arg-type]
            subprotocols=["realtime.v1"],  # type: ignore[list-item]
            open_timeout=10,
        ) as ws:
            assert json.loads(await ws.recv())["type"] == "welcome"
    upstreams = [line[3] for line in nginx.access_log() if line[1] == "/realtime/ws/"]
    assert sorted(upstreams) == sorted(f"127.0.0.1:{node.port}" for node in nodes)
