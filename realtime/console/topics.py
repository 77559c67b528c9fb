"""A topic as the console shows it: its subscribers (from the registry) and its log.

The log interface has no "length" call, so the entries still available are read with
``read_after``: from ``last offset - HISTORY_SIZE`` (one read when the log is trimmed by count
only), else by bisection for the oldest offset a client could still resume from (a log
trimmed by age), at most ``log2(HISTORY_SIZE)`` reads of at most ``HISTORY_SIZE`` entries."""

from __future__ import annotations

import time
from dataclasses import dataclass

from realtime.backends import get_log, get_registry
from realtime.conf import get_config
from realtime.log import Entry, Log
from realtime.registry import Page, Query
from realtime.topics import validate_topic

RATE_WINDOW = 60.0


@dataclass
class TopicStats:
    """What the per-topic page shows. ``rate`` is messages per second over the last
    :data:`RATE_WINDOW` seconds, estimated from the logged entries' publish times."""

    topic: str
    epoch: str
    last_offset: int
    log_length: int
    first_offset: int | None
    last_published: float | None
    rate: float
    subscribers: Page


async def _available(log: Log, topic: str, size: int) -> tuple[str, int, list[Entry]]:
    """The topic's epoch, last offset and every entry a client could still resume from."""
    for _ in range(3):  # the epoch may change under us (a flush); try again then
        current = await log.read_after(topic, None, 0)
        epoch, last = current.epoch, current.offset
        if last == 0:
            return epoch, 0, []
        low = max(0, last - size)
        replay = await log.read_after(topic, epoch, low)
        if replay.reset is None:
            return epoch, last, replay.entries
        if replay.reset in ("epoch_changed", "cursor_ahead"):  # the log moved: look again
            continue
        # Trimmed by age: the smallest offset "after" which the log still answers lies in
        # (low, last]; reading after `last` always answers (with nothing).
        found: list[Entry] = []
        high = last
        while high - low > 1:
            middle = (low + high) // 2
            replay = await log.read_after(topic, epoch, middle)
            if replay.reset == "epoch_changed":
                break
            if replay.reset is None:
                high, found = middle, replay.entries
            else:
                low = middle
        else:
            return epoch, last, found
    return epoch, last, []


def publish_rate(entries: list[Entry], now: float, window: float = RATE_WINDOW) -> float:
    """Messages per second over the last ``window`` seconds. When the log was trimmed within
    the window (a busy topic), the rate is taken over the span the log still covers."""
    if not entries:
        return 0.0
    oldest = entries[0]
    if oldest.offset > 1 and oldest.time > now - window:
        window = max(now - oldest.time, 1.0)
    recent = sum(1 for entry in entries if entry.time >= now - window)
    return recent / window


async def atopic_stats(topic: str, limit: int = 50) -> TopicStats:
    """Read the topic's log and its first ``limit`` subscribers. Raises ``InvalidTopic``."""
    validate_topic(topic)
    epoch, last, entries = await _available(get_log(), topic, get_config().history_size)
    subscribers = await get_registry().query(Query(topic=topic, limit=limit))
    return TopicStats(
        topic=topic,
        epoch=epoch,
        last_offset=last,
        log_length=len(entries),
        first_offset=entries[0].offset if entries else None,
        last_published=entries[-1].time if entries else None,
        rate=publish_rate(entries, time.time()),
        subscribers=subscribers,
    )
