"""System checks: exact ids, messages and hints."""

from __future__ import annotations

import pytest
from django.core.checks import Error, Warning
from django.test import override_settings

from realtime import checks

MEMORY = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
REDIS = {"default": {"BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer"}}


def run() -> list:
    return checks.check_settings()


@override_settings(REALTIME={}, CHANNEL_LAYERS=MEMORY, DEBUG=True)
def test_defaults_pass():
    assert run() == []


@override_settings(REALTIME={"HEARTBEAT": 5}, CHANNEL_LAYERS=MEMORY, DEBUG=True)
def test_unknown_key():
    [error] = run()
    assert error.id == "realtime.E001"
    assert error.msg == "Unknown REALTIME setting 'HEARTBEAT'."
    assert error.hint.startswith("Known keys: ACK_MAX_RETRIES, ACK_TIMEOUT, ")


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"HISTORY_SIZE": "100"}, "REALTIME['HISTORY_SIZE'] must be int, not str."),
        ({"RATE": True}, "REALTIME['RATE'] must be int or float, not bool."),
        ({"ACK_TIMEOUT": -1}, "REALTIME['ACK_TIMEOUT'] must not be negative."),
        ({"REDIS_URL": 6379}, "REALTIME['REDIS_URL'] must be str or NoneType, not int."),
    ],
)
def test_wrong_types(values, message):
    with override_settings(REALTIME=values, CHANNEL_LAYERS=MEMORY, DEBUG=True):
        assert run() == [
            Error(message, hint="See the configuration table in README.md.", id="realtime.E002")
        ]


@override_settings(
    REALTIME={"HEARTBEAT_INTERVAL": 10, "HEARTBEAT_TIMEOUT": 10},
    CHANNEL_LAYERS=MEMORY,
    DEBUG=True,
)
def test_heartbeat_timeout_must_be_below_interval():
    assert [m.id for m in run()] == ["realtime.E003"]


@override_settings(REALTIME={"SEND_LEASE": 0}, CHANNEL_LAYERS=MEMORY, DEBUG=True)
def test_send_lease_must_be_above_zero():
    assert run() == [
        Error(
            "REALTIME['SEND_LEASE'] must be above 0.",
            hint="It is how long a client message's claim outlives a node that died while "
            "running its handler; the default is 5.0 s.",
            id="realtime.E007",
        )
    ]


@override_settings(REALTIME={"SEND_LEASE": "5"}, CHANNEL_LAYERS=MEMORY, DEBUG=True)
def test_send_lease_and_wait_must_be_numbers():
    [error] = run()
    assert (error.id, error.msg) == (
        "realtime.E002",
        "REALTIME['SEND_LEASE'] must be int or float, not str.",
    )


@override_settings(REALTIME={"CHANNEL_LAYER": "fanout"}, CHANNEL_LAYERS=MEMORY, DEBUG=True)
def test_missing_channel_layer_alias():
    [error] = run()
    assert (error.id, error.msg) == ("realtime.E004", "CHANNEL_LAYERS has no alias 'fanout'.")


@override_settings(REALTIME={}, CHANNEL_LAYERS=MEMORY, DEBUG=False)
def test_in_memory_layer_with_debug_off_warns():
    assert run() == [
        Warning(
            "No channel layer, or the in-memory one, with DEBUG off: messages reach only "
            "connections of the process that published them.",
            hint="Use channels_redis.pubsub.RedisPubSubChannelLayer and set "
            "REALTIME['REDIS_URL'] when you run more than one process.",
            id="realtime.W001",
        )
    ]


@override_settings(REALTIME={}, CHANNEL_LAYERS=REDIS, DEBUG=True)
def test_redis_layer_without_redis_log_is_an_error():
    assert [m.id for m in run()] == ["realtime.E005"]


def test_old_daphne_is_an_error(monkeypatch):
    monkeypatch.setattr(checks, "version", lambda name: "4.1.0")
    with override_settings(REALTIME={}, CHANNEL_LAYERS=MEMORY, DEBUG=True):
        [error] = run()
    assert error.id == "realtime.E006"
    assert error.msg == "daphne 4.1.0 is installed; realtime needs 4.2.3 or later."


