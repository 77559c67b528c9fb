"""Publishes an order's new status to its realtime topic when it changes."""

from __future__ import annotations

import logging
from typing import Any

from django.db.models.signals import post_save
from django.dispatch import receiver

import realtime

from .models import Order

logger = logging.getLogger(__name__)


def publish_status(order: Order) -> None:
    """Publish ``order``'s current status on ``order.<pk>``, to be acknowledged by clients.

    Inside an atomic block, ``realtime.publish`` waits for the commit by itself.
    """
    realtime.publish(
        order.topic,
        "status",
        {
            "status": order.status,
            "label": order.get_status_display(),
            "updated_at": order.updated_at,
        },
        ack=True,
    )
    logger.info("Published status %s of order %s on %s", order.status, order.pk, order.topic)


@receiver(post_save, sender=Order, dispatch_uid="orders.publish_status_change")
def order_saved(
    sender: type[Order],
    instance: Order,
    created: bool,
    update_fields: frozenset[str] | None,
    **kwargs: Any,
) -> None:
    """Publish after a save that changed the status of an existing order."""
    if created or (update_fields is not None and "status" not in update_fields):
        return
    if instance.status_changed():
        publish_status(instance)
    instance._loaded_status = instance.status
