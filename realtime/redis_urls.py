"""How messages show ``REALTIME["REDIS_URL"]``, never with its password: the URL itself with
the password masked (system checks), or where it points (operator commands). The one place
that takes a Redis URL apart for display, whatever its kind (one Redis, Sentinel, Cluster)."""

from __future__ import annotations

from urllib.parse import urlsplit

from realtime.redis_cluster import is_cluster_url, parse_cluster_url
from realtime.redis_sentinel import describe, is_sentinel_url

# The schemes of one Redis, as redis-py's ``from_url`` takes them; Sentinel
# (realtime.redis_sentinel) and Cluster (realtime.redis_cluster) URLs are told apart first.
REDIS_SCHEMES = frozenset({"redis", "rediss", "unix"})


def without_password(url: str) -> str:
    """``url`` with its password, if any, replaced by ``***``."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    return parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", ":***@")).geturl()


def where(url: str) -> str:
    """Where ``url`` points, for an operator's message: ``Redis at host:port`` (or the socket's
    path), the Sentinel service and its sentinels, or the Cluster's startup nodes."""
    if is_sentinel_url(url):
        return f"Redis at {describe(url)}"
    if is_cluster_url(url):
        try:
            return f"Redis Cluster at {parse_cluster_url(url).where()}"
        except ValueError:  # a malformed URL (manage.py check says what is wrong: E014)
            return "Redis Cluster"
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return f"Redis at {parts.path}"
    return f"Redis at {parts.hostname}:{parts.port or 6379}"
