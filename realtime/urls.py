"""Include with ``path("realtime/", include("realtime.urls"))``."""

from django.urls import path

from realtime import views
from realtime.transports import longpoll, post, sse

app_name = "realtime"
urlpatterns = [
    path("token/", views.token, name="token"),
    path("metrics/", views.metrics, name="metrics"),
    path("ready/", views.ready, name="ready"),
    path("sse/", sse.sse, name="sse"),
    path("poll/", longpoll.poll, name="poll"),
    path("send/", post.send, name="send"),
    path("ticket/", post.ticket, name="ticket"),
]
