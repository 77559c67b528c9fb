"""The {% realtime_client %} tag captures positions at render time."""

from __future__ import annotations

import json
import uuid

import pytest
from django.contrib.auth import get_user_model
from django.template import Context, Template
from django.test import RequestFactory

import realtime
from realtime import auth


def render(user=None, topics='"public.a" "public.b"') -> dict:
    request = RequestFactory().get("/")
    request.user = user or type("Anon", (), {"is_authenticated": False})()
    html = Template("{% load realtime %}{% realtime_client " + topics + " %}").render(
        Context({"request": request})
    )
    assert html.startswith('<script id="realtime-config" type="application/json">')
    return json.loads(html[html.index(">") + 1 : html.rindex("</script>")])


def test_config_holds_url_topics_and_current_cursors():
    one, two = f"public.{uuid.uuid4().hex[:8]}", f"public.{uuid.uuid4().hex[:8]}"
    realtime.publish(one, "n", 1)
    realtime.publish(one, "n", 2)
    config = render(topics=f'"{one}" "{two}"')
    assert config["url"] == "/realtime/"
    assert config["token"] is None
    assert config["topics"] == [one, two]
    a, b = config["cursors"].split(",")
    assert a.startswith(f"{one}~") and a.endswith("~2")
    assert b.startswith(f"{two}~") and b.endswith("~0")


@pytest.mark.django_db
def test_logged_in_user_gets_a_token():
    user = get_user_model().objects.create_user("ola", password="pw")
    config = render(user)
    assert auth.read_token(config["token"]).user_pk == str(user.pk)


@pytest.mark.django_db
def test_share_key_is_one_per_user_and_does_not_show_the_id():
    ola = get_user_model().objects.create_user("ola", password="pw")
    ben = get_user_model().objects.create_user("ben", password="pw")
    key = render(ola)["share_key"]
    assert key == render(ola)["share_key"]  # every page of one user: one group of tabs
    assert key != render(ben)["share_key"]
    assert str(ola.pk) not in key and len(key) == 20
    assert render()["share_key"] == "anonymous"
