"""Fixtures of the demo's browser tests: the demo site (demo_project, run as ``make demo``
runs it: in-memory layer, log and registry, one process) served by a real daphne on a fresh
migrated and seeded SQLite database, and Debian's headless Chromium (tests/conftest.py). The
demo is started as a subprocess, never imported (STYLE: tests never import the demo)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.servers import Daphne

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "demo12345"  # seed_demo's password for every user


@pytest.fixture(scope="package")
def demo() -> Iterator[Daphne]:
    """daphne serving demo_project.asgi on a migrated, seeded database of its own, shared by
    the package's modules (each test closes its pages; none depends on another's data)."""
    workdir = tempfile.mkdtemp(prefix="rt-demo-test-")
    env = {
        "DATABASE_URL": f"sqlite:///{workdir}/demo.sqlite3",
        "DEBUG": "1",  # the demo serves its static files itself, as under `make demo`
        "REDIS_URL": "",  # in memory: never the shared Redis
        "LOG_LEVEL": "WARNING",
    }
    full_env = {**os.environ, **env, "DJANGO_SETTINGS_MODULE": "demo_project.settings"}
    for command in (["migrate", "--noinput"], ["seed_demo"]):
        subprocess.run(
            [sys.executable, "manage.py", *command],
            cwd=ROOT,
            env=full_env,
            check=True,
            capture_output=True,
            timeout=120,
        )
    node = Daphne(
        "", env, application="demo_project.asgi:application", settings="demo_project.settings"
    )
    try:
        yield node
    finally:
        node.stop()
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture
def browser(chromium: Any, demo: Daphne) -> Iterator[Any]:
    """``browser()`` opens a page in a fresh profile; no page may raise a script error."""
    contexts: list[Any] = []
    errors: list[str] = []

    def open_() -> Any:
        context = chromium.new_context(base_url=demo.http, viewport={"width": 1400, "height": 900})
        context.set_default_timeout(15_000)
        contexts.append(context)
        page = context.new_page()
        page.on("pageerror", lambda error: errors.append(str(error)))
        return page

    yield open_
    for context in contexts:
        context.close()
    assert not errors, errors


def log_in(page: Any, username: str) -> None:
    page.goto("/accounts/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(lambda url: "/accounts/login/" not in url)


def wait_open(page: Any, transport: str) -> None:
    page.wait_for_function(
        "name => window.realtimeClient?.state === 'open'"
        " && window.realtimeClient.transport === name",
        arg=transport,
    )
