"""What every load-generator client records, whatever its transport: which messages of the run
it holds (by sequence number), duplicates, and the publish-to-receive latency of each first
receipt. Shared by the WebSocket clients (``bench.loadgen``) and the SSE and long-poll clients
(``bench.httpclients``)."""

from __future__ import annotations

from collections import Counter
from typing import Any


class HandshakeError(Exception):
    """The server answered the handshake with something other than what the protocol says."""


class Stats:
    """Counters shared by all the clients of this worker (one event loop, no locks needed)."""

    def __init__(self) -> None:
        self.unique = 0
        self.dups = 0
        self.out_of_range = 0
        self.resets = 0
        self.reconnects = 0
        self.latencies_ms: list[float] = []
        self.first_rx: float | None = None
        self.last_rx: float | None = None
        self.closed: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        self.complete_clients = 0
        self.gone_clients = 0  # closed for good before holding every message
        self.recording = True
        # HTTP transports: requests sent (polls, or streams opened) and TCP connections opened
        self.http_requests = 0
        self.tcp_connects = 0
        # ``ack: true`` messages: ack frames sent and the ids they carried
        self.ack_frames = 0
        self.ack_ids = 0
        # `batch` frames received (realtime-batch) and the frames they held
        self.batch_frames = 0
        self.batched = 0
        # handshakes the server answered "try again later" (admission, drain)
        self.refused = 0


class Receiver:
    """The bookkeeping half of a client: call :meth:`_record` with each benchmark payload."""

    def __init__(self, messages: int, stats: Stats) -> None:
        self.messages = messages
        self.stats = stats
        self.seen = bytearray(messages)
        self.received = 0
        self.opened = False

    @property
    def complete(self) -> bool:
        """Whether this client holds every message of the run."""
        return self.received >= self.messages

    def _record(self, data: Any, now: float) -> None:
        """Count the payload ``{"seq": i, "t": publish time}`` received at ``now``."""
        if not self.stats.recording or not isinstance(data, dict):
            return
        seq = data.get("seq")
        if not isinstance(seq, int) or not 0 <= seq < self.messages:
            self.stats.out_of_range += 1
            return
        if self.seen[seq]:
            self.stats.dups += 1
            return
        self.seen[seq] = 1
        self.received += 1
        stats = self.stats
        stats.unique += 1
        if self.received == self.messages:
            stats.complete_clients += 1
        stats.latencies_ms.append((now - float(data["t"])) * 1000.0)
        if stats.first_rx is None:
            stats.first_rx = now
        stats.last_rx = now
