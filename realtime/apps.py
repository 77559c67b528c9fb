from __future__ import annotations

from django.apps import AppConfig
from django.utils.module_loading import autodiscover_modules


class RealtimeConfig(AppConfig):
    name = "realtime"
    verbose_name = "Realtime"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from realtime import (
            autobahn_logs,
            checks,  # noqa: F401  (registers the system checks)
            revocation,
            users,
        )

        autobahn_logs.defer_debug_arguments()  # under daphne: no per-frame log formatting
        revocation.connect()
        users.register()  # the built-in user:<pk> topic, before the apps' own patterns

        # Topic permissions live in each app's realtime_topics.py, like admin.py.
        autodiscover_modules("realtime_topics")
