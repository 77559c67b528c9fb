"""Who may subscribe to which realtime topic, and what is published there; autodiscovered by
the realtime app."""

from __future__ import annotations

from typing import Any

import realtime

from .models import Order


@realtime.topic("order.{order_id:int}")
def can_subscribe_order(user: Any, order_id: int) -> bool:
    """The order's customer and staff users may follow an order."""
    return user.is_staff or Order.objects.filter(pk=order_id, customer_id=user.pk).exists()


# A save that changed an order's status publishes "order.updated" to order.<pk> (on commit),
# to be acknowledged by the page. Only when the status changed: the admin's list_editable
# saves every row of its page, changed or not.
realtime.publish_model(
    Order,
    topic="order.{pk}",
    data=Order.status_data,
    events=["updated"],
    if_changed=["status"],
    ack=True,
)
