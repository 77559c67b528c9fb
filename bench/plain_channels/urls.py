"""No HTTP views: the baseline only serves its WebSocket route."""

from __future__ import annotations

urlpatterns: list[object] = []
