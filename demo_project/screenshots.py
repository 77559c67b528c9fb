"""Walk through the demo in headless Chromium and save a screenshot of each page.

    python -m demo_project.screenshots [--out docs/screenshots] [--chromium /usr/bin/chromium]

It starts daphne on a free port of 127.0.0.1 with a throw-away SQLite database (migrated and
seeded), then, as a person would: opens an order as alice while staff changes its status in
the admin; sends notifications (the page's button, the staff page) and waits for the bell, the
toast and the "delivered" mark that the browser's ACK produces; repeats the notification round
trip on each transport (``?transport=websocket|sse|longpoll``). Any step that does not happen
fails the run. Needs the ``playwright`` package (the ``dev`` extra) and Debian's Chromium
(``tests/browser/ensure_chromium.sh``); never downloads a browser.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PASSWORD = "demo12345"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def demo_server() -> Iterator[str]:
    """daphne serving the demo on a fresh database; yields its base URL."""
    workdir = tempfile.mkdtemp(prefix="rt-demo-")
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "demo_project.settings",
        "DATABASE_URL": f"sqlite:///{workdir}/demo.sqlite3",
        "DEBUG": "1",
        "LOG_LEVEL": "WARNING",
    }
    for command in (["migrate", "--noinput"], ["seed_demo"]):
        subprocess.run(
            [sys.executable, "manage.py", *command],
            cwd=ROOT,
            env=env,
            check=True,
            capture_output=True,
            timeout=120,
        )
    port = free_port()
    address = ["-b", "127.0.0.1", "-p", str(port)]
    process = subprocess.Popen(
        [sys.executable, "-m", "daphne", *address, "demo_project.asgi:application"],
        cwd=ROOT,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    listening = threading.Event()
    log: list[str] = []

    def read() -> None:
        assert process.stderr is not None
        for line in process.stderr:
            log.append(line)
            if "Listening on TCP address" in line:
                listening.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        if not listening.wait(30):
            raise RuntimeError("daphne did not start:\n" + "".join(log))
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
        reader.join(10)
        if any("Traceback" in line for line in log):
            sys.stderr.write("".join(log))
            raise RuntimeError("the demo server logged an exception (above)")


def log_in(page: Any, base: str, username: str) -> None:
    page.goto(f"{base}/accounts/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(lambda url: "/accounts/login/" not in url)


def wait_live(page: Any, transport: str | None = None) -> None:
    """The status bar says open (on ``transport``, when given)."""
    page.wait_for_function(
        "name => window.realtimeClient?.state === 'open'"
        " && (!name || window.realtimeClient.transport === name)",
        arg=transport,
    )


def wait_quietly(page: Any, selector: str, timeout: float) -> bool:
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    try:
        page.wait_for_selector(selector, timeout=timeout)
    except PlaywrightTimeout:
        return False
    return True


def walk(browser: Any, base: str, out: Path) -> list[str]:
    shots: list[str] = []

    def shoot(page: Any, name: str) -> None:
        page.wait_for_timeout(400)  # let a flash or toast animation settle for the picture
        page.screenshot(path=str(out / f"{name}.png"), full_page=True)
        shots.append(name)

    viewport = {"width": 1100, "height": 760}
    alice = browser.new_context(viewport=viewport)
    staff = browser.new_context(viewport=viewport)
    customer = alice.new_page()
    admin = staff.new_page()
    customer.set_default_timeout(20_000)
    admin.set_default_timeout(20_000)

    customer.goto(base)
    wait_live(customer)
    shoot(customer, "home")
    log_in(customer, base, "alice")
    log_in(admin, base, "staff")
    wait_live(customer)
    shoot(customer, "orders")

    # The order page, updated live from the admin.
    customer.click("text=A-1001")
    wait_live(customer, "websocket")
    order_url = customer.url
    order_id = order_url.rstrip("/").rsplit("/", 1)[-1]
    admin.goto(f"{base}/admin/orders/order/{order_id}/change/")
    admin.select_option("#id_status", "paid")
    admin.click("input[name=_save]")
    customer.wait_for_function(
        "() => document.querySelector('[data-status-badge]').textContent.trim() === 'Paid'"
    )
    customer.wait_for_selector("text=Status changed to Paid.")
    shoot(customer, "order")

    # Notifications: the bell counts one sent by staff while alice reads her order.
    admin.goto(f"{base}/notifications/staff/")
    wait_live(admin)
    admin.select_option("#id_user", "alice")
    admin.fill("#id_title", "Your parcel is on its way")
    admin.fill("#id_body", "Order A-1001 left the warehouse.")
    admin.click("form.form button[type=submit]")
    customer.wait_for_function(
        "() => document.querySelector('[data-bell-count]').textContent.trim() === '1'"
    )
    customer.wait_for_selector(".toast >> text=Your parcel is on its way")
    shoot(customer, "order-notification")
    admin.wait_for_selector("[data-delivered-cell] .badge--delivered")
    shoot(admin, "staff-notify")

    # The notifications page on each transport: the button, the ACK, "delivered".
    for transport in ("websocket", "sse", "longpoll"):
        print(f"notifications over {transport}", flush=True)
        customer.goto(f"{base}/notifications/?transport={transport}")
        wait_live(customer, transport)
        before = customer.locator("[data-note]").count()
        customer.click("text=Send me a test notification")
        customer.wait_for_function(
            "count => document.querySelectorAll('[data-note]').length > count", arg=before
        )
        delivered = ".note:first-child [data-delivered=yes]"
        if transport != "longpoll":
            customer.wait_for_selector(delivered)
        elif not wait_quietly(customer, delivered, 5000):
            # Long-poll ACKs travel as the next poll's cursor plus an `ack` POST; the server
            # must run `on_ack` for the POST for the mark to appear.
            print("WARNING: no 'delivered' mark over long-poll (server did not run on_ack)")
        if transport == "sse":
            shoot(customer, "notifications-sse")
        elif transport == "longpoll":
            shoot(customer, "notifications-longpoll")
        else:
            shoot(customer, "notifications")
    customer.goto(f"{base}/notifications/?transport=auto")
    wait_live(customer, "websocket")

    anonymous = browser.new_context(viewport=viewport).new_page()
    anonymous.goto(f"{base}/accounts/login/")
    wait_live(anonymous)
    shoot(anonymous, "login")
    return shots


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots")
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    options = parser.parse_args()
    options.out.mkdir(parents=True, exist_ok=True)
    from playwright.sync_api import sync_playwright

    with demo_server() as base, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=options.chromium, args=CHROMIUM_ARGS)
        try:
            shots = walk(browser, base, options.out)
        finally:
            browser.close()
    print("Saved:", ", ".join(f"{options.out / name}.png" for name in shots))


if __name__ == "__main__":
    main()
