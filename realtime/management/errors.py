"""The one-line error an operator command prints when Redis cannot be reached."""

from __future__ import annotations

from urllib.parse import urlsplit

from django.core.management.base import CommandError

from realtime.conf import get_config
from realtime.hubs import serves_connections
from realtime.redis_cluster import is_cluster_url, parse_cluster_url
from realtime.redis_sentinel import describe, is_sentinel_url


def backend_failed(what: str, exc: BaseException) -> CommandError:
    """A :class:`CommandError` for ``exc``, raised while ``what`` (e.g. "the connection
    registry could not be read"): one line naming the Redis host (never its password) and
    the cause, so the command prints no traceback and exits with status 1."""
    config = get_config()
    if isinstance(exc, TimeoutError):
        cause = f"Redis did not answer within {config.publish_timeout} s"
    else:
        cause = " ".join(f"{type(exc).__name__}: {exc}".split()).rstrip(".")
    what = what[0].upper() + what[1:]
    if not config.redis_url:
        return CommandError(f"{what}: {cause}.")
    parts = urlsplit(config.redis_url)
    if is_sentinel_url(config.redis_url):
        where = f"Redis at {describe(config.redis_url)}"
    elif is_cluster_url(config.redis_url):
        try:
            where = f"Redis Cluster at {parse_cluster_url(config.redis_url).where()}"
        except ValueError:  # a malformed URL (manage.py check says what is wrong: E014)
            where = "Redis Cluster"
    elif parts.scheme == "unix":
        where = f"Redis at {parts.path}"
    else:
        where = f"Redis at {parts.hostname}:{parts.port or 6379}"
    return CommandError(
        f"{what} ({where}): {cause}. Is Redis running, and is REALTIME['REDIS_URL'] right?"
    )


def require_redis(command: str) -> None:
    """Refuse to run an operator command that would only see this process's own memory: with
    no ``REALTIME['REDIS_URL']`` the registry and the topic logs live in the server process,
    which a management command (another process) cannot reach. Allowed in a process that
    serves connections itself (``call_command`` from a server)."""
    if not get_config().redis_url and not serves_connections():
        raise CommandError(
            f"{command} needs REALTIME['REDIS_URL']: without Redis the connections and the "
            "topic logs live in the memory of the server process, which this command cannot "
            "reach (it would report nothing and publish to nobody). Give the servers and this "
            "command the same REDIS_URL."
        )
