"""The notifications page, the test-notification button, and the staff page."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.admin.views.decorators import staff_member_required
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST

from .forms import NotifyForm
from .models import Notification
from .services import notify


@login_required
@never_cache
def notification_list(request: HttpRequest) -> HttpResponse:
    """The user's latest notifications; opening the page marks them read."""
    user: Any = request.user  # a User: login_required
    notifications = list(Notification.objects.filter(user=user)[:50])
    unread = [n.pk for n in notifications if n.read_at is None]
    Notification.objects.filter(user=user, read_at__isnull=True).update(read_at=timezone.now())
    return render(
        request,
        "notifications/list.html",
        {"notifications": notifications, "unread_ids": unread, "unread_count": 0},
    )


@login_required
@require_POST
def send_test(request: HttpRequest) -> HttpResponse:
    """Send yourself a test notification (the page's button, without JavaScript)."""
    stamp = timezone.localtime().strftime("%H:%M:%S")
    notify(request.user, "Test notification", f"You sent this at {stamp}.")
    return redirect("notifications:list")


@login_required
@never_cache
def unread(request: HttpRequest) -> JsonResponse:
    """The bell's count, re-read after a ``reset``."""
    user: Any = request.user  # a User: login_required
    count = Notification.objects.filter(user=user, read_at__isnull=True).count()
    return JsonResponse({"unread": count})


@staff_member_required
def staff_send(request: HttpRequest) -> HttpResponse:
    """Staff: notify any user, and watch deliveries come in."""
    form = NotifyForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        user = form.cleaned_data["user"]
        name = user.get_username()
        notify(user, form.cleaned_data["title"], form.cleaned_data["body"])
        # Not "delivered": that is the browser's ACK, shown live in the table below.
        messages.success(
            request,
            f"Notification saved for {name}: their open pages show it when it arrives "
            "live, or on their next page load.",
        )
        return redirect("notifications:staff")
    recent = Notification.objects.select_related("user")[:20]
    return render(request, "notifications/staff.html", {"form": form, "recent": recent})
