from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from realtime import control
from realtime.management.errors import backend_failed, require_redis


class Command(BaseCommand):
    """Exits with status 1 and one line on stderr when Redis (the registry, or the channel
    layer that carries the order) cannot be reached."""

    help = "Close live realtime connections on every node (close code 4403)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--user", help="close every connection of this username")
        parser.add_argument(
            "--connection",
            action="append",
            default=[],
            help="close this connection id (repeatable)",
        )
        parser.add_argument("--reason", default="disconnected by an operator")

    def handle(self, *args: Any, **options: Any) -> None:
        require_redis("realtime_disconnect")
        if not options["user"] and not options["connection"]:
            raise CommandError("Give --user NAME or --connection ID.")
        count = 0
        if options["user"]:
            model = get_user_model()
            try:
                user = model._default_manager.get_by_natural_key(options["user"])
            except model.DoesNotExist:
                raise CommandError(f"No user {options['user']!r}.") from None
            count += self._send(control.disconnect_user, user.pk, options["reason"])
        if options["connection"]:
            count += self._send(control.disconnect, options["connection"], options["reason"])
        self.stdout.write(f"Disconnect sent to {count} connection(s).")

    def _send(self, order: Callable[[Any, str], int], target: Any, reason: str) -> int:
        try:
            return order(target, reason)
        except Exception as exc:
            raise backend_failed("the disconnect order could not be sent", exc) from None
