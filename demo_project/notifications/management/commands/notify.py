"""``manage.py notify <username> <text>``: send a user a notification."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

import realtime
from demo_project.notifications.services import NOT_PUSHED, notify


class Command(BaseCommand):
    help = (
        "Send a notification to a user; their open pages show it at once. NOTE: with the "
        "in-memory defaults (no REDIS_URL) this separate process cannot reach the running "
        "server's memory: the notification is saved and shows on the next page load. Set "
        "REDIS_URL for both the server and this command to see it arrive live."
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
        try:
            notification = notify(user, text[:120], body)
        except realtime.PublishError as exc:
            # Exit 0: the row is saved, and a script that retries on failure would duplicate it.
            self.stderr.write(self.style.WARNING(f"The notification {NOT_PUSHED} ({exc})"))
            return
        self.stdout.write(
            self.style.SUCCESS(f"Notified {username}: {notification.title!r} (#{notification.pk})")
        )
        if not settings.REALTIME.get("REDIS_URL"):
            self.stderr.write(
                self.style.WARNING(
                    "REDIS_URL is not set: the message went to this process's memory only, so "
                    "a running server will not push it. Set REDIS_URL for both processes."
                )
            )
