"""The client's address behind reverse proxies named in ``TRUSTED_PROXIES``.

Each proxy appends the address it was reached from to ``X-Forwarded-For``; a client may send
the header with made-up addresses in it. So the header is read only when the connection
comes from a trusted proxy, and from the right: the first address that is not a trusted
proxy is the client's, and whatever stands left of it is ignored."""

from __future__ import annotations

import functools
import ipaddress

from realtime.conf import get_config

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@functools.cache
def _networks(entries: tuple[str, ...]) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(entry, strict=False) for entry in entries)


def _trusted(address: str, networks: tuple[Network, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in networks)


def forwarded_client(peer: str | None, forwarded_for: str | None) -> str | None:
    """The client's address from ``forwarded_for`` (the ``X-Forwarded-For`` value), when the
    connection's own address ``peer`` is a trusted proxy; else ``None`` (use ``peer``). The
    rightmost entry that is not a trusted proxy wins; an entry that is not an IP address stops
    the walk, and the trusted address right of it (an entry, or ``peer``) is returned."""
    networks = _networks(get_config().trusted_proxies)
    if not networks or not forwarded_for or not peer or not _trusted(peer, networks):
        return None
    address = peer
    for entry in reversed(forwarded_for.split(",")):
        entry = entry.strip()
        try:
            ipaddress.ip_address(entry)
        except ValueError:
            break
        address = entry
        if not _trusted(entry, networks):
            break
    return address
