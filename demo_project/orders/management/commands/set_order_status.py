"""``manage.py set_order_status <order_id> <status>``: change an order's status and publish it."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from demo_project.orders.models import Order, OrderStatus


class Command(BaseCommand):
    help = (
        "Set an order's status and publish it to the order's page, as the admin does. "
        "NOTE: with the in-memory defaults (no REDIS_URL), this separate process cannot reach "
        "the running server's memory, so open pages will not see the change until reloaded: "
        "use the admin instead, or set REDIS_URL for both the server and this command."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("order_id", type=int, help="the order's id (not its number)")
        parser.add_argument("status", choices=OrderStatus.values, help="the new status")

    def handle(self, *args: Any, order_id: int, status: str, **options: Any) -> None:
        try:
            order = Order.objects.get(pk=order_id)
        except Order.DoesNotExist:
            raise CommandError(f"There is no order with id {order_id}.") from None

        if order.status == status:
            self.stdout.write(f"{order} is already {order.get_status_display().lower()}.")
            return
        previous = order.get_status_display()
        order.status = status
        order.save(update_fields=["status", "updated_at"])  # publish_model publishes it
        self.stdout.write(
            self.style.SUCCESS(
                f"{order}: {previous} -> {order.get_status_display()} (published on {order.topic})"
            )
        )
        if not settings.REALTIME.get("REDIS_URL"):
            self.stderr.write(
                self.style.WARNING(
                    "REDIS_URL is not set: the update went to this process's memory only, "
                    "so a running server will not push it. Use the admin, or set REDIS_URL "
                    "for both the server and this command."
                )
            )
