"""The token view."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model

from realtime import auth


@pytest.mark.django_db
def test_token_view_gives_a_logged_in_user_a_working_token(client):
    user = get_user_model().objects.create_user("nia", password="pw")
    client.force_login(user)
    response = client.get("/realtime/token/")
    assert response.status_code == 200
    assert response["Cache-Control"].startswith("max-age=0")
    body = response.json()
    assert body["expires_in_ms"] == 900_000
    assert auth.read_token(body["token"]).user_pk == str(user.pk)


@pytest.mark.django_db
def test_token_view_refuses_anonymous_users(client):
    response = client.get("/realtime/token/")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "auth_required"


@pytest.mark.django_db
def test_token_view_is_get_only(client):
    assert client.post("/realtime/token/").status_code == 405
