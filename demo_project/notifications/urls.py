"""URLs of the notifications app, under ``/notifications/``."""

from __future__ import annotations

from django.urls import path

from . import views

app_name = "notifications"
urlpatterns = [
    path("", views.notification_list, name="list"),
    path("test/", views.send_test, name="test"),
    path("unread/", views.unread, name="unread"),
    path("staff/", views.staff_send, name="staff"),
]
