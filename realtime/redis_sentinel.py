"""Redis Sentinel: ``REALTIME["REDIS_URL"]`` of the form
``redis+sentinel://[user:password@]host1:port1,host2:port2/<service_name>/<db>`` (and
``rediss+sentinel://`` for TLS to the master) names the sentinels and the service whose master
every command goes to.

The user and password in the URL are the master's (as in ``redis://``); what a URL cannot carry
goes in query parameters: ``sentinel_username`` and ``sentinel_password`` (the sentinels'
own), ``sentinel_ssl=true`` (TLS to the sentinels too), and redis-py's ``ssl_cert_reqs``,
``ssl_ca_certs``, ``ssl_certfile``, ``ssl_keyfile`` and ``ssl_check_hostname`` for TLS.

redis-py's Sentinel connection pool asks the sentinels for the master's address each time it
opens a connection, and a connection to a master that was demoted answers ``READONLY``, which
the pool turns into a connection error: so after a failover the next command (retried on a
fresh connection, :mod:`realtime._redis`) reaches the new master by itself. docs/scaling.md,
"Redis Sentinel", says what a failover costs clients."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import redis.asyncio as aioredis
import redis.retry
import redis.sentinel
from redis.asyncio.connection import BlockingConnectionPool, SSLConnection
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool, SentinelManagedConnection
from redis.backoff import NoBackoff

SCHEMES = frozenset({"redis+sentinel", "rediss+sentinel"})
DEFAULT_PORT = 26379
# Sentinels answer one small query each; a dead one must not hold a connect for long.
SENTINEL_TIMEOUT = 2.0

_SSL_TEXT = ("ssl_cert_reqs", "ssl_ca_certs", "ssl_certfile", "ssl_keyfile")
_BOOLEANS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}


@dataclass(frozen=True)
class SentinelTarget:
    """What a Sentinel URL says: the sentinels, the service, and the keyword arguments of the
    connections to the master (``master``) and to the sentinels (``sentinel``)."""

    sentinels: list[tuple[str, int]]
    service: str
    master: dict[str, Any] = field(default_factory=dict)
    sentinel: dict[str, Any] = field(default_factory=dict)


def is_sentinel_url(url: str) -> bool:
    return url.split("://", 1)[0].lower() in SCHEMES


def _address(text: str) -> tuple[str, int]:
    host, port = text, ""
    if text.startswith("["):  # [IPv6]:port
        host, _, rest = text[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else rest
    elif ":" in text:
        host, _, port = text.rpartition(":")
    if not host:
        raise ValueError(f"sentinel address {text!r} has no host")
    try:
        number = int(port) if port else DEFAULT_PORT
    except ValueError:
        raise ValueError(f"sentinel address {text!r} has no valid port") from None
    if not 0 < number < 65536:
        raise ValueError(f"sentinel address {text!r} has no valid port")
    return host, number


def parse_sentinel_url(url: str) -> SentinelTarget:
    """Read a Sentinel URL (see the module docstring). Raises ``ValueError`` saying what is
    wrong: another scheme, no sentinel address, no service name, a database that is not a
    number, or an unknown query parameter."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        raise ValueError(f"the scheme is {parts.scheme!r}, not redis+sentinel or rediss+sentinel")
    userinfo, _, hosts = parts.netloc.rpartition("@")
    sentinels = [_address(entry.strip()) for entry in hosts.split(",") if entry.strip()]
    if not sentinels:
        raise ValueError("it names no sentinel (host:port, comma-separated)")
    path = [unquote(piece) for piece in parts.path.split("/") if piece]
    if not path:
        raise ValueError("it names no service: add /<service_name>/<db> after the sentinels")
    if len(path) > 2:
        raise ValueError(f"its path {parts.path!r} is not /<service_name>/<db>")
    master: dict[str, Any] = {"db": 0}
    if len(path) == 2:
        if not path[1].isdigit():
            raise ValueError(f"its database {path[1]!r} is not a number")
        master["db"] = int(path[1])
    if userinfo:
        user, colon, password = userinfo.partition(":")
        if user:
            master["username"] = unquote(user)
        if colon:
            master["password"] = unquote(password)
    sentinel: dict[str, Any] = {
        "socket_connect_timeout": SENTINEL_TIMEOUT,
        "socket_timeout": SENTINEL_TIMEOUT,
    }
    tls: dict[str, Any] = {}
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        if name in ("sentinel_username", "sentinel_password"):
            sentinel[name.removeprefix("sentinel_")] = value
        elif name in ("sentinel_ssl", "ssl_check_hostname"):
            if value.lower() not in _BOOLEANS:
                raise ValueError(f"{name}={value!r} is not true or false")
            if name == "sentinel_ssl":
                sentinel["ssl"] = _BOOLEANS[value.lower()]
            else:
                tls[name] = _BOOLEANS[value.lower()]
        elif name in _SSL_TEXT:
            tls[name] = value
        else:
            raise ValueError(
                f"unknown query parameter {name!r} (known: sentinel_username, "
                "sentinel_password, sentinel_ssl, "
                + ", ".join((*_SSL_TEXT, "ssl_check_hostname"))
                + ")"
            )
    if scheme == "rediss+sentinel":
        master.update(ssl=True, **tls)
    if sentinel.get("ssl"):
        sentinel.update(tls)
    return SentinelTarget(sentinels, path[0], master, sentinel)


