"""The admin console fits the screens operators use: at 1280 and 1600 px wide, with the Django
admin's navigation sidebar open, every column of the connections table (the last ones, "Msgs
out" and "Pending ACKs", included) is inside the viewport, and the sparklines draw a line
over a light area, not a filled block (headless Chromium, two real daphne nodes on Redis)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.browser_admin.conftest import Node
from tests.browser_admin.test_console import CONSOLE, REFRESH_MS, Socket, Traffic, log_in

# RT_LAYOUT_SHOTS=<dir>: also save a screenshot per width there, to look at.
SHOTS = os.environ.get("RT_LAYOUT_SHOTS")

COLUMNS_OUTSIDE = """() => {
  const limit = document.documentElement.clientWidth;
  return Array.from(document.querySelectorAll('#result_list th, #result_list td'))
    .filter((cell) => cell.getBoundingClientRect().right > limit + 0.5)
    .map((cell) => `${cell.className}: right ${cell.getBoundingClientRect().right} > ${limit}`);
}"""

SCROLLS = """() => {
  const box = document.querySelector('#changelist-form .results');
  return box.scrollWidth > box.clientWidth;
}"""

# The computed style of what the sparklines draw: the area must stay light, the line visible.
SPARK_STYLE = """() => {
  const svg = document.getElementById('rt-chart-rate');
  const area = getComputedStyle(svg.querySelector('polygon'));
  const line = getComputedStyle(svg.querySelector('polyline'));
  const box = svg.getBoundingClientRect();
  return {areaOpacity: Number(area.fillOpacity) * Number(area.opacity), lineFill: line.fill,
          lineStroke: line.stroke, lineWidth: parseFloat(line.strokeWidth),
          width: box.width, height: box.height};
}"""


@pytest.fixture
def sockets(nodes: list[Node], database: tuple[str, dict[str, Any]]) -> Iterator[list[Socket]]:
    users = database[1]
    topics = ["room.lobby", "public.news", f"user.{users['alice']['pk']}", "public.a-long-name"]
    opened = [
        Socket(nodes[0], users["alice"]["token"], topics),
        Socket(nodes[1], users["carol"]["token"], topics[:2]),
    ]
    yield opened
    for socket in opened:
        socket.close()


@pytest.mark.parametrize("width", [1280, 1600])
def test_every_column_is_visible_with_the_admin_sidebar_open(
    chromium: Any, nodes: list[Node], sockets: list[Socket], width: int
) -> None:
    context = chromium.new_context(base_url=nodes[0].http, viewport={"width": width, "height": 800})
    context.set_default_timeout(15_000)
    page = context.new_page()
    traffic = Traffic(nodes[0], "room.lobby")
    try:
        log_in(page, sidebar=True)
        page.goto(CONSOLE)
        page.wait_for_selector("#rt-console[data-ready=true]")
        assert page.is_visible("#nav-sidebar"), "the admin's sidebar is open"
        for socket in sockets:
            page.wait_for_selector(f'#rt-rows tr[data-id="{socket.id}"]')
        page.wait_for_function(
            "Number(document.getElementById('rt-chart-rate').dataset.points) >= 3",
            timeout=4 * REFRESH_MS,
        )
        if SHOTS:
            Path(SHOTS).mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(Path(SHOTS) / f"console-{width}.png"))

        assert page.evaluate(COLUMNS_OUTSIDE) == []
        assert page.evaluate(SCROLLS) is False, "the table scrolls sideways in its box"
        for header in ("Msgs out", "Pending ACKs"):
            cell = page.locator("#result_list thead th", has_text=header)
            assert cell.is_visible()
            box = cell.bounding_box()
            assert box is not None and box["x"] + box["width"] <= width, header
        # the highest point of each sparkline keeps clear of the top edge (viewBox 40 high)
        for chart in ("rt-chart-connections", "rt-chart-rate"):
            points = page.get_attribute(f"#{chart} polyline", "points") or ""
            tops = [float(point.split(",")[1]) for point in points.split()]
            assert tops and min(tops) >= 8, (chart, points)
        style = page.evaluate(SPARK_STYLE)
        assert style["areaOpacity"] <= 0.1, style
        assert style["lineFill"] == "none" and style["lineWidth"] >= 1, style
        assert style["lineStroke"] not in ("none", "rgba(0, 0, 0, 0)"), style
        assert style["width"] >= 100 and style["height"] >= 24, style
    finally:
        traffic.stop()
        context.close()
