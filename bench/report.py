"""Turning run results into the printed table, the target checks, and medians over repeats."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from bench._common import median
from bench.targets import CHANNELS_TARGETS, HTTP_TARGETS

Row = dict[str, Any]

#: Worse end-of-drain states sort later; the aggregate of repeats keeps the worst.
STATUS_ORDER = ("complete", "idle", "closed", "cutoff", "error")

# The targets for this app, as ratios measured in the same run.
MAX_P99_VS_CHANNELS = 0.1
MIN_RATE_VS_CHANNELS = 10.0
MAX_P99_VS_BARE = 3.0
MIN_RATE_VS_BARE = 1 / 3
MAX_RSS_VS_CHANNELS = 1.0

NUMERIC_FIELDS = (
    "connected",
    "failed_connections",
    "expected",
    "delivered",
    "lost",
    "dups",
    "delivered_per_s",
    "p50_ms",
    "p90_ms",
    "p99_ms",
    "max_ms",
    "rss_per_conn_kib",
    "server_cpu_s",
    "proxy_cpu_s",
    "client_cpu_s",
    "connect_s",
    "connect_cpu_s",
    "connect_retries",
    "connect_refused",
    "drain_s",
    "reconnects",
    "publish_call_p99_ms",
    "ack_frames",
    "ack_ids",
    "batch_frames",
    "batched",
)
CENSORED_FIELDS = ("p50_censored", "p90_censored", "p99_censored")


def aggregate(runs: Sequence[Row]) -> Row:
    """One row from the repeats of one (target, connections, nodes): medians, worst status.

    A latency percentile is marked censored (a lower bound) if it was in any repeat.
    """
    first = runs[0]
    row: Row = {key: first[key] for key in ("target", "nodes", "connections", "messages", "rate")}
    ok = [r for r in runs if not r.get("error")]
    row["repeats"] = len(runs)
    row["errors"] = [r["error"] for r in runs if r.get("error")]
    if not ok:
        row["status"] = "error"
        return row
    for key in NUMERIC_FIELDS:
        row[key] = median(r.get(key) for r in ok)
    for key in CENSORED_FIELDS:
        row[key] = any(r.get(key) for r in ok)
    row["status"] = max((r["status"] for r in ok), key=STATUS_ORDER.index)
    # Sockets closed as rate limited (4429): the worst repeat, not the median, must be zero.
    row["rate_limited"] = max(int(r.get("rate_limited") or 0) for r in ok)
    return row


def _num(value: Any, digits: int = 0) -> str:
    if value is None:
        return "-"
    if digits == 0:
        return f"{round(value):,}"
    return f"{value:,.{digits}f}"


def _ms(row: Row, pct: int) -> str:
    value = row.get(f"p{pct}_ms")
    if value is None:
        return "-"
    text = f"{value:,.0f}" if value >= 100 else f"{value:.1f}"
    return (">" + text) if row.get(f"p{pct}_censored") else text


def _conns(row: Row) -> str:
    connected = row.get("connected")
    if connected is None or connected == row["connections"]:
        return f"{row['connections']:,}"
    return f"{round(connected):,}/{row['connections']:,}"


COLUMNS: list[tuple[str, Callable[[Row], str]]] = [
    ("target", lambda r: str(r.get("label") or r["target"])),
    ("nodes", lambda r: str(r["nodes"])),
    ("conns", _conns),
    ("msgs", lambda r: str(r["messages"])),
    ("expected", lambda r: _num(r.get("expected"))),
    ("delivered", lambda r: _num(r.get("delivered"))),
    ("lost", lambda r: _num(r.get("lost"))),
    ("dup", lambda r: _num(r.get("dups"))),
    ("deliv/s", lambda r: _num(r.get("delivered_per_s"))),
    ("p50 ms", lambda r: _ms(r, 50)),
    ("p99 ms", lambda r: _ms(r, 99)),
    ("RSS/conn KiB", lambda r: _num(r.get("rss_per_conn_kib"), 1)),
    ("srv cpu s", lambda r: _num(r.get("server_cpu_s"), 2)),
    ("cli cpu s", lambda r: _num(r.get("client_cpu_s"), 2)),
    ("end", lambda r: str(r.get("status", "-"))),
]
RIGHT_ALIGNED = {name for name, _ in COLUMNS} - {"target", "end"}


def format_table(rows: Sequence[Row]) -> str:
    """Plain aligned text, one line per row, a header and a rule."""
    cells = [[name for name, _ in COLUMNS]]
    cells += [[render(row) for _, render in COLUMNS] for row in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(COLUMNS))]
    out = []
    for n, line in enumerate(cells):
        parts = []
        for (name, _), cell, width in zip(COLUMNS, line, widths, strict=True):
            parts.append(cell.rjust(width) if name in RIGHT_ALIGNED else cell.ljust(width))
        out.append("  ".join(parts).rstrip())
        if n == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


@dataclass(frozen=True)
class Ratio:
    """ours / theirs, where either side may be only a lower bound (a censored percentile)."""

    value: float | None
    #: "=" exact, "<" the true ratio is smaller, ">" larger, "?" unknown (both are bounds).
    kind: str

    @classmethod
    def of(cls, ours: float | None, theirs: float | None, ours_lb: bool, theirs_lb: bool) -> Ratio:
        """The ratio of two measurements, ``*_lb`` telling which are lower bounds."""
        if ours is None or theirs is None or theirs == 0:
            return cls(None, "?")
        kind = {(False, False): "=", (False, True): "<", (True, False): ">"}.get(
            (ours_lb, theirs_lb), "?"
        )
        return cls(ours / theirs, kind)

    def check(self, bound: float, at_most: bool) -> str:
        """PASS, FAIL, or UNDECIDED when a bound keeps us from telling."""
        if self.value is None:
            return "n/a"
        ok = self.value <= bound if at_most else self.value >= bound
        if self.kind == "=":
            return "PASS" if ok else "FAIL"
        # With "<" the truth is smaller: a pass for an upper limit stays a pass.
        if self.kind == "<" and at_most and ok:
            return "PASS"
        if self.kind == ">" and at_most and not ok:
            return "FAIL"
        if self.kind == ">" and not at_most and ok:
            return "PASS"
        if self.kind == "<" and not at_most and not ok:
            return "FAIL"
        return "UNDECIDED"

    def __str__(self) -> str:
        if self.value is None:
            return "-"
        prefix = {"=": "", "<": "<", ">": ">", "?": "~"}[self.kind]
        return f"{prefix}{self.value:.3g}x"


def _entry(ratio: Ratio, bound: float, at_most: bool, **extra: Any) -> Row:
    return {
        "ratio": ratio.value,
        "ratio_kind": ratio.kind,
        "text": str(ratio),
        "bound": bound,
        "result": ratio.check(bound, at_most),
        **extra,
    }


def compare(rows: Sequence[Row]) -> list[Row]:
    """The issue's targets for ``realtime``, per scenario, against the rows of the same run.

    "Best plain Channels" is taken per metric (the lower p99, the higher delivered/s, the lower
    RSS per connection of the two layers), which is the strictest reading of the targets.
    A p99 that is only a lower bound (messages still missing at the end of the drain) makes
    the ratio a bound too, and a check that the bound cannot settle says UNDECIDED.
    """
    checks: list[Row] = []
    scenarios = sorted({(r["connections"], r["nodes"]) for r in rows})
    for conns, nodes in scenarios:
        here = {
            r["target"]: r
            for r in rows
            if r["connections"] == conns and r["nodes"] == nodes and r["status"] != "error"
        }
        ours = here.get("realtime")
        if ours is None:
            continue
        bare = here.get("bare")
        layers = [here[name] for name in CHANNELS_TARGETS if name in here]
        check: Row = {
            "connections": conns,
            "nodes": nodes,
            "offered_per_s": conns * ours["rate"],
            "lost": ours.get("lost"),
            "dups": ours.get("dups"),
            "zero_loss": "PASS" if not ours.get("lost") and not ours.get("dups") else "FAIL",
        }
        p99s = [r for r in layers if r.get("p99_ms") is not None]
        if p99s:
            best = min(p99s, key=lambda r: r["p99_ms"])
            ratio = Ratio.of(
                ours.get("p99_ms"), best["p99_ms"], ours["p99_censored"], best["p99_censored"]
            )
            check["p99_vs_channels"] = _entry(
                ratio, MAX_P99_VS_CHANNELS, True, layer=best["target"]
            )
        rates = [r for r in layers if r.get("delivered_per_s")]
        if rates:
            best = max(rates, key=lambda r: r["delivered_per_s"])
            ratio = Ratio.of(ours.get("delivered_per_s"), best["delivered_per_s"], False, False)
            extra: Row = {"layer": best["target"]}
            if bare is not None and bare.get("delivered_per_s"):
                extra["bare_ratio"] = bare["delivered_per_s"] / best["delivered_per_s"]
            check["rate_vs_channels"] = _entry(ratio, MIN_RATE_VS_CHANNELS, False, **extra)
        rss = [r for r in layers if r.get("rss_per_conn_kib")]
        if rss:
            best = min(rss, key=lambda r: r["rss_per_conn_kib"])
            ratio = Ratio.of(ours.get("rss_per_conn_kib"), best["rss_per_conn_kib"], False, False)
            check["rss_vs_channels"] = _entry(
                ratio, MAX_RSS_VS_CHANNELS, True, layer=best["target"]
            )
        if bare is not None:
            ratio = Ratio.of(
                ours.get("p99_ms"), bare.get("p99_ms"), ours["p99_censored"], bare["p99_censored"]
            )
            check["p99_vs_bare"] = _entry(ratio, MAX_P99_VS_BARE, True)
            ratio = Ratio.of(ours.get("delivered_per_s"), bare.get("delivered_per_s"), False, False)
            check["rate_vs_bare"] = _entry(ratio, MIN_RATE_VS_BARE, False)
        checks.append(check)
    return checks


def format_checks(checks: Sequence[Row]) -> str:
    """The ratio lines printed under the table."""
    if not checks:
        return "(no ratios: the realtime target did not run, or nothing to compare it with)"
    lines = []
    for c in checks:
        parts = [
            f"lost {_num(c.get('lost'))}, dup {_num(c.get('dups'))} (target 0) {c['zero_loss']}"
        ]
        x = c.get("p99_vs_channels")
        if x:
            parts.append(f"p99      {x['text']} of {x['layer']} (<= {x['bound']:g}x) {x['result']}")
        x = c.get("rate_vs_channels")
        if x:
            line = f"deliv/s  {x['text']} of {x['layer']} (>= {x['bound']:g}x) {x['result']}"
            if x["result"] != "PASS" and "bare_ratio" in x:
                line += (
                    f"  [bare reached {x['bare_ratio']:.3g}x; offered load is "
                    f"{c['offered_per_s']:,.0f}/s]"
                )
            parts.append(line)
        x = c.get("rss_vs_channels")
        if x:
            parts.append(f"RSS/conn {x['text']} of {x['layer']} (<= {x['bound']:g}x) {x['result']}")
        x = c.get("p99_vs_bare")
        if x:
            parts.append(f"p99      {x['text']} of bare (<= {x['bound']:g}x) {x['result']}")
        x = c.get("rate_vs_bare")
        if x:
            parts.append(f"deliv/s  {x['text']} of bare (>= {x['bound']:.2f}x) {x['result']}")
        head = f"{c['connections']:,} connections, {c['nodes']} node(s): realtime"
        lines.append(head + "\n    " + "\n    ".join(parts))
    return "\n".join(lines)


#: What the HTTP transports are compared on: (row field, label, field of the censored flag).
TRANSPORT_METRICS = (
    ("delivered_per_s", "deliv/s", None),
    ("p50_ms", "p50", "p50_censored"),
    ("p99_ms", "p99", "p99_censored"),
    ("rss_per_conn_kib", "RSS/conn", None),
    ("server_cpu_s", "srv cpu", None),
)


def ratios_to(row: Row, base: Row, metrics: Sequence[tuple[str, str, str | None]]) -> Row:
    """``row``'s ratio to ``base`` for each (field, label, censored flag's field) of
    ``metrics``, by label: the value, its kind (see :class:`Ratio`) and its text."""
    ratios: Row = {}
    for field, label, censored in metrics:
        ratio = Ratio.of(
            row.get(field),
            base.get(field),
            bool(censored and row.get(censored)),
            bool(censored and base.get(censored)),
        )
        ratios[label] = {"ratio": ratio.value, "ratio_kind": ratio.kind, "text": str(ratio)}
    return ratios


def compare_transports(rows: Sequence[Row]) -> list[Row]:
    """SSE and long-poll rows against ``realtime`` over WebSocket at the same size and nodes.

    The issue sets no ratio targets for them; the promise they share with the WebSocket is
    zero loss and no duplicates. Where no WebSocket row of the same size ran (long-poll's
    default 500 clients), only the loss check is given and the table holds the figures.
    """
    checks: list[Row] = []
    for row in rows:
        if row["target"] not in HTTP_TARGETS or row["status"] == "error":
            continue
        ws = next(
            (
                r
                for r in rows
                if r["target"] == "realtime"
                and r["connections"] == row["connections"]
                and r["nodes"] == row["nodes"]
                and r["status"] != "error"
            ),
            None,
        )
        check: Row = {
            "target": row["target"],
            "connections": row["connections"],
            "nodes": row["nodes"],
            "lost": row.get("lost"),
            "dups": row.get("dups"),
            "zero_loss": "PASS" if not row.get("lost") and not row.get("dups") else "FAIL",
            "vs_websocket": None,
        }
        if ws is not None:
            check["vs_websocket"] = ratios_to(row, ws, TRANSPORT_METRICS)
        checks.append(check)
    return checks


def format_transport_checks(checks: Sequence[Row]) -> str:
    """The lines printed under the realtime targets for the SSE and long-poll rows."""
    lines = []
    for c in checks:
        head = f"{c['connections']:,} connections, {c['nodes']} node(s): {c['target']}"
        loss = f"lost {_num(c.get('lost'))}, dup {_num(c.get('dups'))} (target 0) {c['zero_loss']}"
        ratios = c.get("vs_websocket")
        if ratios:
            versus = ", ".join(f"{label} {x['text']}" for label, x in ratios.items())
            detail = f"vs realtime over WebSocket: {versus}"
        else:
            detail = "no WebSocket row at this size in this run: absolute figures in the table"
        lines.append(f"{head}\n    {loss}\n    {detail}")
    return "\n".join(lines)
