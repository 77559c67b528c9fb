"""Admin for orders: staff change statuses here and customers see them live."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from django.contrib import admin, messages
from django.db import transaction
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html
from django.utils.safestring import SafeString

from .models import Order, OrderStatus

if TYPE_CHECKING:
    OrderAdminBase = admin.ModelAdmin[Order]
else:
    OrderAdminBase = admin.ModelAdmin  # ModelAdmin is generic for type checkers only

AdminAction = Callable[[Any, HttpRequest, "QuerySet[Order]"], None]


def _set_status_action(status: OrderStatus) -> AdminAction:
    """An admin action that sets ``status`` on the selected orders.

    Saves each order rather than ``queryset.update()``, so that ``realtime.publish_model`` (in
    ``realtime_topics.py``) publishes: ``update()`` sends no signal.
    """

    def action(modeladmin: OrderAdminBase, request: HttpRequest, queryset: QuerySet[Order]) -> None:
        changed = 0
        with transaction.atomic():  # the publishes go out on commit
            for order in queryset.select_for_update():
                if order.status != status:
                    order.status = status.value
                    order.save(update_fields=["status", "updated_at"])
                    changed += 1
        modeladmin.message_user(
            request, f"{changed} order(s) marked as {status.label.lower()}.", messages.SUCCESS
        )

    action.__name__ = f"mark_{status.value}"
    return admin.action(description=f"Mark selected orders as {status.label.lower()}")(action)


@admin.register(Order)
class OrderAdmin(OrderAdminBase):
    list_display = ["number", "customer", "status", "total", "updated_at", "live_page"]
    list_editable = ["status"]
    list_filter = ["status"]
    list_select_related = ["customer"]
    search_fields = ["number", "customer__username", "customer__email"]
    readonly_fields = ["created_at", "updated_at"]
    actions = [_set_status_action(status) for status in OrderStatus]

    @admin.display(description="Page")
    def live_page(self, order: Order) -> SafeString:
        return format_html('<a href="{}">view</a>', order.get_absolute_url())
