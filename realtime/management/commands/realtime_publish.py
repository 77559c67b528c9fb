from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

import realtime
from realtime.management.errors import require_redis


class Command(BaseCommand):
    help = (
        "Publish a message from a shell script or cron job. Reaches the running servers only "
        "when they share Redis with this process (REALTIME['REDIS_URL'])."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("topic")
        parser.add_argument("event")
        parser.add_argument("data", nargs="?", default="null", help="JSON (default: null)")
        parser.add_argument("--ack", action="store_true", help="clients must acknowledge it")

    def handle(self, *args: Any, **options: Any) -> None:
        require_redis("realtime_publish")
        try:
            data = json.loads(options["data"])
        except ValueError as exc:
            raise CommandError(f"data is not JSON: {exc}") from None
        try:
            message_id = realtime.publish(
                options["topic"], options["event"], data, ack=options["ack"]
            )
        except (realtime.RealtimeError, ValueError, TypeError) as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(message_id)
