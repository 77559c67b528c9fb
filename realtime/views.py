"""HTTP views of the realtime app."""

from __future__ import annotations

from django.http import HttpRequest, JsonResponse
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
