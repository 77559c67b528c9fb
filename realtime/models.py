"""No tables: one unmanaged model that carries the admin console's permissions.

:class:`LiveConnection` exists so that the console has an entry under "Realtime" on the admin
index and two dedicated permissions to grant: ``realtime.view_connections`` (see the console)
and ``realtime.manage_connections`` (disconnect connections, send them a test message). The
connections themselves live in the registry (:mod:`realtime.registry`), never in the
database."""

from __future__ import annotations

from django.db import models


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
