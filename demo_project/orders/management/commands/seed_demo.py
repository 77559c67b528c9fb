"""``manage.py seed_demo``: demo users and orders; safe to run again."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction

from demo_project.orders.models import Order, OrderStatus

PASSWORD = "demo12345"

CUSTOMERS: dict[str, list[tuple[str, OrderStatus, str]]] = {
    "alice": [
        ("A-1001", OrderStatus.PLACED, "42.50"),
        ("A-1002", OrderStatus.PAID, "129.00"),
        ("A-1003", OrderStatus.SHIPPED, "18.90"),
    ],
    "bob": [
        ("B-2001", OrderStatus.PLACED, "75.00"),
        ("B-2002", OrderStatus.DELIVERED, "9.99"),
    ],
}


class Command(BaseCommand):
    help = (
        "Create the demo users and orders: customers alice and bob with a few orders each, "
        f'and the staff superuser "staff"; all with the password "{PASSWORD}". '
        "Idempotent: existing users get their password and roles reset, existing orders "
        "(by number) are left as they are."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        User = get_user_model()
        with transaction.atomic():
            staff, _ = User.objects.get_or_create(username="staff")
            staff.is_staff = staff.is_superuser = staff.is_active = True
            staff.set_password(PASSWORD)
            staff.save()

            for username, orders in CUSTOMERS.items():
                user, _ = User.objects.get_or_create(username=username)
                user.is_staff = user.is_superuser = False
                user.is_active = True
                user.set_password(PASSWORD)
                user.save()
                for number, status, total in orders:
                    Order.objects.get_or_create(
                        number=number,
                        defaults={"customer": user, "status": status, "total": Decimal(total)},
                    )

        self.stdout.write(self.style.SUCCESS("Demo data is ready. Log in at /accounts/login/ as:"))
        for username in ["alice", "bob"]:
            ids = ", ".join(
                str(pk)
                for pk in Order.objects.filter(customer__username=username)
                .order_by("pk")
                .values_list("pk", flat=True)
            )
            self.stdout.write(f"  {username} / {PASSWORD}  (customer; orders {ids})")
        self.stdout.write(f"  staff / {PASSWORD}  (staff superuser; change statuses at /admin/)")
