"""Who may subscribe to which realtime topic; autodiscovered by the realtime app."""

from __future__ import annotations

from typing import Any

import realtime

from .models import Order


@realtime.topic("order.{order_id:int}")
def can_subscribe_order(user: Any, order_id: int) -> bool:
    """The order's customer and staff users may follow an order."""
    return user.is_staff or Order.objects.filter(pk=order_id, customer_id=user.pk).exists()
