"""The ACK scenario's checks: ``realtime-ack`` and ``realtime-ack-batch`` (every message
published with ``ack=True``, acknowledged per message or in 20 ms batches) against ``realtime``
(the same broadcast without ACKs) at the same size and nodes, in the same run."""

from __future__ import annotations

from collections.abc import Sequence

from bench.report import Ratio, Row, _entry, _num
from bench.targets import ACK_TARGETS

#: The issue's target: delivered/s with ACKs at least this fraction of the run without.
MIN_RATE_VS_NO_ACK = 0.7


def compare_acks(rows: Sequence[Row]) -> list[Row]:
    """One check per ACK row: no 4429 (rate limited) closes, no loss, and delivered/s and p99
    as ratios of the ``realtime`` row of the same size and nodes, where one ran."""
    checks: list[Row] = []
    for row in rows:
        if row["target"] not in ACK_TARGETS or row["status"] == "error":
            continue
        base = next(
            (
                r
                for r in rows
                if r["target"] == "realtime"
                and (r["connections"], r["nodes"]) == (row["connections"], row["nodes"])
                and r["status"] != "error"
            ),
            None,
        )
        ok = not row.get("rate_limited") and not row.get("lost") and not row.get("dups")
        check: Row = {
            "target": row["target"],
            "connections": row["connections"],
            "nodes": row["nodes"],
            "rate_limited": row.get("rate_limited"),
            "lost": row.get("lost"),
            "dups": row.get("dups"),
            "ack_frames": row.get("ack_frames"),
            "ack_ids": row.get("ack_ids"),
            "zero_4429_zero_loss": "PASS" if ok else "FAIL",
            "rate_vs_no_ack": None,
            "p99_vs_no_ack": None,
        }
        if base is not None:
            rate = Ratio.of(row.get("delivered_per_s"), base.get("delivered_per_s"), False, False)
            check["rate_vs_no_ack"] = _entry(rate, MIN_RATE_VS_NO_ACK, at_most=False)
            p99 = Ratio.of(
                row.get("p99_ms"),
                base.get("p99_ms"),
                bool(row.get("p99_censored")),
                bool(base.get("p99_censored")),
            )
            check["p99_vs_no_ack"] = {"ratio": p99.value, "ratio_kind": p99.kind, "text": str(p99)}
        checks.append(check)
    return checks


def format_ack_checks(checks: Sequence[Row]) -> str:
    """The lines printed for the ACK rows."""
    lines = []
    for c in checks:
        head = f"{c['connections']:,} connections, {c['nodes']} node(s): {c['target']}"
        lines.append(head)
        lines.append(
            f"    closed 4429 {_num(c.get('rate_limited'))}, lost {_num(c.get('lost'))}, "
            f"dup {_num(c.get('dups'))} (target 0) {c['zero_4429_zero_loss']}; "
            f"{_num(c.get('ack_ids'))} ids acknowledged in {_num(c.get('ack_frames'))} frames"
        )
        rate = c.get("rate_vs_no_ack")
        if rate is None:
            lines.append("    no `realtime` row at this size in this run: figures in the table")
            continue
        lines.append(
            f"    deliv/s  {rate['text']} of realtime without ACKs "
            f"(>= {MIN_RATE_VS_NO_ACK:g}x) {rate['result']}; "
            f"p99 {c['p99_vs_no_ack']['text']} of it"
        )
    return "\n".join(lines)
