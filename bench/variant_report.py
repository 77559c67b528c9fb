"""The same target under each ASGI server (``--servers``) and each route (``--via``) in one
run: row labels, and each variant's ratios to the baseline (the first server, direct)."""

from __future__ import annotations

from collections.abc import Sequence

from bench.report import Row, ratios_to

#: What a variant is compared on: (row field, label, field of the censored flag).
VARIANT_METRICS = (
    ("delivered_per_s", "deliv/s", None),
    ("p50_ms", "p50", "p50_censored"),
    ("p99_ms", "p99", "p99_censored"),
    ("server_cpu_s", "node cpu", None),
    ("total_cpu_s", "node+nginx cpu", None),
)


def variant_label(
    target: str, server: str, via: str, servers: Sequence[str], routes: Sequence[str]
) -> str:
    """``target``, with the server when the run compares servers and ``via nginx`` on the
    rows through nginx."""
    label = target
    if len(servers) > 1:
        label += f" [{server}]"
    if via != "direct":
        label += f" via {via}"
    return label


def is_baseline(row: Row, servers: Sequence[str], routes: Sequence[str]) -> bool:
    """The row the targets' checks use: the first server (or no ASGI server), first route."""
    return row.get("server") in (servers[0], "websockets") and row.get("via") == routes[0]


def compare_variants(
    rows: Sequence[Row], servers: Sequence[str], routes: Sequence[str]
) -> list[Row]:
    """Each variant row against the baseline row of the same target, size and nodes."""
    checks: list[Row] = []
    for row in rows:
        row["total_cpu_s"] = _total_cpu(row)
    for row in rows:
        if is_baseline(row, servers, routes) or row["status"] == "error":
            continue
        base = next(
            (
                r
                for r in rows
                if is_baseline(r, servers, routes)
                and r["target"] == row["target"]
                and r["connections"] == row["connections"]
                and r["nodes"] == row["nodes"]
                and r["status"] != "error"
            ),
            None,
        )
        if base is None:
            continue
        proxied = row.get("proxy_cpu_s") is not None or base.get("proxy_cpu_s") is not None
        metrics = [m for m in VARIANT_METRICS if proxied or m[0] != "total_cpu_s"]
        ratios = ratios_to(row, base, metrics)
        checks.append(
            {
                "label": row["label"],
                "baseline": base["label"],
                "connections": row["connections"],
                "nodes": row["nodes"],
                "lost": row.get("lost"),
                "dups": row.get("dups"),
                "proxy_cpu_s": row.get("proxy_cpu_s"),
                "ratios": ratios,
            }
        )
    return checks


def _total_cpu(row: Row) -> float | None:
    node = row.get("server_cpu_s")
    if node is None:
        return None
    return node + (row.get("proxy_cpu_s") or 0.0)


def format_variant_checks(checks: Sequence[Row]) -> str:
    """One line per variant: its ratios to the baseline."""
    lines = []
    for c in checks:
        head = f"{c['connections']:,} connections, {c['nodes']} node(s): {c['label']}"
        versus = ", ".join(f"{label} {x['text']}" for label, x in c["ratios"].items())
        proxy = c.get("proxy_cpu_s")
        nginx = "" if proxy is None else f"; nginx {proxy:.2f} cpu s"
        lines.append(
            f"{head}\n    lost {c.get('lost') or 0:,.0f}, dup {c.get('dups') or 0:,.0f}{nginx}"
            f"\n    vs {c['baseline']}: {versus}"
        )
    return "\n".join(lines)
