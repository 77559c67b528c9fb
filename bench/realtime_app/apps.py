"""Registers the benchmark topic once the app registry is ready."""

from __future__ import annotations

from django.apps import AppConfig

from bench._common import TOPIC


class BenchRealtimeConfig(AppConfig):
    """App config of the realtime benchmark target."""

    name = "bench.realtime_app"
    label = "bench_realtime_app"

    def ready(self) -> None:
        """Called by ``django.setup()``: let anyone subscribe to the benchmark topic."""
        import realtime

        realtime.register_topic(TOPIC, realtime.allow_any)
