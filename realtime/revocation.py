"""Revocation: when a user logs out, is deactivated or changes password, their live
connections are closed on every node (close code 4403). Tokens issued before a password change
or deactivation are refused already (realtime.auth); this closes what is already open."""

from __future__ import annotations

import logging
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.signals import user_logged_out
from django.db import transaction
from django.db.models.signals import post_save, pre_save

logger = logging.getLogger("realtime.revocation")


def _revoke(user_id: Any, reason: str) -> None:
    from realtime.control import disconnect_user

    try:
        disconnect_user(user_id, reason)
    except Exception:  # revocation must never break a logout or a save
        logger.exception("Disconnecting user %s failed", user_id)


def on_logout(sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
    if user is not None and user.pk is not None:
        _revoke(user.pk, "logged out")


def remember_credentials(sender: Any, instance: Any, **kwargs: Any) -> None:
    if instance.pk is None:
        return
    old = sender._default_manager.filter(pk=instance.pk).values("password", "is_active").first()
    instance._realtime_credentials = old


def on_user_saved(sender: Any, instance: Any, created: bool, **kwargs: Any) -> None:
    old = getattr(instance, "_realtime_credentials", None)
    if created or old is None:
        return
    if old["password"] != instance.password:
        reason = "password changed"
    elif old["is_active"] and not instance.is_active:
        reason = "deactivated"
    else:
        return
    user_id = instance.pk
    transaction.on_commit(lambda: _revoke(user_id, reason))


def connect() -> None:
    """Connect the handlers (called from the app's ``ready()``)."""
    user_model = get_user_model()
    user_logged_out.connect(on_logout, dispatch_uid="realtime.revocation.logout")
    pre_save.connect(remember_credentials, sender=user_model, dispatch_uid="realtime.rev.pre")
    post_save.connect(on_user_saved, sender=user_model, dispatch_uid="realtime.rev.post")
