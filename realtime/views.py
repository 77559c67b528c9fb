"""HTTP views of the realtime app."""

from __future__ import annotations

import hmac

from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from realtime.auth import make_token
from realtime.conf import get_config


@never_cache
@require_GET
def token(request: HttpRequest) -> JsonResponse:
    """``GET realtime/token/``: a fresh token for the logged-in user (401 when anonymous).

    Safe against CSRF: it changes nothing, and another site cannot read the response."""
    if not request.user.is_authenticated:
        return JsonResponse(
            {"error": {"code": "auth_required", "reason": "Log in first."}}, status=401
        )
    lifetime = get_config().token_max_age
    return JsonResponse({"token": make_token(request.user), "expires_in_ms": int(lifetime * 1000)})


@never_cache
@require_GET
def metrics(request: HttpRequest) -> HttpResponse:
    """``GET realtime/metrics/``: Prometheus metrics of this process. 404 unless
    ``REALTIME["METRICS"]``; then it needs ``Authorization: Bearer <METRICS_TOKEN>`` when
    that is set, else a logged-in staff user (401/403 otherwise)."""
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    config = get_config()
    if not config.metrics:
        raise Http404("Metrics are off (REALTIME['METRICS']).")
    if config.metrics_token:
        given = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        if not hmac.compare_digest(given.encode(), config.metrics_token.encode()):
            return HttpResponse(status=401)
    elif not (request.user.is_authenticated and request.user.is_staff):
        return HttpResponse(status=403 if request.user.is_authenticated else 401)
    return HttpResponse(generate_latest(), content_type=CONTENT_TYPE_LATEST)
