"""The admin console of live connections, listed under "Realtime" on the admin index.

Its change list is the console (:mod:`realtime.console`): live connections across all nodes,
with search, filters, sorting, pagination, auto-refresh and the disconnect / test message
actions; each topic has a page of its own. It needs staff status plus
``realtime.view_connections``; the actions need ``realtime.manage_connections``.

To put it on another admin site: ``my_site.register(LiveConnection, LiveConnectionAdmin)``."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

from django.contrib import admin
from django.http import HttpRequest, HttpResponse
from django.urls import URLPattern, path

from realtime.console import views
from realtime.models import LiveConnection


class LiveConnectionAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    """Routes the model's admin URLs to the console; there is nothing to add, change or
    delete. ``refresh_interval`` is how often (seconds) the console polls for fresh data."""

    refresh_interval = 5.0

    def has_module_permission(self, request: HttpRequest) -> bool:
        return views.can_view(request)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return views.can_view(request)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def _wrap(self, view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
        return self.admin_site.admin_view(partial(view, model_admin=self))

    def get_urls(self) -> list[URLPattern]:
        name = f"{self.opts.app_label}_{self.opts.model_name}"
        return [
            path("", self._wrap(views.console), name=f"{name}_changelist"),
            path("poll/", self._wrap(views.poll), name=f"{name}_poll"),
            path("actions/", self._wrap(views.actions), name=f"{name}_actions"),
            path("topic/<str:name>/", self._wrap(views.topic), name=f"{name}_topic"),
        ]


admin.site.register(LiveConnection, LiveConnectionAdmin)
