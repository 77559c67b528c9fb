"""URLs of the demo site."""

from __future__ import annotations

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.contrib.staticfiles.urls import staticfiles_urlpatterns
from django.urls import include, path

from demo_project.orders import views

urlpatterns = [
    path("", views.home, name="home"),
    path("orders/", include("demo_project.orders.urls")),
    path("notifications/", include("demo_project.notifications.urls")),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("realtime/", include("realtime.urls")),
    path("admin/", admin.site.urls),
]

# With DEBUG on, serve the static files from Django itself, so that a bare
# `daphne demo_project.asgi:application` works like `manage.py runserver` does.
# (An empty list when DEBUG is off: put a web server or CDN in front.)
urlpatterns += staticfiles_urlpatterns()
