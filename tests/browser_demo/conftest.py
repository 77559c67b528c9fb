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

import pytest

from tests.servers import Daphne

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "demo12345"  # seed_demo's password for every user


@pytest.fixture(scope="module")
def demo() -> Iterator[Daphne]:
    """daphne serving demo_project.asgi on a migrated, seeded database of its own."""
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
