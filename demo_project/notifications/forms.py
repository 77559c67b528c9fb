"""The staff page's form."""

from __future__ import annotations

from django import forms
from django.contrib.auth import get_user_model


class NotifyForm(forms.Form):
    user = forms.ModelChoiceField(
        queryset=get_user_model().objects.filter(is_active=True).order_by("username"),
        to_field_name="username",
    )
    title = forms.CharField(max_length=120)
    body = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 3}))
