"""ASGI entry point of the `realtime` target: ``bench.realtime_app.asgi:application``.

The WebSocket endpoint is ``/realtime/ws/`` (the default of ``get_asgi_application()``).
"""

from __future__ import annotations

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.realtime_app.settings")

from bench.profiling import install_from_env
from realtime.asgi import get_asgi_application

install_from_env()  # --idle-profile: cProfile the window, started and stopped by signals
application = get_asgi_application()
