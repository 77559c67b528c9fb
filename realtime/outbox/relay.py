"""The relay: moves committed outbox rows into the topic log and broadcasts them.

Every process that publishes durably, and every server process when ``DURABLE`` is on, runs
one relay in a daemon thread (:func:`process_relay`); ``manage.py realtime_relay`` runs the
same loop in the foreground. When a transaction with durable publishes commits, the
committing thread first moves its rows itself (:func:`deliver_committed`: locked, appended,
broadcast and deleted in one transaction, as fast as a plain publish on commit plus a few
statements) unless another pending row of their topic comes first; the relay is woken for
what that left, and drains the outbox every ``RELAY_INTERVAL`` seconds (rows other processes
left behind: they died between the commit and the append, or Redis was down).

A drain claims a batch of rows (:func:`realtime.outbox.store.claim`), appends them to their
topics' logs and broadcasts each (as ``publish()`` does, through the process's publisher
loop; the topics of a batch side by side, each topic's rows in one append), deletes the
rows that reached the log (or marks them, with ``OUTBOX_RETENTION``), gives back the others,
and goes on while rows wait. When the log cannot be reached the relay waits and tries again,
doubling its wait up to ``RELAY_INTERVAL``; the outage is logged once by
:mod:`realtime.health` (component ``log``), not per row."""

from __future__ import annotations

import asyncio
import logging
import secrets
import threading
import time
import weakref
from collections import defaultdict
from collections.abc import Awaitable, Callable
from typing import Any

from django.db import DEFAULT_DB_ALIAS, DatabaseError, connections, transaction

from realtime import health
from realtime.conf import get_config
from realtime.exceptions import PublishError
from realtime.hubs import serves_connections
from realtime.loop import run_sync
from realtime.metrics import OUTBOX_OLDEST, OUTBOX_PENDING
from realtime.outbox import store

logger = logging.getLogger("realtime.outbox")

# publish()'s own append-then-broadcast (realtime.publishing, which imports this module):
# takes messages of one topic (in order) and the timeout; raises PublishError when the log
# did not take them.
Deliver = Callable[[list[dict[str, Any]], float], Awaitable[None]]

# The shortest wait after a failed drain; it doubles up to RELAY_INTERVAL.
FIRST_RETRY = 0.1
# A claim that found nothing while free rows wait (another relay's claim had them locked) is
# tried again after CLAIM_PAUSE, at most CLAIM_ATTEMPTS times in a row.
CLAIM_PAUSE = 0.01
CLAIM_ATTEMPTS = 100


def lease_for(publish_timeout: float) -> float:
    """How long a claim holds its rows. A relay gives up on a batch after half of it (see
    :meth:`Relay.move`), so another relay takes rows over only from one that stopped or
    died."""
    return max(10.0, 4 * publish_timeout)


async def _move_rows(
    deliver: Deliver, rows: list[store.Row], moved: list[int], timeout: float
) -> None:
    """Append and broadcast ``rows``: each topic's rows in order (one append for them all),
    the topics concurrently. ``moved`` gets the ids of a topic's rows once the log has them.
    Raises the first failure."""
    by_topic: dict[str, list[store.Row]] = defaultdict(list)
    for row in rows:
        by_topic[row.topic].append(row)

    async def one_topic(topic_rows: list[store.Row]) -> None:
        await deliver([store.message_of(row) for row in topic_rows], timeout)
        moved.extend(row.id for row in topic_rows)

    results = await asyncio.gather(
        *(one_topic(topic_rows) for topic_rows in by_topic.values()), return_exceptions=True
    )
    for result in results:
        if isinstance(result, BaseException):
            raise result


