"""Revocation: when a user logs out, is deactivated or changes password, their live
connections are closed on every node (close code 4403). Tokens issued before a password change
are refused by realtime.auth (they carry a fragment of the password's hash); for a
deactivation this module records the time in :class:`realtime.models.TokenCutoff`, so the
tokens issued before it stay refused after a reactivation. Every revocation also empties the
user's entry in the token cache of every server process (:mod:`realtime.user_cache`). Only
changes made through ``save()`` are seen: ``QuerySet.update()`` sends no signal (the cache
then forgets the user within ``TOKEN_CACHE_TTL``)."""

from __future__ import annotations

import logging
import time
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.signals import user_logged_out
from django.db import transaction
from django.db.models.signals import post_save, pre_save

from realtime.control import disconnect_user, forget_user
from realtime.models import TokenCutoff

logger = logging.getLogger("realtime.revocation")


def _revoke(user_id: Any, reason: str) -> None:
    try:
        # before the disconnect: a client that reconnects at once is checked afresh
        forget_user(user_id)
    except Exception:  # revocation must never break a logout or a save
        logger.exception("Forgetting the cached user %s failed", user_id)
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


def _cut_off_tokens(user_id: Any, *, at_commit: bool = False) -> None:
    if at_commit:
        # Tokens issued while the deactivation was not yet committed are refused too.
        try:
            TokenCutoff.objects.filter(user_id=user_id).update(not_before=time.time())
        except Exception:  # the cutoff written with the save stands
            logger.exception("Moving the token cutoff of user %s failed", user_id)
        return
    TokenCutoff.objects.update_or_create(user_id=user_id, defaults={"not_before": time.time()})


def on_user_saved(sender: Any, instance: Any, created: bool, **kwargs: Any) -> None:
    old = getattr(instance, "_realtime_credentials", None)
    if created or old is None:
        return
    deactivated = old["is_active"] and not instance.is_active
    if old["password"] != instance.password:
        reason = "password changed"
    elif deactivated:
        reason = "deactivated"
    else:
        return
    user_id = instance.pk
    if deactivated:
        # In the save's transaction: a rolled-back deactivation revokes nothing, and one that
        # commits cannot lose its cutoff. Errors propagate: a deactivation that cannot be
        # recorded must not look done (run `migrate` after upgrading).
        _cut_off_tokens(user_id)

    def after_commit() -> None:
        if deactivated:
            _cut_off_tokens(user_id, at_commit=True)
        _revoke(user_id, reason)

    transaction.on_commit(after_commit)


def connect() -> None:
    """Connect the handlers (called from the app's ``ready()``)."""
    user_model = get_user_model()
    user_logged_out.connect(on_logout, dispatch_uid="realtime.revocation.logout")
    pre_save.connect(remember_credentials, sender=user_model, dispatch_uid="realtime.rev.pre")
    post_save.connect(on_user_saved, sender=user_model, dispatch_uid="realtime.rev.post")
