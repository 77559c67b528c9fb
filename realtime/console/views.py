"""The console's views. :class:`realtime.admin.LiveConnectionAdmin` routes them through its
admin site's ``admin_view`` (staff only, login redirect, CSRF protection, no caching) and
passes itself in; each view then checks the dedicated permission (403 without it)."""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from typing import Any, Protocol

from django.contrib import messages
from django.contrib.admin import AdminSite
from django.core.exceptions import PermissionDenied
from django.db.models.options import Options
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.template.loader import render_to_string
from django.template.response import TemplateResponse
from django.urls import reverse
from django.views.decorators.http import require_POST

from realtime import control, health
from realtime.conf import get_config
from realtime.console import listing
from realtime.console.topics import atopic_stats
from realtime.exceptions import InvalidTopic
from realtime.loop import run_sync
from realtime.topics import validate_topic

logger = logging.getLogger("realtime.console")

VIEW_PERMISSION = "realtime.view_connections"
MANAGE_PERMISSION = "realtime.manage_connections"
MAX_NOTICE = 1000


class ConsoleAdmin(Protocol):
    """What the views need of the model admin that routes them
    (:class:`realtime.admin.LiveConnectionAdmin`)."""

    @property
    def opts(self) -> Options[Any]: ...

    @property
    def admin_site(self) -> AdminSite: ...

    @property
    def refresh_interval(self) -> float: ...


def can_view(request: HttpRequest) -> bool:
    """Staff with ``realtime.view_connections`` (or ``manage_connections``, which implies
    it); superusers have both."""
    user = request.user
    return bool(
        user.is_active
        and user.is_staff
        and (user.has_perm(VIEW_PERMISSION) or user.has_perm(MANAGE_PERMISSION))
    )


def can_manage(request: HttpRequest) -> bool:
    user = request.user
    return bool(user.is_active and user.is_staff and user.has_perm(MANAGE_PERMISSION))


def _require_view(request: HttpRequest) -> None:
    if not can_view(request):
        raise PermissionDenied("Viewing live connections needs realtime.view_connections.")


def _snapshot(params: listing.Params) -> listing.Snapshot:
    return run_sync(listing.asnapshot(params))


def _fragments(
    request: HttpRequest, model_admin: ConsoleAdmin, snapshot: listing.Snapshot
) -> dict[str, str]:
    """The parts of the page that auto-refresh replaces, rendered by the templates the
    page itself includes (one renderer for the first load and every refresh)."""
    context = _listing_context(model_admin, snapshot, can_manage(request))
    return {
        name: render_to_string(f"realtime/admin/_{name}.html", context, request)
        for name in ("rows", "paginator", "filters")
    }


def _listing_context(
    model_admin: ConsoleAdmin, snapshot: listing.Snapshot, manage: bool
) -> dict[str, Any]:
    params = snapshot.params
    return {
        "opts": model_admin.opts,
        "snapshot": snapshot,
        "params": params,
        "rows": [listing.row(entry, snapshot.time) for entry in snapshot.page.entries],
        "columns": listing.columns(params),
        "page_links": listing.page_links(snapshot),
        "filters": [
            ("node", listing.choices(params, "node", snapshot.nodes)),
            ("transport", listing.choices(params, "transport", snapshot.transports)),
            ("topic", listing.choices(params, "topic", snapshot.topics, listing.TOP_TOPICS)),
        ],
        "has_manage": manage,
    }


def console(request: HttpRequest, model_admin: ConsoleAdmin) -> HttpResponse:
    """The list of live connections (the model's change list)."""
    _require_view(request)
    request.current_app = model_admin.admin_site.name
    params = listing.Params.from_query(request.GET)
    error = ""
    try:
        snapshot = _snapshot(params)
    except Exception as exc:  # the registry (Redis) is unreachable: say so, list nothing
        logger.warning("Reading the registry failed: %s", exc)
        error = f"The registry could not be read: {exc}"
        snapshot = listing.snapshot_of([], params, 0.0)
    opts = model_admin.opts
    context = {
        **model_admin.admin_site.each_context(request),
        **_listing_context(model_admin, snapshot, can_manage(request)),
        "title": "Live connections",
        "subtitle": None,
        "opts": opts,
        "app_label": opts.app_label,
        "registry_error": error,
        "refresh_ms": int(model_admin.refresh_interval * 1000),
        "urls": _urls(model_admin),
    }
    return TemplateResponse(request, "realtime/admin/console.html", context)


