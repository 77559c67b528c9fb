"""``manage.py notify <username> <text>``: send a user a notification."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from demo_project.notifications.services import notify


class Command(BaseCommand):
    help = (
        "Send a notification to a user; their open pages show it at once. It is published "
        "durably: with the in-memory defaults (no REDIS_URL) this process cannot reach the "
        "running server's memory, so the message waits in the outbox table until the "
        "server's relay moves it (within REALTIME['RELAY_INTERVAL'], 2 s)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")
        parser.add_argument("text", help="the notification's title")
        parser.add_argument("--body", default="", help="more text under the title")

    def handle(self, *args: Any, username: str, text: str, body: str, **options: Any) -> None:
        try:
            user = get_user_model().objects.get(username=username)
        except get_user_model().DoesNotExist:
            raise CommandError(f"There is no user {username!r}.") from None
        notification = notify(user, text[:120], body)
        self.stdout.write(
            self.style.SUCCESS(f"Notified {username}: {notification.title!r} (#{notification.pk})")
        )
