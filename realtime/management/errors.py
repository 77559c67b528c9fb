"""The one-line error an operator command prints when Redis cannot be reached."""

from __future__ import annotations

from django.core.management.base import CommandError

from realtime.conf import get_config
from realtime.hubs import serves_connections
from realtime.redis_urls import where


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
    return CommandError(
        f"{what} ({where(config.redis_url)}): {cause}. Is Redis running, and is "
        "REALTIME['REDIS_URL'] right?"
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