@override_settings(REALTIME={}, CHANNEL_LAYERS=MEMORY, DEBUG=True, ASGI_APPLICATION=None)
def test_missing_asgi_application_warns():
    [warning] = run()
    assert (warning.id, warning.msg) == ("realtime.W002", "ASGI_APPLICATION is not set.")


def test_checks_are_registered_with_django():
    from django.core.checks import run_checks

    with override_settings(REALTIME={"NOPE": 1}, CHANNEL_LAYERS=MEMORY, DEBUG=True):
        assert "realtime.E001" in [m.id for m in run_checks()]


urlpatterns: list = []  # a URLconf without realtime.urls, for the W004 test


@override_settings(
    REALTIME={"REDIS_URL": "http://user:secret@cache:6379/0"},
    CHANNEL_LAYERS=REDIS,
    DEBUG=True,
)
def test_redis_url_must_be_a_redis_url_and_the_message_hides_the_password():
    assert run() == [
        Error(
            "REALTIME['REDIS_URL'] 'http://user:***@cache:6379/0' is not a Redis URL.",
            hint="Use redis://host:port/db, rediss://host:port/db (TLS) or "
            "unix:///path/to/redis.sock.",
            id="realtime.E008",
        )
    ]


@override_settings(
    REALTIME={"CONSUMER": "shop.nowhere.Consumer"}, CHANNEL_LAYERS=MEMORY, DEBUG=True
)
def test_consumer_that_does_not_import():
    [error] = run()
    assert error.id == "realtime.E009"
    assert error.msg.startswith("REALTIME['CONSUMER'] 'shop.nowhere.Consumer' cannot be imported: ")
    assert error.hint == (
        "Give the dotted path of your RealtimeConsumer subclass, e.g. "
        "'shop.consumers.ShopConsumer'."
    )


@override_settings(REALTIME={"CONSUMER": "realtime.conf.Config"}, CHANNEL_LAYERS=MEMORY, DEBUG=True)
def test_consumer_that_is_not_a_realtime_consumer():
    assert run() == [
        Error(
            "REALTIME['CONSUMER'] 'realtime.conf.Config' is not a subclass of "
            "realtime.RealtimeConsumer.",
            hint="Every transport runs its hooks: subclass realtime.RealtimeConsumer.",
            id="realtime.E009",
        )
    ]


def test_urls_included_pass():
    assert checks.check_urls() == []


@override_settings(ROOT_URLCONF=__name__)
def test_urls_not_included():
    assert checks.check_urls() == [
        Warning(
            "realtime.urls is not included in the URLconf: the SSE, long-poll, POST and token "
            "views answer 404, and {% realtime_client %} fails to render.",
            hint='Add path("realtime/", include("realtime.urls")) to your urlpatterns.',
            id="realtime.W004",
        )
    ]


@override_settings(REALTIME={})
def test_deploy_defaults_pass():
    assert checks.check_deploy() == []


@override_settings(REALTIME={"ALLOWED_ORIGINS": ["*"], "METRICS": True})
def test_deploy_any_origin_and_metrics_without_token():
    assert checks.check_deploy() == [
        Warning(
            "REALTIME['ALLOWED_ORIGINS'] contains '*': any web site may open realtime "
            "connections with its visitors' session cookies.",
            hint="List your sites' origins, or set None to derive them from ALLOWED_HOSTS.",
            id="realtime.W005",
        ),
        Warning(
            "REALTIME['METRICS'] is on without REALTIME['METRICS_TOKEN']: only logged-in "
            "staff can read the metrics, so a Prometheus server cannot scrape them.",
            hint="Set METRICS_TOKEN and give the scraper 'Authorization: Bearer <token>'.",
            id="realtime.W006",
        ),
    ]


def test_deploy_redis_that_does_not_answer():
    from tests.conftest import free_port

    url = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    with override_settings(REALTIME={"REDIS_URL": url}):
        [warning] = checks.check_deploy()
    assert warning.id == "realtime.W007"
    assert warning.msg.startswith(f"Redis at {url!r} does not answer: ConnectionError: ")
    assert warning.hint == (
        "Start Redis, or correct REALTIME['REDIS_URL']: publish() and every connection need it."
    )


def test_deploy_redis_that_answers(redis_url):
    with override_settings(REALTIME={"REDIS_URL": redis_url}):
        assert checks.check_deploy() == []