class Relay:
    """One relay on database ``using`` (``name`` identifies its claims), moving rows with
    ``deliver``."""

    def __init__(self, deliver: Deliver, using: str = "default") -> None:
        self.deliver = deliver
        self.using = using
        self.name = secrets.token_hex(8)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self.moved = 0  # rows this relay put into the log

    def wake(self) -> None:
        """Drain now (a durable publish of this process committed)."""
        self._wake.set()

    def stop(self) -> None:
        """End :meth:`run` after the current drain."""
        self._stop.set()
        self._wake.set()

    def move(self) -> bool:
        """Claim one batch and move it into the log. Returns False when no row was waiting;
        raises when the log or the database failed (the undelivered rows are given back)."""
        config = get_config()
        lease = lease_for(config.publish_timeout)
        rows = store.claim(self.name, lease, self.using)
        if not rows:
            return False
        moved: list[int] = []
        try:
            # stop well before the lease ends, so that no other relay takes these rows over
            # while this one still appends them
            run_sync(_move_rows(self.deliver, rows, moved, config.publish_timeout), lease / 2)
        finally:
            done = list(moved)
            store.finish(done, config.outbox_retention, self.using)
            finished = set(done)
            left = [row.id for row in rows if row.id not in finished]
            store.release(left, self.name, self.using)
            self.moved += len(done)
        return True

    def drain(self) -> int:
        """Move rows until none waits that this relay may take (rows of topics other relays
        hold are theirs); return how many this call moved. Raises as :meth:`move`."""
        before = self.moved
        empty = 0
        # a read first: an idle sweep takes no lock (on SQLite, the database's write lock)
        while empty < CLAIM_ATTEMPTS and store.claimable(self.name, self.using):
            if self.move():
                empty = 0
            else:
                # another relay's claim is running and holds the rows it looks at: they are
                # free again (or held) within a transaction's time
                empty += 1
                time.sleep(CLAIM_PAUSE)
        retention = get_config().outbox_retention
        if retention > 0:
            store.purge(retention, self.using)
        pending, oldest = store.backlog(self.using)
        OUTBOX_PENDING.set(pending)
        OUTBOX_OLDEST.set(oldest or 0.0)
        return self.moved - before

    def run(self) -> None:
        """Drain when woken and every ``RELAY_INTERVAL`` seconds, until :meth:`stop`."""
        retry = 0.0
        while not self._stop.is_set():
            self._wake.clear()
            try:
                self.drain()
            except Exception as error:
                self._failed(error)
                retry = min(max(retry * 2, FIRST_RETRY), get_config().relay_interval)
                self._stop.wait(retry)
                continue
            retry = 0.0
            health.ok("outbox")
            self._wake.wait(get_config().relay_interval)
        connections[self.using].close()

    def _failed(self, error: Exception) -> None:
        """One warning per outage (:mod:`realtime.health`); a traceback only for a bug."""
        if not isinstance(error, (*health.OUTAGE_ERRORS, PublishError, DatabaseError)):
            logger.error("The outbox relay failed", exc_info=error)
        if not isinstance(error, PublishError):  # the log's own outage is reported as "log"
            health.failed("outbox", error)
        # a database that went away leaves a broken connection: the next drain opens another
        connections[self.using].close_if_unusable_or_obsolete()


_relays: dict[str, tuple[Relay, threading.Thread]] = {}
_relays_lock = threading.Lock()


def process_relay(deliver: Deliver, using: str = "default") -> Relay:
    """This process's relay for database ``using``, started in a daemon thread on first
    use."""
    with _relays_lock:
        running = _relays.get(using)
        if running is None or not running[1].is_alive():
            relay = Relay(deliver, using)
            thread = threading.Thread(target=relay.run, name=f"realtime-relay-{using}", daemon=True)
            thread.start()
            _relays[using] = running = (relay, thread)
        return running[0]


def _may_relay(using: str) -> bool:
    """Whether this process moves rows into the log: without Redis the topic log is in each
    process's memory, so only a process that serves connections (or runs a relay already,
    started with the server application) relays; the rows of a shell or a worker then wait
    for the server's relay, which sweeps them up."""
    return bool(get_config().redis_url) or serves_connections() or using in _relays


