"""The outbox table's operations: write a row in the caller's transaction, claim rows for a
relay, finish or release them, purge delivered ones, and measure the backlog.

Claiming is what keeps several relays (threads, processes, hosts) from delivering a row twice
or a topic out of order. A claim is one short transaction that picks the oldest pending rows
(by id) whose lease is free or has passed, keeps of each topic only the rows that come before
any other pending row of that topic (one held by another relay, or being claimed by one right
now), and stamps them with the relay's name and a lease. Two claims never pick the same row:
on databases with ``SELECT … FOR UPDATE SKIP LOCKED`` (PostgreSQL, MySQL 8, MariaDB 10.6) a
claim skips the rows another claim has locked; with ``FOR UPDATE`` alone it waits for it; on
SQLite, which locks the whole database for writing, a claim takes the write lock first, so
claims run one after the other. The log's append is idempotent by message id, so a relay that
dies after appending and before :func:`finish` costs a second append of the same id when the
lease has passed, which the log turns into nothing.

The thread that committed rows takes them with :func:`lock` instead: row locks (SQLite: the
write lock) for the length of one transaction in which it appends and deletes them, with the
same rule of order, so it needs no lease and commits once."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any, NamedTuple

from django.db import connections, transaction
from django.db.models import Count, Min, Q

from realtime.broker.base import MESSAGE_TYPE
from realtime.models import OutboxMessage

# The pending rows a claim looks at, and how many topics of those it takes. They bound the
# parameters of the ordering query (ids and topics) below SQLite's oldest limit of 999.
BATCH = 500
TOPICS = 16
# The most rows :func:`lock` takes at once: it names them twice in one statement.
LOCK_CHUNK = 400

FIELDS = ("id", "topic", "message_id", "event", "data", "ack")


class Row(NamedTuple):
    """A pending row, as a claim or :func:`lock` returns it (no model instance: cheaper)."""

    id: int
    topic: str
    message_id: str
    event: str
    data: str
    ack: bool


def write(message: dict[str, Any], using: str | None) -> int:
    """Insert ``message`` (as ``publish()`` prepared it) on database ``using``: in the open
    transaction if there is one, else committed at once. Returns the row's id."""
    row = OutboxMessage.objects.using(using).create(
        topic=message["topic"],
        message_id=message["id"],
        event=message["event"],
        data=message["data"],
        ack=message["ack"],
        created=time.time(),
    )
    return row.id


def message_of(row: Row) -> dict[str, Any]:
    """The message of ``row``, as ``publish()`` prepares it."""
    return {
        "type": MESSAGE_TYPE,
        "topic": row.topic,
        "event": row.event,
        "id": row.message_id,
        "ack": bool(row.ack),
        "data": row.data,
    }


def _pending(using: str) -> Any:
    return OutboxMessage.objects.using(using).filter(delivered=None)


def _lock_for_claims(using: str) -> Any:
    """The pending rows, selected so that two claims never pick the same one."""
    connection = connections[using]
    rows = _pending(using).filter(Q(claimed_until=None) | Q(claimed_until__lt=time.time()))
    if connection.features.has_select_for_update_skip_locked:
        return rows.select_for_update(skip_locked=True)
    if connection.features.has_select_for_update:
        return rows.select_for_update()
    # SQLite: a write statement, even one that changes nothing, takes the database's write
    # lock until the transaction ends; a second claim waits for it (the busy timeout).
    with connection.cursor() as cursor:
        table = connection.ops.quote_name(OutboxMessage._meta.db_table)
        cursor.execute(f"UPDATE {table} SET claimed_by = claimed_by WHERE id < 0")
    return rows


def _in_order(rows: list[Row], using: str) -> list[Row]:
    """``rows`` less those that come after another pending row of their topic: that row is
    another relay's (claimed, or locked by a claim right now), and must reach the log first."""
    ids = [row.id for row in rows]
    ahead = (
        _pending(using)
        .filter(topic__in={row.topic for row in rows}, id__lt=max(ids))
        .exclude(id__in=ids)
        .values("topic")
        .annotate(first=Min("id"))
    )
    first_foreign = {entry["topic"]: entry["first"] for entry in ahead}
    return [row for row in rows if row.id < first_foreign.get(row.topic, row.id + 1)]


def _few_topics(rows: list[Row], topics: int) -> list[Row]:
    """The rows of the first ``topics`` topics among ``rows``: the other topics are left to
    other relays, which then work side by side instead of waiting for this one."""
    chosen: set[str] = set()
    kept = []
    for row in rows:
        if row.topic not in chosen:
            if len(chosen) == topics:
                continue
            chosen.add(row.topic)
        kept.append(row)
    return kept


def _held(relay: str, using: str) -> Any:
    """The topics of rows another relay holds (a lease that has not passed)."""
    return (
        _pending(using)
        .filter(claimed_until__gte=time.time())
        .exclude(claimed_by=relay)
        .values("topic")
    )


def claimable(relay: str, using: str) -> bool:
    """Whether a pending row waits that ``relay`` may claim once the claims running now end:
    no lease on it, or one that has passed, in a topic no other relay holds."""
    free = Q(claimed_until=None) | Q(claimed_until__lt=time.time())
    rows = _pending(using).filter(free).exclude(topic__in=_held(relay, using))
    return bool(rows.exists())


