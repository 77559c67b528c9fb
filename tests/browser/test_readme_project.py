"""README.md's "Adding it to your project", followed word for word by a new project.

The package is built as a wheel from this checkout and installed, with its dependencies, into
a fresh virtualenv; ``django-admin startproject mysite`` makes the project; each step's code
comes from README.md itself (the blocks after ``<!-- readme-project: NAME -->`` markers), so
a README that stops working fails here. The project runs with the README's development
command (``python manage.py runserver`` with "daphne" in INSTALLED_APPS), and in headless
Chromium the README's page snippet shows a publish made with the README's ``manage.py shell``
command, over WebSocket, and over SSE and long-poll with the transport pinned as the README
says. Then it runs as docs/deployment.md says for production (its marked blocks: WhiteNoise,
``collectstatic``, ``daphne mysite.asgi:application``) with DEBUG off, and the page works
there too.

What the docs leave to the project is written here, and only that: the shop app's models
(``Order``, ``Note``), a view for the page, a user who owns order 42 and is logged in, a Redis
URL and key prefix of the test's own, and DEBUG and ALLOWED_HOSTS for production.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests import markdown
from tests.conftest import free_port

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
DEPLOYMENT = ROOT / "docs" / "deployment.md"
README_REDIS = "redis://127.0.0.1:6379/0"  # what the README's settings say
PAGES = {"websocket": None, "sse": "sse", "longpoll": "longpoll"}  # transport: pinned to
COMMAND_TIMEOUT = 300  # a cold dependency install under load
# pip without byte-compiling all it installs (most of the set-up's time): Python compiles, and
# caches, each module when a command first imports it (see Project)
QUIET = ["--quiet", "--no-compile"]
# The first test also waits for the project: wheel, virtualenv, install, startproject, migrate.
pytestmark = pytest.mark.timeout(600)


def readme_block(name: str, document: Path | None = None) -> str:
    """The code block ``document`` (README.md) marks ``<!-- readme-project: name -->``,
    dedented."""
    document = document or README
    try:
        return markdown.marked_block(document.read_text(), f"readme-project: {name}")
    except LookupError as missing:
        pytest.fail(f"{document.name} has {missing}")


def readme_commands(name: str, document: Path | None = None) -> list[list[str]]:
    """The shell commands of the block marked ``name``, one a line, as arguments."""
    return [shlex.split(line) for line in readme_block(name, document).strip().splitlines()]


def readme_command(name: str, document: Path | None = None) -> list[str]:
    """The one shell command of the block marked ``name``, as arguments."""
    [command] = readme_commands(name, document)
    return command


class Project:
    """A virtualenv with the wheel installed, and a project directory; commands run there with
    the virtualenv first on PATH, as after ``source venv/bin/activate``."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.venv = base / "venv"
        self.dir = base / "mysite"
        self.env = {
            key: value
            for key, value in os.environ.items()
            if key not in ("PYTHONPATH", "DJANGO_SETTINGS_MODULE", "VIRTUAL_ENV")
            and not key.startswith("RT_")
        }
        # as in a new shell: Python caches the bytecode of what it imports (pip compiles none)
        self.env.pop("PYTHONDONTWRITEBYTECODE", None)
        self.env["PATH"] = f"{self.venv / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}"

    def run(
        self, args: list[str], cwd: Path | None = None, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run ``args`` (``python`` and ``django-admin`` are the virtualenv's); fail unless it
        succeeds."""
        done = subprocess.run(
            args,
            cwd=cwd or self.dir,
            env={**self.env, **(env or {})},
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT,
        )
        if done.returncode:
            pytest.fail(f"{shlex.join(args)} exited {done.returncode}:\n{done.stdout}{done.stderr}")
        return done

    def write(self, relative: str, text: str) -> None:
        path = self.dir / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)

    def append(self, relative: str, text: str) -> None:
        with (self.dir / relative).open("a") as file:
            file.write(text)


def build_wheel(out: Path) -> Path:
    """A wheel of this checkout, built from a copy of what the wheel is made of (a build in
    the checkout would reuse a stale ``build/`` directory)."""
    source = out / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy2(ROOT / name, source / name)
    shutil.copytree(
        ROOT / "realtime", source / "realtime", ignore=shutil.ignore_patterns("__pycache__")
    )
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(out), "."],
        cwd=source,
        check=True,
        capture_output=True,
        timeout=COMMAND_TIMEOUT,
    )
    [wheel] = out.glob("django_realtime_push-*.whl")
    return wheel


def make_project(base: Path, redis_url: str) -> Project:
    """The README's steps 1 to 6 on a new ``startproject`` site, with the wheel installed."""
    project = Project(base)
    wheel = build_wheel(base)
    # `python -m venv`, and pip in it as ensurepip would install it, but not byte-compiled
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", str(project.venv)], check=True, timeout=120
    )
    python = str(project.venv / "bin" / "python")
    project.run([sys.executable, "-m", "pip", "--python", python, "install", *QUIET, "pip"], base)
    # step 1's install, with a wheel built from the checkout, as the README allows
    install = readme_command("install")
    assert install[:4] == ["python", "-m", "pip", "install"], install
    project.run([*install[:4], *QUIET, str(wheel)], cwd=base)
    project.run(["django-admin", "startproject", "mysite"], cwd=base)
    project.run(["python", "manage.py", "startapp", "shop"])
    # What the README's examples take for granted: the shop app, its models, a page.
    project.write(
        "shop/models.py",
        textwrap.dedent("""\
            from django.conf import settings
            from django.db import models


            class Order(models.Model):
                customer = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE)
                status = models.CharField(max_length=20, default="new")


            class Note(models.Model):
                user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE)
                text = models.TextField()
            """),
    )
    # Step 1: the settings, after startproject's own. "..." stands for the apps it has.
    settings = readme_block("settings").replace("...", "*INSTALLED_APPS")
    prefix = f"readme-{uuid.uuid4().hex[:8]}"  # this test's keys and channels in a shared Redis
    project.append(
        "mysite/settings.py",
        f"\n{settings.replace(README_REDIS, redis_url)}\n"
        'INSTALLED_APPS += ["shop"]\n'
        f'REALTIME["KEY_PREFIX"] = "{prefix}"\n'
        f'CHANNEL_LAYERS["default"]["CONFIG"]["prefix"] = "{prefix}"\n',
    )
    # Step 2: asgi.py and the URLconf, as the README gives them, and the project's page.
    project.write("mysite/asgi.py", readme_block("asgi"))
    pages = "".join(
        f'    path("orders/42/{name}/", TemplateView.as_view(template_name="shop/{name}.html")),\n'
        for name in PAGES
    )
    project.write(
        "mysite/urls.py",
        readme_block("urls")
        + f"\nfrom django.views.generic import TemplateView\n\nurlpatterns += [\n{pages}]\n",
    )
    # Step 3: who may subscribe to what.
    project.write("shop/realtime_topics.py", readme_block("topics"))
    # Step 5: the consumer, and the setting its comment names.
    consumer = readme_block("consumer")
    [path] = re.findall(r'"CONSUMER": "([\w.]+)"', consumer)
    project.write("shop/consumers.py", consumer)
    project.append("mysite/settings.py", f'REALTIME["CONSUMER"] = "{path}"\n')
    # Step 6: the page snippet, as is, and pinned to each fallback transport as the README says.
    snippet = readme_block("page")
    default_line = "const client = Realtime.fromPage();"
    pinned_line = readme_block("pin").strip()
    assert default_line in snippet and '["sse"]' in pinned_line
    for name, pinned in PAGES.items():
        body = snippet
        if pinned:
            body = snippet.replace(default_line, pinned_line.replace('["sse"]', f'["{pinned}"]'))
        project.write(
            f"shop/templates/shop/{name}.html",
            f"<!doctype html>\n<html><head><title>Order 42</title></head><body>\n{body}"
            "</body></html>\n",
        )
    project.run(["python", "manage.py", "makemigrations", "shop"])
    project.run(["python", "manage.py", "migrate"])  # step 1: "Then python manage.py migrate"
    return project


SETUP_CUSTOMER = """
from django.contrib.auth import get_user_model
from django.test import Client
from shop.models import Order

user = get_user_model().objects.create_user("customer", password="not-used")
Order.objects.create(pk=42, customer=user)
client = Client()
client.force_login(user)
print(client.cookies["sessionid"].value)
"""


class Server:
    """A server command of the docs, on a free port (``port_args(port)`` adds it to the
    command), in its own process group (runserver's autoreloader child is stopped with it)."""

    def __init__(
        self,
        project: Project,
        command: list[str],
        port_args: Callable[[int], list[str]],
        env: dict[str, str] | None = None,
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = project.base / f"server-{self.port}.log"
        with self.log.open("w") as log:
            self.process = subprocess.Popen(
                [*command, *port_args(self.port)],
                cwd=project.dir,
                env={**project.env, **(env or {})},
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(f"{self.url}/realtime/ready/", timeout=5)
                return
            except httpx.TransportError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    pytest.fail(f"{shlex.join(command)} did not start:\n{self.output()}")
                time.sleep(0.1)

    def output(self) -> str:
        return self.log.read_text()

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)


def log_in_customer(project: Project) -> str:
    """Make the user who owns order 42; return the session cookie of a login as them."""
    output = project.run(["python", "manage.py", "shell", "-c", SETUP_CUSTOMER])
    return output.stdout.strip().splitlines()[-1]


def open_page_and_publish(
    browser: Any, project: Project, server: Server, cookie: str, transport: str
) -> None:
    """Open the page of ``transport`` (see PAGES) logged in with ``cookie``, run the README's
    publish command, and check that the page logs the message, over that transport alone."""
    context = browser.new_context(base_url=server.url)
    context.set_default_timeout(20_000)
    context.add_cookies([{"name": "sessionid", "value": cookie, "url": server.url}])
    page = context.new_page()
    sockets: list[str] = []
    requests: list[str] = []
    errors: list[str] = []
    page.on("websocket", lambda socket: sockets.append(socket.url))
    page.on("request", lambda request: requests.append(request.url))
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("response", lambda r: r.status >= 400 and errors.append(f"{r.status} {r.url}"))
    try:
        response = page.goto(f"/orders/42/{transport}/")
        assert response is not None and response.ok
        with page.expect_console_message(lambda m: m.text.startswith("status ")) as logged:
            project.run(readme_command("publish"))  # after the render: its position has it
        assert [arg.json_value() for arg in logged.value.args] == ["status", {"status": "shipped"}]
    finally:
        context.close()
    assert not [error for error in errors if not error.endswith("/favicon.ico")], errors
    used = {
        "websocket": [url for url in sockets if "/realtime/ws/" in url],
        "sse": [url for url in requests if "/realtime/sse/" in url],
        "longpoll": [url for url in requests if "/realtime/poll/" in url],
    }
    assert used[transport], (sockets, requests)
    assert not [name for name, urls in used.items() if urls and name != transport], used
    assert "Traceback" not in server.output(), server.output()


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Project:
    return make_project(tmp_path_factory.mktemp("readme-project"), redis_url)


@pytest.fixture(scope="module")
def session_cookie(project: Project) -> str:
    return log_in_customer(project)


@pytest.fixture(scope="module")
def runserver(project: Project) -> Iterator[Server]:
    """README step 2's development server."""
    command = readme_command("runserver")
    assert command == ["python", "manage.py", "runserver"], command
    server = Server(project, command, lambda port: [f"127.0.0.1:{port}"])
    yield server
    server.stop()


PRODUCTION_SETTINGS = """\
from .settings import *  # noqa: F403

DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1"]
"""


@pytest.fixture(scope="module")
def production(project: Project) -> Iterator[Server]:
    """docs/deployment.md's production setup: WhiteNoise, collectstatic and daphne, with
    DEBUG off (settings module mysite.production)."""
    [install] = readme_commands("whitenoise-install", DEPLOYMENT)
    project.run(install)
    settings = readme_block("whitenoise-settings", DEPLOYMENT)
    project.write("mysite/production.py", f"{PRODUCTION_SETTINGS}\n{settings}")
    collectstatic, daphne = readme_commands("production", DEPLOYMENT)
    assert daphne == ["daphne", "mysite.asgi:application"], daphne
    env = {"DJANGO_SETTINGS_MODULE": "mysite.production"}
    project.run(collectstatic, env=env)
    server = Server(project, daphne, lambda port: ["-b", "127.0.0.1", "-p", str(port)], env)
    yield server
    server.stop()


def test_the_package_comes_from_the_wheel(project: Project) -> None:
    where = project.run(["python", "-c", "import realtime; print(realtime.__file__)"]).stdout
    assert Path(where.strip()).is_relative_to(project.venv), where
    # the licence travels with the installed package
    licences = list(
        project.venv.glob("lib/python*/site-packages/django_realtime_push-*.dist-info/**/LICENSE")
    )
    assert len(licences) == 1 and "BSD" in licences[0].read_text(), licences


def test_the_readme_project_passes_its_checks(project: Project) -> None:
    def realtime_ids(output: str) -> list[str]:
        return re.findall(r"\((realtime\.[EW]\d+)\)", output)

    assert realtime_ids(project.run(["python", "manage.py", "check"]).stderr) == []
    # development settings: only runserver serves the JS client, as the README says
    deploy = project.run(["python", "manage.py", "check", "--deploy"]).stderr
    assert realtime_ids(deploy) == ["realtime.W010"], deploy


@pytest.mark.parametrize("transport", list(PAGES))
def test_a_publish_from_manage_py_shell_reaches_the_readme_page(
    chromium: Any, project: Project, runserver: Server, session_cookie: str, transport: str
) -> None:
    open_page_and_publish(chromium, project, runserver, session_cookie, transport)


def test_in_production_daphne_and_whitenoise_serve_the_readme_page(
    chromium: Any, project: Project, production: Server, session_cookie: str
) -> None:
    open_page_and_publish(chromium, project, production, session_cookie, "websocket")
    env = {"DJANGO_SETTINGS_MODULE": "mysite.production"}
    deploy = project.run(["python", "manage.py", "check", "--deploy"], env=env).stderr
    assert not re.findall(r"\(realtime\.", deploy), deploy