def _move_own(deliver: Deliver, written: list[tuple[int, str]], using: str) -> bool:
    """The fast path: lock the committed rows ``written`` (id and topic), append and
    broadcast them and delete them (or mark them, with ``OUTBOX_RETENTION``), in one
    transaction. Returns whether rows were left for the relay: rows behind another pending
    row of their topic, rows another relay took first, or rows the log did not take."""
    config = get_config()
    moved: list[int] = []
    with transaction.atomic(using=using):
        rows = store.lock(written, using)
        if rows:
            try:
                timeout = config.publish_timeout
                run_sync(_move_rows(deliver, rows, moved, timeout), 3 * timeout + 1)
            except Exception as error:
                # the relay tries again, with backoff, and reports the outage
                logger.debug("Outbox rows left to the relay: %r", error)
            store.finish(moved, config.outbox_retention, using)
    return len(moved) < len(written)


def deliver_committed(deliver: Deliver, written: list[tuple[int, str]], using: str) -> None:
    """The rows ``written`` (id and topic) this process wrote were committed: move them into
    the log at once, in this thread, when this process may relay, the log is up and no other
    row of their topics comes first (:func:`_move_own`); wake this process's relay (started
    on first use) for the rows left. Never raises: the relay moves what this did not."""
    if not _may_relay(using):
        return
    left = not health.is_up("log")  # while it is down, only the relays try it
    chunks = [] if left else range(0, len(written), store.LOCK_CHUNK)
    for start in chunks:
        try:
            left = _move_own(deliver, written[start : start + store.LOCK_CHUNK], using) or left
        except Exception as error:  # the database: the relay's next drain retries
            logger.debug("Outbox rows left to the relay: %r", error)
            connections[using].close_if_unusable_or_obsolete()
            left = True
            break
    relay = process_relay(deliver, using)  # after the fast path, to sweep what others left
    if left:
        relay.wake()


# The rows (id and topic) written durably in the open transaction of a connection, delivered
# together when it commits, and the on-commit callback that delivers them.
_uncommitted: weakref.WeakKeyDictionary[Any, tuple[list[tuple[int, str]], Callable[[], None]]] = (
    weakref.WeakKeyDictionary()
)


def _written_on_commit(deliver: Deliver, using: str) -> list[tuple[int, str]]:
    """The list of rows that :func:`deliver_committed` gets when the open transaction on
    ``using`` commits: the one registered earlier in this transaction while its callback is
    still registered (a rolled-back savepoint or transaction drops it), else a new one."""
    connection = transaction.get_connection(using)
    pending = _uncommitted.get(connection)
    if pending is not None and any(entry[1] is pending[1] for entry in connection.run_on_commit):
        return pending[0]
    written: list[tuple[int, str]] = []

    def on_commit() -> None:
        deliver_committed(deliver, written, using)

    transaction.on_commit(on_commit, using=using)
    _uncommitted[connection] = (written, on_commit)
    return written


def enqueue(deliver: Deliver, message: dict[str, Any], using: str | None) -> None:
    """Publish ``message`` durably: write its outbox row on database ``using`` (in the open
    transaction, or committed at once) and, once it is committed, move it into the log
    (:func:`deliver_committed`, with the other rows of its transaction)."""
    row = (store.write(message, using), message["topic"])
    alias = using or DEFAULT_DB_ALIAS
    if transaction.get_connection(alias).in_atomic_block:
        _written_on_commit(deliver, alias).append(row)
    else:
        deliver_committed(deliver, [row], alias)


def stop_relays(timeout: float = 10.0) -> None:
    """Stop this process's relays and wait for them (tests, orderly shutdown)."""
    with _relays_lock:
        running = list(_relays.values())
        _relays.clear()
    for relay, _thread in running:
        relay.stop()
    deadline = time.monotonic() + timeout
    for _relay, thread in running:
        thread.join(max(0.0, deadline - time.monotonic()))
