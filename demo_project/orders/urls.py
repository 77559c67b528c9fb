"""URLs of the orders app, under ``/orders/``."""

from __future__ import annotations

from django.urls import path

from . import views

app_name = "orders"
urlpatterns = [
    path("", views.order_list, name="list"),
    path("<int:order_id>/", views.order_detail, name="detail"),
]
