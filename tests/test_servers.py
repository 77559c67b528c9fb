"""The test harness's own checks: what counts as a server traceback in a daphne node's log."""

from __future__ import annotations

import pytest

from tests.servers import Daphne, ServerTraceback

LOG = [
    "2026-11-30 12:00:00,000 INFO     Listening on TCP address 127.0.0.1:1\n",
    '127.0.0.1:5 - - [30/Nov/2026:12:00:01] "WSCONNECT /realtime/ws/" - -\n',
    "WARNING realtime.hub: slow\n",
    "ERROR realtime.consumers: Sending a frame failed\n",
    "Traceback (most recent call last):\n",
    '  File "x.py", line 1, in f\n',
    "ValueError: boom\n",
    "2026-11-30 12:00:02,000 ERROR    Internal Server Error: /realtime/send/\n",
    "Traceback (most recent call last):\n",
    "IndexError: list index out of range\n",
    "2026-11-30 12:00:03,000 WARNING  Bad Request: /realtime/poll/\n",
]


def node_with(log: list[str]) -> Daphne:
    node = object.__new__(Daphne)  # no process: only the log matters here
    node.log, node.port = list(log), 1
    return node


def test_error_records_and_their_tracebacks_are_problems_and_warnings_are_not():
    problems = node_with(LOG).problems()
    assert len(problems) == 2
    assert "ValueError: boom" in problems[0] and "Sending a frame failed" in problems[0]
    assert "IndexError" in problems[1] and "Internal Server Error" in problems[1]


def test_a_bare_traceback_is_a_problem():
    assert node_with(["Traceback (most recent call last):\n", "KeyError: 1\n"]).problems()


def test_only_lines_after_the_mark_count_and_allowed_ones_are_left_out():
    node = node_with(LOG)
    assert node.problems(since=len(LOG) - 1) == []
    assert len(node.problems(allow=("IndexError",))) == 1
    with pytest.raises(ServerTraceback, match="boom"):
        node.assert_no_tracebacks()
    node.assert_no_tracebacks(since=len(LOG))