class _BlockingSentinelPool(SentinelConnectionPool, BlockingConnectionPool):
    """The Sentinel pool, waiting for a free connection as the one-Redis pool does
    (:func:`realtime._redis.get_client`) instead of failing when all are in use."""


class _MasterConnection(SentinelManagedConnection):
    """A connection to the service's master that asks the sentinels again whenever it
    reconnects. redis-py (8.1) reconnects a connection dropped by a failed command, before
    retrying the command, through ``connect_check_health()``, which reuses the old address:
    every retry would then knock at the dead master."""

    async def connect_to(self, address: tuple[str, int]) -> None:
        self.host, self.port = address
        await super().connect_check_health(
            check_health=self.connection_pool.check_connection, retry_socket_connect=False
        )

    async def connect_check_health(
        self, check_health: bool = True, retry_socket_connect: bool = True
    ) -> None:
        if not self.is_connected:
            self.host, self.port = await self.connection_pool.get_master_address()
        await super().connect_check_health(check_health, retry_socket_connect)


class _MasterSSLConnection(_MasterConnection, SSLConnection):
    """:class:`_MasterConnection` over TLS."""


def sentinel_client(url: str, **options: Any) -> aioredis.Redis:
    """A client of the service's master named by the Sentinel ``url``, its pool made with
    ``options`` (the one-Redis pool's: size, timeouts, retries). Raises ``ValueError`` for a
    malformed URL."""
    target = parse_sentinel_url(url)
    # One try per sentinel: redis-py's default retries a dead sentinel for seconds before
    # asking the next one.
    manager = Sentinel(  # type: ignore[no-untyped-call]
        target.sentinels, sentinel_kwargs={**target.sentinel, "retry": Retry(NoBackoff(), 0)}
    )
    master = dict(target.master)
    tls = master.pop("ssl", False)
    client: aioredis.Redis = manager.master_for(
        target.service,
        connection_pool_class=_BlockingSentinelPool,
        connection_class=_MasterSSLConnection if tls else _MasterConnection,
        **master,
        **options,
    )
    return client


async def aclose_sentinels(client: Any) -> None:
    """Close the connections to the sentinels behind ``client`` (a client of
    :func:`sentinel_client`, or channels_redis' client of a Sentinel host), which closing
    the client's own pool leaves open; nothing for another client."""
    manager = getattr(getattr(client, "connection_pool", None), "sentinel_manager", None)
    if isinstance(manager, Sentinel):
        await manager.aclose()


async def aclose_layer_sentinels(layer: Any) -> None:
    """:func:`aclose_sentinels` for each shard of channels_redis' pub/sub ``layer`` on the
    running loop (before its ``flush()``, which drops the clients); nothing for another
    layer."""
    get_loop_layer = getattr(layer, "_get_layer", None)
    if get_loop_layer is None:
        return
    for shard in getattr(get_loop_layer(), "_shards", ()):
        await aclose_sentinels(getattr(shard, "_redis", None))


def ping_master(url: str, timeout: float) -> None:
    """Ask the sentinels for the master and PING it (blocking; for ``manage.py check``).
    Raises what redis-py raises (``MasterNotFoundError`` when no sentinel knows a master)."""
    target = parse_sentinel_url(url)
    once = redis.retry.Retry(NoBackoff(), 0)  # one answer, not redis-py's seconds of retries
    manager = redis.sentinel.Sentinel(  # type: ignore[no-untyped-call]
        target.sentinels, sentinel_kwargs={**target.sentinel, "retry": once}
    )
    client = manager.master_for(  # type: ignore[no-untyped-call]
        target.service,
        socket_connect_timeout=timeout,
        socket_timeout=timeout,
        retry=once,
        **target.master,
    )
    try:
        client.ping()
    finally:
        client.close()


def describe(url: str) -> str:
    """Where a Sentinel URL points, for messages: its sentinels and service, no password."""
    try:
        target = parse_sentinel_url(url)
    except ValueError:
        return "Sentinel (malformed URL)"
    where = ",".join(f"{host}:{port}" for host, port in target.sentinels)
    return f"service {target.service!r} of Sentinel {where}"
