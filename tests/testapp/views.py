"""Test-only views: publish from a plain sync Django view, as a site would."""

from __future__ import annotations

import json

from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

import realtime


@csrf_exempt
@require_POST
def publish(request: HttpRequest) -> JsonResponse:
    body = json.loads(request.body)
    message_id = realtime.publish(
        body["topic"], body["event"], body.get("data"), ack=body.get("ack", False)
    )
    return JsonResponse({"id": message_id})
