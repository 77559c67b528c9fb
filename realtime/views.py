"""HTTP views of the realtime app."""

from __future__ import annotations

import asyncio
import hmac
from collections.abc import Awaitable, Callable

from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from realtime import drain, health
from realtime._redis import get_client
from realtime.auth import make_token
from realtime.conf import get_config
from realtime.hub import get_hub

# Each readiness check gets this long before it counts as failed.
READY_TIMEOUT = 2.0


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
    config = get_config()
    if not config.metrics:
        raise Http404("Metrics are off (REALTIME['METRICS']).")
    if config.metrics_token:
        given = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        if not hmac.compare_digest(given.encode(), config.metrics_token.encode()):
            # the challenge a 401 must carry (RFC 9110), naming the scheme scrapers use
            refused = HttpResponse(status=401)
            refused["WWW-Authenticate"] = 'Bearer realm="realtime metrics"'
            return refused
    elif not (request.user.is_authenticated and request.user.is_staff):
        return HttpResponse(status=403 if request.user.is_authenticated else 401)
    return HttpResponse(generate_latest(), content_type=CONTENT_TYPE_LATEST)


async def _check_log() -> None:
    url = get_config().redis_url
    if url:
        await get_client(url).ping()


async def _check_layer() -> None:
    await get_hub().probe(READY_TIMEOUT)


async def _passes(component: str, check: Callable[[], Awaitable[None]]) -> bool:
    try:
        async with asyncio.timeout(READY_TIMEOUT):
            await check()
    except Exception as error:
        health.failed(component, error)
        return False
    health.ok(component)
    return True


@never_cache
@require_GET
async def ready(request: HttpRequest) -> JsonResponse:
    """``GET realtime/ready/``: readiness of this node for load balancers and orchestrators.

    200 ``{"ready": true, "failed": []}`` when this process reaches its topic log (Redis PING,
    when ``REDIS_URL`` is set) and a message sent through the broker (the channel layer or
    Redis pub/sub) to its own hub comes back; else 503 with the failed components' names
    (``"log"``, ``"layer"``, and ``"draining"`` once the process drains: :mod:`realtime.drain`)
    and nothing else. Each check is bounded by :data:`READY_TIMEOUT`; no authentication. Meant
    for the ASGI server (daphne): each process answers for its own hub."""
    checks = {"log": _check_log, "layer": _check_layer}
    results = await asyncio.gather(*(_passes(name, check) for name, check in checks.items()))
    failed = [name for name, passed in zip(checks, results, strict=True) if not passed]
    if drain.draining():
        failed.append("draining")  # out of rotation: the node sends its clients elsewhere
    response = JsonResponse({"ready": not failed, "failed": failed}, status=503 if failed else 200)
    # one entry per health check in django.request's error log during an outage would bury it
    return health.outage_answer(response)
