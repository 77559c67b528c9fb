"""The cluster-wide registry of live connections (see :mod:`realtime.registry.base`);
:func:`realtime.backends.get_registry` chooses the implementation, and
:mod:`realtime.node` keeps a hub's record in it."""

from __future__ import annotations

from realtime.registry.base import Entry, Page, Query, Registry

__all__ = ["Entry", "Page", "Query", "Registry"]
