"""A model as a user's app would have one, for realtime.publish_model() tests."""

from __future__ import annotations

from django.conf import settings
from django.db import models


class Parcel(models.Model):
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, null=True)
    status = models.CharField(max_length=16, default="new")
    note = models.TextField(blank=True)
    weight = models.DecimalField(max_digits=6, decimal_places=2, default=0)
    label = models.FileField(blank=True)
    updated_at = models.DateTimeField(auto_now=True)
    tags = models.ManyToManyField("auth.Group", blank=True)

    def __str__(self) -> str:
        return f"Parcel {self.pk} ({self.status})"
