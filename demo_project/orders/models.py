"""The demo's one model: a customer's order and its status."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import models
from django.urls import reverse


class OrderStatus(models.TextChoices):
    """Where an order is in its life. The order of the members is the happy path."""

    PLACED = "placed", "Placed"
    PAID = "paid", "Paid"
    PACKED = "packed", "Packed"
    SHIPPED = "shipped", "Shipped"
    DELIVERED = "delivered", "Delivered"
    CANCELLED = "cancelled", "Cancelled"


class Order(models.Model):
    """An order of one customer. Saving a new status publishes it to ``order.<pk>``
    (``realtime.publish_model`` in ``realtime_topics.py``)."""

    customer = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="orders"
    )
    number = models.CharField(max_length=20, unique=True)
    status = models.CharField(
        max_length=16, choices=OrderStatus.choices, default=OrderStatus.PLACED
    )
    total = models.DecimalField(max_digits=10, decimal_places=2)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-pk"]

    def __str__(self) -> str:
        return f"Order {self.number}"

    def get_absolute_url(self) -> str:
        return reverse("orders:detail", args=[self.pk])

    @property
    def topic(self) -> str:
        """The realtime topic on which this order's changes are published."""
        return f"order.{self.pk}"

    def status_data(self) -> dict[str, Any]:
        """What the order's page gets in an ``order.updated`` message."""
        return {
            "status": self.status,
            "label": self.get_status_display(),
            "updated_at": self.updated_at,
        }

    @property
    def steps(self) -> list[dict[str, Any]]:
        """The happy path with this order's progress along it, for the template."""
        path = [s for s in OrderStatus if s is not OrderStatus.CANCELLED]
        reached = path.index(OrderStatus(self.status)) if self.status in path else -1
        return [
            {"value": s.value, "label": s.label, "done": i <= reached} for i, s in enumerate(path)
        ]
