"""ASGI entry point: ``daphne demo_project.asgi:application``.

HTTP goes to Django; WebSocket connections on ``/realtime/ws/`` go through session
authentication to the demo's consumer, whose ``on_ack`` marks notifications delivered.
"""

from __future__ import annotations

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "demo_project.settings")

from realtime.asgi import get_asgi_application  # after the settings module is set

application = get_asgi_application("demo_project.notifications.consumers.DemoConsumer")
