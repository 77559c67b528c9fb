"""Faults injected into an outbox relay, for tests that run the relay in a process of its own
(tests/test_outbox_takeover.py). Nothing here is imported by the package."""

from __future__ import annotations

import threading
from collections.abc import Sequence

from realtime.outbox import store


def stop_after_append() -> None:
    """Make this process's relays stop for good right after the topic log took a batch and
    before its outbox rows are finished (deleted or marked): print ``appended <count>`` on
    stdout, then block, for the test to SIGKILL the process at that point."""

    def stuck(ids: Sequence[int], retention: float, using: str) -> None:
        print("appended", len(ids), flush=True)
        threading.Event().wait()

    store.finish = stuck  # the relay calls store.finish(...) through the module
