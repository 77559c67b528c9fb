"""Connection setup, from the broadcast runs (``python -m bench.run --targets
realtime-token,realtime,channels-core,bare --nodes 1 --messages 5``): how fast each target
took N clients from nothing to subscribed (``connect_s``: the slowest load-generator
process), as connections per second, and the node's CPU per connection in that time
(``connect_cpu_s``), with issue 10's targets for ``realtime-token``: at
least 1.5x plain Channels' rate (its consumer behind ``AuthMiddlewareStack``) and at least
0.5x the bare server's, in the same run."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

ORDER = ("realtime-token", "realtime", "channels-core", "channels-pubsub", "bare")
PLAIN = ("channels-core", "channels-pubsub")


def _rate(row: dict[str, Any]) -> float | None:
    seconds, connected = row.get("connect_s"), row.get("connected")
    return connected / seconds if seconds and connected else None


def format_connect(rows: Sequence[dict[str, Any]], server: str | None = None) -> str:
    """The connection-setup lines (medians over repeats), or "" without a realtime row;
    ``server`` names the ASGI server of the Django rows when a run compared several."""
    groups: dict[tuple[int, int], dict[str, dict[str, Any]]] = {}
    for row in rows:
        if row["target"] in ORDER and row.get("connect_s"):
            groups.setdefault((row["nodes"], row["connections"]), {})[row["target"]] = row
    lines = []
    for (nodes, conns), by_target in sorted(groups.items()):
        if not {"realtime-token", "realtime"} & set(by_target):
            continue
        under = f", under {server}" if server else ""
        lines.append(f"Connection setup, {conns:,} clients, {nodes} node(s){under} (medians):")
        for name in ORDER:
            row = by_target.get(name)
            rate = _rate(row) if row else None
            if row is None or rate is None:
                continue
            refused = row.get("connect_refused")
            extra = f", {refused:,.0f} handshakes refused (busy)" if refused else ""
            cpu = row.get("connect_cpu_s")
            per_conn = f"  {cpu * 1000 / row['connected']:>5.2f} ms CPU/conn" if cpu else ""
            lines.append(
                f"    {name:<16} {row['connect_s']:>7.2f} s  {rate:>7,.0f} conn/s{per_conn}"
                f"  ({row.get('connect_retries') or 0:,.0f} handshakes retried{extra})"
            )
        token = by_target.get("realtime-token")
        token_rate = _rate(token) if token else None
        if token_rate is None:
            continue
        plain = [r for r in (_rate(by_target[p]) for p in PLAIN if p in by_target) if r]
        if plain:
            ratio = token_rate / max(plain)
            verdict = "PASS" if ratio >= 1.5 else "FAIL"
            lines.append(f"    realtime-token {ratio:.2f}x of plain Channels (>= 1.5x) {verdict}")
        bare = _rate(by_target["bare"]) if "bare" in by_target else None
        if bare:
            ratio = token_rate / bare
            verdict = "PASS" if ratio >= 0.5 else "FAIL"
            lines.append(f"    realtime-token {ratio:.2f}x of bare (>= 0.5x) {verdict}")
    return "\n".join(lines)