def poll(request: HttpRequest, model_admin: ConsoleAdmin) -> JsonResponse:
    """What the console polls: the page of connections as data and as rendered rows, the
    filter choices and paginator, and cluster-wide totals for the chart."""
    _require_view(request)
    request.current_app = model_admin.admin_site.name
    params = listing.Params.from_query(request.GET)
    try:
        snapshot = _snapshot(params)
    except Exception as exc:  # the registry (Redis) is unreachable
        return health.outage_answer(
            JsonResponse({"error": f"The registry could not be read: {exc}"}, status=503)
        )
    return JsonResponse(
        {
            "total": snapshot.page.total,
            "page": snapshot.params.page,
            "pages": snapshot.pages,
            "entries": [entry.to_dict() for entry in snapshot.page.entries],
            "totals": snapshot.totals(),
            "html": _fragments(request, model_admin, snapshot),
        }
    )


@require_POST
def actions(request: HttpRequest, model_admin: ConsoleAdmin) -> HttpResponse:
    """Disconnect the selected connections, or send them a test message (``notice``)."""
    if not can_manage(request):
        raise PermissionDenied("Acting on live connections needs realtime.manage_connections.")
    request.current_app = model_admin.admin_site.name
    back = request.POST.get("next", "")
    target = _urls(model_admin)["console"] + (back if back.startswith("?") else "")
    ids = [value for value in request.POST.getlist("ids") if value][: control.MAX_TARGETS]
    action = request.POST.get("action", "")
    if not ids:
        messages.warning(request, "Select one or more connections first.")
        return HttpResponseRedirect(target)
    try:
        if action == "disconnect":
            found = control.disconnect(ids, "disconnected by an operator")
            verb = "Disconnect sent to"
        elif action == "notify":
            text = request.POST.get("text", "").strip()
            if not text:
                messages.warning(request, "Type the test message to send.")
                return HttpResponseRedirect(target)
            found = control.notify(ids, text[:MAX_NOTICE])
            verb = "Test message sent to"
        else:
            messages.error(request, f"Unknown action {action!r}.")
            return HttpResponseRedirect(target)
    except Exception as exc:  # the registry or the channel layer is unreachable
        messages.error(request, f"The order could not be sent: {exc}")
        return HttpResponseRedirect(target)
    logger.info(
        "%s: %s for %d of %d selected connection(s): %s",
        request.user.get_username(),
        action,
        found,
        len(ids),
        " ".join(ids[:20]) + (" …" if len(ids) > 20 else ""),
    )
    noun = "connection" if found == 1 else "connections"
    note = f"{verb} {found} {noun}."
    if found < len(ids):
        note += f" {len(ids) - found} of the selected had already gone."
    messages.success(request, note)
    return HttpResponseRedirect(target)


def topic(request: HttpRequest, model_admin: ConsoleAdmin, name: str) -> HttpResponse:
    """One topic: subscribers, log length, last offset, publish rate. 503 with a message
    (and the page's navigation) when the log or the registry (Redis) cannot be read."""
    _require_view(request)
    request.current_app = model_admin.admin_site.name
    try:
        validate_topic(name)
    except InvalidTopic as exc:
        raise Http404(str(exc)) from exc
    opts = model_admin.opts
    params = listing.Params(topic=name)
    context: dict[str, Any] = {
        **model_admin.admin_site.each_context(request),
        "title": f"Topic {name}",
        "subtitle": None,
        "opts": opts,
        "app_label": opts.app_label,
        "topic_name": name,
        "params": params,
        "console_url": _urls(model_admin)["console"] + params.querystring(),
        "urls": _urls(model_admin),
    }
    try:
        stats = run_sync(atopic_stats(name))
    except Exception as exc:  # the log or the registry (Redis) is unreachable: say so
        logger.warning("Reading topic %r failed: %s", name, exc)
        context["topic_error"] = f"The topic could not be read: {exc}"
        return health.outage_answer(
            TemplateResponse(request, "realtime/admin/topic.html", context, status=503)
        )
    now = time.time()
    context.update(
        {
            "stats": stats,
            "last_published": (
                datetime.fromtimestamp(stats.last_published, UTC) if stats.last_published else None
            ),
            "rows": [listing.row(e, now) for e in stats.subscribers.entries],
            "columns": listing.columns(params),
            "has_manage": False,
            "history_size": get_config().history_size,
        }
    )
    return TemplateResponse(request, "realtime/admin/topic.html", context)


def _urls(model_admin: ConsoleAdmin) -> dict[str, str]:
    site = model_admin.admin_site.name
    prefix = f"{site}:{model_admin.opts.app_label}_{model_admin.opts.model_name}"
    return {
        "console": reverse(f"{prefix}_changelist"),
        "poll": reverse(f"{prefix}_poll"),
        "actions": reverse(f"{prefix}_actions"),
    }
