"""Prometheus metrics (prometheus-client), served per process at ``realtime/metrics/`` when
``REALTIME["METRICS"]`` is on. Scrape every node directly, not through the load balancer.

Counting stays off the per-connection hot path: a fan-out adds its subscriber count once per
message, and connection gauges are computed when scraped."""

from __future__ import annotations

import collections
from collections.abc import Iterator
from typing import Any

from prometheus_client import Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import REGISTRY, Collector

from realtime.hubs import all_hubs

PUBLISHED = Counter("realtime_messages_published", "Messages published from this process.")
DELIVERED = Counter(
    "realtime_messages_delivered", "Message frames handed to local connections by the hub."
)
ACKED = Counter("realtime_messages_acked", "Messages acknowledged by clients.")
RETRIED = Counter("realtime_messages_retried", "Unacknowledged messages sent again.")
UNDELIVERED = Counter(
    "realtime_messages_undelivered", "Messages given up on after the last ACK retry."
)
BACKEND_UP = Gauge(
    "realtime_backend_up",
    "1 while this process reaches the backend component (log, layer, registry), 0 while its "
    "last use failed.",
    ["component"],
)
BACKEND_ERRORS = Counter(
    "realtime_backend_errors", "Failed uses of a backend component.", ["component"]
)
PUBLISH_ERRORS = Counter(
    "realtime_publish_errors",
    "Publishes with a failed step: 'append' (publish raised, or failed on commit) or "
    "'broadcast' (the message is in the log; live fan-out failed).",
    ["step"],
)
OUTBOX_PENDING = Gauge(
    "realtime_outbox_pending",
    "Durably published messages waiting in the outbox table, as this process's relay last "
    "counted them (after each drain).",
)
OUTBOX_OLDEST = Gauge(
    "realtime_outbox_oldest_seconds",
    "Age of the oldest message waiting in the outbox table (0 when none waits), as this "
    "process's relay last saw it.",
)
REFUSED = Counter(
    "realtime_connections_refused",
    "New connections answered 'try again later': 'busy' (over ADMISSION_RATE) or 'draining'.",
    ["reason"],
)
LATENCY = Histogram(
    "realtime_publish_to_deliver_seconds",
    "Time from publish() to the hub's fan-out on this node.",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)


class ConnectionCollector(Collector):
    """Connections by transport and node, and queued frames, read from the hubs when
    scraped."""

    def collect(self) -> Iterator[GaugeMetricFamily]:
        connections = GaugeMetricFamily(
            "realtime_connections", "Open connections.", labels=["transport", "node"]
        )
        pending = GaugeMetricFamily("realtime_pending_acks", "Messages waiting for an ACK.")
        counts: collections.Counter[tuple[str, str]] = collections.Counter()
        waiting = 0
        for hub in all_hubs():
            for connection in list(hub.connections.values()):
                counts[(connection.transport_name, hub.node)] += 1
                waiting += len(connection.pending)
        for (transport, node), count in counts.items():
            connections.add_metric([transport, node], count)
        pending.add_metric([], waiting)
        yield connections
        yield pending

    def describe(self) -> list[Any]:
        return []


REGISTRY.register(ConnectionCollector())
