"""Fixtures of the admin console's browser test: two real daphne nodes sharing the real Redis
(tests/browser_admin/asgi.py: the test app with the Django admin and its static files), a
database with an operator, and Debian's headless Chromium driven by Playwright (never
Playwright's own browser downloads)."""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.servers import Daphne, delete_prefix, make_database, running_nodes

ROOT = Path(__file__).resolve().parents[2]
SETTINGS = "tests.settings"
DAPHNE = [sys.executable, "-m", "daphne", "-b", "127.0.0.1"]
# The console's refresh in these nodes (LiveConnectionAdmin.refresh_interval, 5 s by default;
# tests/browser_admin/asgi.py), shorter so that the waits for a few refreshes take less
REFRESH = 2.0

SETUP_SCRIPT = """
import json, django
django.setup()
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.core.management import call_command
import realtime
call_command("migrate", verbosity=0)
User = get_user_model()
operator = User.objects.create_user("operator", password="operator-pw", is_staff=True)
operator.user_permissions.add(*Permission.objects.filter(
    content_type__app_label="realtime", codename__in=["view_connections", "manage_connections"]
))
users = {}
for name in ("alice", "bob", "carol", "dave"):
    user = User.objects.create_user(name, password="pw")
    users[name] = {"pk": user.pk, "token": realtime.make_token(user)}
print(json.dumps(users))
"""


class Node(Daphne):
    """One daphne process serving tests.browser_admin.asgi (static files included)."""

    def __init__(self, database: str, env: dict[str, str]) -> None:
        super().__init__(database, env, application="tests.browser_admin.asgi:application")
        self.ws = self.url


@pytest.fixture(scope="package")
def database() -> Iterator[tuple[str, dict[str, Any]]]:
    """A migrated SQLite file with the admin, an operator (staff with both console
    permissions) and users alice, bob, carol and dave (each with a token)."""
    path, users = make_database(SETUP_SCRIPT, SETTINGS)
    yield path, users
    os.unlink(path)


@pytest.fixture(scope="package")
def nodes(database: tuple[str, dict[str, Any]], redis_url: str) -> Iterator[list[Node]]:
    """Two nodes on one Redis, under a key prefix of their own (deleted afterwards)."""
    prefix = f"rt-admin-{uuid.uuid4().hex[:8]}"
    env = {
        "RT_REDIS_URL": redis_url,
        "RT_PREFIX": prefix,
        "RT_HEARTBEAT_INTERVAL": "60",
        "RT_CONSOLE_REFRESH": str(REFRESH),
    }
    try:
        with running_nodes(database[0], env, node=Node) as started:
            yield started
    finally:
        delete_prefix(redis_url, prefix)
