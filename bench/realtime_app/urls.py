"""No HTTP views: the target only serves the realtime WebSocket endpoint."""

from __future__ import annotations

urlpatterns: list[object] = []
