"""Registers the benchmark topic once the app registry is ready.

With ``BENCH_UNSHARED_READS=1`` (the storm scenario's comparison row) subscriptions read the
topic log directly, one read per resume, as before reads were shared
(:mod:`realtime.log.shared`)."""

from __future__ import annotations

import os

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
        if os.environ.get("BENCH_UNSHARED_READS") == "1":
            from realtime import backends, connection

            connection.get_shared_reads = backends.get_log  # type: ignore[assignment]