def claim(
    relay: str, lease: float, using: str, batch: int = BATCH, topics: int = TOPICS
) -> list[Row]:
    """Claim for ``relay``, until ``lease`` seconds from now, the pending rows of at most
    ``topics`` topics among the oldest ``batch`` pending rows of topics no other relay holds;
    the rows are returned in id order, which is each topic's order."""
    with transaction.atomic(using=using):
        free = _lock_for_claims(using).exclude(topic__in=_held(relay, using))
        window = free.order_by("id").values_list(*FIELDS)[:batch]
        rows = _few_topics([Row(*values) for values in window], topics)
        if not rows:
            return []
        rows = _in_order(rows, using)
        if rows:
            OutboxMessage.objects.using(using).filter(id__in=[row.id for row in rows]).update(
                claimed_by=relay, claimed_until=time.time() + lease
            )
    return rows


def lock(written: Sequence[tuple[int, str]], using: str) -> list[Row]:
    """Inside the caller's transaction on ``using``: lock the rows ``written`` (id and topic,
    at most :data:`LOCK_CHUNK`) that are pending and free (no lease, or one that has passed),
    less those that come after another pending row of their topic (held by a relay, locked by
    a claim running now, or waiting); in id order. No claim takes them until the transaction
    ends (other claims skip or wait for locked rows, and keep back the later rows of their
    topics), so the caller appends and finishes them inside it: :func:`finish` then commits
    with the transaction, and a caller that dies leaves them pending and free."""
    connection = connections[using]
    ids = [row_id for row_id, _topic in written]
    if connection.vendor not in ("sqlite", "postgresql"):
        rows = [
            Row(*values)
            for values in _lock_for_claims(using)
            .filter(id__in=ids)
            .values_list(*FIELDS)
            .order_by("id")
        ]
        return _in_order(rows, using) if rows else []
    table = connection.ops.quote_name(OutboxMessage._meta.db_table)
    marks = ", ".join(["%s"] * len(ids))
    # one statement: the rows of ``written`` that no other pending row of their topic precedes
    # (the rows of ``written`` that this does not lock are dealt with below)
    query = (
        f"SELECT r.id, r.topic, r.message_id, r.event, r.data, r.ack FROM {table} r "
        f"WHERE r.id IN ({marks}) AND r.delivered IS NULL "
        "AND (r.claimed_until IS NULL OR r.claimed_until < %s) "
        f"AND NOT EXISTS (SELECT 1 FROM {table} o WHERE o.topic = r.topic AND o.id < r.id "
        f"AND o.delivered IS NULL AND o.id NOT IN ({marks})) ORDER BY r.id"
    )
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            # the database's write lock first, as a claim takes it (:func:`_lock_for_claims`)
            cursor.execute(f"UPDATE {table} SET claimed_by = claimed_by WHERE id < 0")
        else:
            query += " FOR UPDATE SKIP LOCKED"
        cursor.execute(query, [*ids, time.time(), *ids])
        rows = [Row(*values) for values in cursor.fetchall()]
        # a pending row of ``written`` this did not lock (another relay has it) keeps back
        # the later ones of its topic; one that is not there (a rolled-back savepoint wrote
        # it) does not
        locked = {row.id for row in rows}
        missing = [row_id for row_id, _topic in written if row_id not in locked]
        if missing:
            marks = ", ".join(["%s"] * len(missing))
            cursor.execute(
                f"SELECT id FROM {table} WHERE id IN ({marks}) AND delivered IS NULL", missing
            )
            pending = {row_id for (row_id,) in cursor.fetchall()}
            missing = [row_id for row_id in missing if row_id in pending]
    first: dict[str, int] = {}
    topics = dict(written)
    for row_id in missing:
        first[topics[row_id]] = min(row_id, first.get(topics[row_id], row_id))
    return [row for row in rows if row.id < first.get(row.topic, row.id + 1)]


def finish(ids: Sequence[int], retention: float, using: str) -> None:
    """The rows ``ids`` are in the log: delete them, or with a ``retention`` mark them
    delivered (:func:`purge` deletes them later)."""
    if not ids:
        return
    if retention > 0:
        OutboxMessage.objects.using(using).filter(id__in=ids).update(delivered=time.time())
        return
    connection = connections[using]
    table = connection.ops.quote_name(OutboxMessage._meta.db_table)
    marks = ", ".join(["%s"] * len(ids))
    with connection.cursor() as cursor:  # one statement, without the ORM's deletion collector
        cursor.execute(f"DELETE FROM {table} WHERE id IN ({marks})", list(ids))


def release(ids: Sequence[int], relay: str, using: str) -> None:
    """Give back rows ``relay`` claimed and did not deliver, for the next claim to take."""
    if ids:
        OutboxMessage.objects.using(using).filter(id__in=ids, claimed_by=relay).update(
            claimed_by="", claimed_until=None
        )


def purge(retention: float, using: str) -> int:
    """Delete the rows delivered more than ``retention`` seconds ago; return how many."""
    cutoff = time.time() - retention
    deleted, _ = OutboxMessage.objects.using(using).filter(delivered__lt=cutoff).delete()
    return deleted


def backlog(using: str) -> tuple[int, float | None]:
    """How many rows wait for a relay, and the age in seconds of the oldest (``None`` if
    none waits)."""
    summary = _pending(using).aggregate(count=Count("id"), oldest=Min("created"))
    oldest = summary["oldest"]
    return summary["count"], None if oldest is None else max(0.0, time.time() - oldest)
