"""Who may follow which notification topic; autodiscovered by the realtime app.

A user's notifications go to the built-in topic ``user:<id>`` (``realtime.publish_to_user``),
which only that user may follow: nothing to register for it here."""

from __future__ import annotations

import realtime

from .models import STAFF_TOPIC

realtime.register_topic(STAFF_TOPIC, realtime.allow_staff)
