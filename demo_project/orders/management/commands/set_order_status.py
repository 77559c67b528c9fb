"""``manage.py set_order_status <order_id> <status>``: change an order's status and publish it."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from demo_project.orders.models import Order, OrderStatus


class Command(BaseCommand):
    help = (
        "Set an order's status and publish it to the order's page, as the admin does. It is "
        "published durably: with the in-memory defaults (no REDIS_URL) this process cannot "
        "reach the running server's memory, so the message waits in the outbox table until "
        "the server's relay moves it (within REALTIME['RELAY_INTERVAL'], 2 s)."
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
        with transaction.atomic():  # the outbox row commits with the save
            order.save(update_fields=["status", "updated_at"])  # publish_model publishes it
        self.stdout.write(
            self.style.SUCCESS(
                f"{order}: {previous} -> {order.get_status_display()} (published on {order.topic})"
            )
        )
