"""The admin console's browser test app: tests.asgi's application on the admin settings
with static files served, as ``runserver`` would (the admin's CSS,
the console's script)."""

from __future__ import annotations

import os

os.environ["DJANGO_SETTINGS_MODULE"] = "tests.settings"

from django.core.asgi import get_asgi_application as get_django_application

django_application = get_django_application()  # sets Django up

from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler  # noqa: E402

from realtime.admin import LiveConnectionAdmin  # noqa: E402
from realtime.asgi import get_asgi_application  # noqa: E402

if os.environ.get("RT_CONSOLE_REFRESH"):  # tests/browser_admin/conftest.py
    LiveConnectionAdmin.refresh_interval = float(os.environ["RT_CONSOLE_REFRESH"])

application = get_asgi_application(
    "tests.testapp.consumers.EchoConsumer", http=ASGIStaticFilesHandler(django_application)
)
