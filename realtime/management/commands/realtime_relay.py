from __future__ import annotations

import signal
from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.db import DEFAULT_DB_ALIAS

from realtime.management.errors import require_redis
from realtime.publishing import new_relay


class Command(BaseCommand):
    """Runs until SIGINT or SIGTERM (it finishes the batch it is moving), or with ``--once``
    until no row waits. Any number may run, on any hosts, next to the servers' own relays."""

    help = (
        "Move durably published messages from the outbox table into the topic log, as every "
        "server process does when REALTIME['DURABLE'] is on: for deployments whose publishers "
        "(workers, cron jobs) run where no server process does."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--database", default=DEFAULT_DB_ALIAS, help="the database of the outbox table"
        )
        parser.add_argument(
            "--once", action="store_true", help="move what waits now, print how many, and exit"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        require_redis("realtime_relay")
        relay = new_relay(options["database"])
        if options["once"]:
            self.stdout.write(str(relay.drain()))
            return
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda *_: relay.stop())
        self.stdout.write(f"Relaying the outbox of database {options['database']!r}.")
        relay.run()
        self.stdout.write(f"Stopped after moving {relay.moved} message(s).")
