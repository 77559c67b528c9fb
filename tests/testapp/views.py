"""Test-only views: publish from a plain sync Django view, as a site would."""

from __future__ import annotations

import json

from django.contrib.auth import authenticate, login, logout
from django.db import transaction
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

import realtime
from tests.testapp.consumers import ACKED, UNDELIVERED


@csrf_exempt
@require_POST
def publish(request: HttpRequest) -> JsonResponse:
    body = json.loads(request.body)
    message_id = realtime.publish(
        body["topic"], body["event"], body.get("data"), ack=body.get("ack", False)
    )
    return JsonResponse({"id": message_id})


class _Refused(Exception):
    pass


@csrf_exempt
@require_POST
def publish_in_transaction(request: HttpRequest) -> JsonResponse:
    """Publishes inside transaction.atomic, then rolls it back when the body says ``fail``
    (answering 409), as a view that validates after writing would."""
    body = json.loads(request.body)
    try:
        with transaction.atomic():
            message_id = realtime.publish(body["topic"], body["event"], body.get("data"))
            if body.get("fail"):
                raise _Refused
    except _Refused:
        return JsonResponse({"error": "refused"}, status=409)
    return JsonResponse({"id": message_id})


@csrf_exempt
@require_POST
def log_in(request: HttpRequest) -> HttpResponse:
    body = json.loads(request.body)
    user = authenticate(request, username=body["username"], password=body["password"])
    if user is None:
        return HttpResponse(status=401)
    login(request, user)
    return HttpResponse(status=204)


@csrf_exempt
@require_POST
def log_out(request: HttpRequest) -> HttpResponse:
    logout(request)
    return HttpResponse(status=204)


def acks(request: HttpRequest) -> JsonResponse:
    """What this process counted: ``on_ack`` runs and undelivered reports per message id."""
    return JsonResponse({"acked": ACKED, "undelivered": UNDELIVERED})
