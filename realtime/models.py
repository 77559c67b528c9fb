"""The app's models: two tables, and one unmanaged model that carries the admin console's
permissions.

:class:`TokenCutoff` holds, per user who was ever deactivated, the time before which that
user's tokens are refused (realtime.auth), so that reactivating a user does not revive the
tokens issued before the deactivation, on any node and across restarts.

:class:`LiveConnection` exists so that the console has an entry under "Realtime" on the admin
index and two dedicated permissions to grant: ``realtime.view_connections`` (see the console)
and ``realtime.manage_connections`` (disconnect connections, send them a test message). The
connections themselves live in the registry (:mod:`realtime.registry`), never in the
database.

:class:`OutboxMessage` is a message published durably (``publish(..., durable=True)``): a row
written in the publisher's transaction, moved into the topic log by a relay
(:mod:`realtime.outbox`)."""

from __future__ import annotations

from django.conf import settings
from django.db import models


class TokenCutoff(models.Model):
    """Tokens of ``user`` issued before ``not_before`` (Unix time, seconds) are refused.
    Written by realtime.revocation when the user is deactivated; deleted with the user."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        primary_key=True,
        related_name="realtime_token_cutoff",
    )
    not_before = models.FloatField()

    class Meta:
        default_permissions = ()
        verbose_name = "token cutoff"
        verbose_name_plural = "token cutoffs"

    def __str__(self) -> str:
        return f"tokens of user {self.pk} issued before {self.not_before}"


class LiveConnection(models.Model):
    """The admin console's handle; it has no table and no rows."""

    class Meta:
        managed = False
        default_permissions = ()
        permissions = [
            ("view_connections", "Can view live connections"),
            ("manage_connections", "Can disconnect and message live connections"),
        ]
        verbose_name = "live connection"
        verbose_name_plural = "live connections"

    def __str__(self) -> str:
        return f"live connection {self.pk}"


class OutboxMessage(models.Model):
    """A durably published message waiting for a relay (``delivered`` is ``None``), or one
    delivered and kept for ``OUTBOX_RETENTION`` seconds. A relay claims a row by setting
    ``claimed_by`` and ``claimed_until`` (Unix time); another relay takes it over only once
    that lease has passed."""

    topic = models.CharField(max_length=200)
    message_id = models.CharField(max_length=64)
    event = models.CharField(max_length=64)
    data = models.TextField()  # the payload, already encoded as JSON
    ack = models.BooleanField(default=False)
    created = models.FloatField()
    claimed_by = models.CharField(max_length=32, blank=True, default="")
    claimed_until = models.FloatField(null=True, blank=True)
    delivered = models.FloatField(null=True, blank=True)

    class Meta:
        default_permissions = ()
        verbose_name = "outbox message"
        verbose_name_plural = "outbox messages"
        indexes = [
            # The sweep reads the oldest pending rows, and the rows of a topic ahead of a
            # claimed one: both only among pending rows, however many delivered rows are kept.
            models.Index(
                fields=["id"], condition=models.Q(delivered=None), name="realtime_outbox_pending"
            ),
            models.Index(
                fields=["topic", "id"],
                condition=models.Q(delivered=None),
                name="realtime_outbox_topic",
            ),
            models.Index(fields=["delivered"], name="realtime_outbox_delivered"),
        ]

    def __str__(self) -> str:
        return f"outbox message {self.message_id} on {self.topic}"
