from __future__ import annotations

import collections
import json
from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.db import DEFAULT_DB_ALIAS

from realtime.backends import get_registry
from realtime.loop import run_sync
from realtime.management.errors import backend_failed, require_redis
from realtime.outbox.store import backlog


class Command(BaseCommand):
    """Exits with status 1 and one line on stderr when the registry (Redis) cannot be read.
    The ``--json`` schema is in docs/operations.md ("Commands")."""

    help = "Show the live nodes, connections by transport, and the busiest topics."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--top", type=int, default=10, help="how many topics to list")
        parser.add_argument("--json", action="store_true", help="machine-readable output")

    def handle(self, *args: Any, **options: Any) -> None:
        require_redis("realtime_status")
        try:
            entries = run_sync(get_registry().all())
        except Exception as exc:
            raise backend_failed("the connection registry could not be read", exc) from None
        nodes = collections.Counter(e.node for e in entries)
        transports = collections.Counter(e.transport for e in entries)
        topics = collections.Counter(t for e in entries for t in e.topics)
        users = {e.user_id for e in entries if e.user_id is not None}
        pending, oldest = backlog(DEFAULT_DB_ALIAS)
        status: dict[str, Any] = {
            "connections": len(entries),
            "users": len(users),
            "nodes": dict(nodes.most_common()),
            "transports": dict(transports.most_common()),
            "topics": dict(topics.most_common(options["top"])),
            "outbox": {"pending": pending, "oldest_age": oldest},
        }
        if options["json"]:
            self.stdout.write(json.dumps(status, indent=2))
            return
        self.stdout.write(f"{status['connections']} connection(s), {len(users)} user(s)")
        age = "" if oldest is None else f", the oldest {oldest:.1f} s old"
        self.stdout.write(f"outbox: {pending} message(s) waiting for a relay{age}")
        for title in ("nodes", "transports", "topics"):
            self.stdout.write(f"\n{title}:")
            for name, count in status[title].items():
                self.stdout.write(f"  {count:>7}  {name}")
