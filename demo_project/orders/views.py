"""Views of the demo: a home page, the customer's orders and the live order page."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render

from .models import Order


def home(request: HttpRequest) -> HttpResponse:
    """The landing page: what the demo shows and how to try it."""
    return render(request, "home.html")


@login_required
def order_list(request: HttpRequest) -> HttpResponse:
    """The logged-in customer's orders; staff see every order."""
    orders = Order.objects.select_related("customer")
    if not request.user.is_staff:
        orders = orders.filter(customer=request.user)
    return render(request, "orders/order_list.html", {"orders": orders})


@login_required
def order_detail(request: HttpRequest, order_id: int) -> HttpResponse:
    """One order with its live status. Only its customer and staff may see it.

    Anyone else gets a 404, so order ids do not reveal which orders exist.
    """
    order = get_object_or_404(Order.objects.select_related("customer"), pk=order_id)
    if not (request.user.is_staff or order.customer_id == request.user.pk):
        raise Http404("No such order.")
    # The page's realtime configuration ({% realtime_client %} in the template) captures the
    # topic's position while rendering, so an update published between this render and the
    # script's subscribe is still delivered.
    return render(request, "orders/order_detail.html", {"order": order})
