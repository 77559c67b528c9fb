"""System checks: exact ids, messages and hints."""

from __future__ import annotations

from typing import Any

import pytest
from channels.auth import AuthMiddlewareStack
from channels.generic.websocket import AsyncWebsocketConsumer
from channels.routing import ProtocolTypeRouter, URLRouter
from channels.security.websocket import OriginValidator
from django.conf import settings
from django.contrib.staticfiles import views as staticfiles_views
from django.core.checks import Error, Warning
from django.core.handlers.asgi import ASGIHandler
from django.test import override_settings
from django.urls import include, path, re_path
from django.views.static import serve as static_serve

from realtime import RealtimeConsumer, asgi_structure, checks
from realtime.asgi import RelayStarter, get_asgi_application

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
            hint="Use redis://host:port/db, rediss://host:port/db (TLS), "
            "unix:///path/to/redis.sock, redis+sentinel://host1:port1,host2:port2/"
            "<service_name>/<db> (Sentinel) or redis+cluster://host1:port1,host2:port2/ "
            "(Cluster).",
            id="realtime.E008",
        )
    ]


@override_settings(
    REALTIME={"REDIS_URL": "redis+sentinel://app:secret@10.0.0.1:26379,10.0.0.2:26379"},
    CHANNEL_LAYERS=REDIS,
    DEBUG=True,
)
def test_a_sentinel_url_must_name_the_service():
    assert run() == [
        Error(
            "REALTIME['REDIS_URL'] 'redis+sentinel://app:***@10.0.0.1:26379,10.0.0.2:26379' is "
            "not a valid Sentinel URL: it names no service: add /<service_name>/<db> after the "
            "sentinels.",
            hint="Use redis+sentinel://[user:password@]host1:port1,host2:port2/"
            "<service_name>/<db> (rediss+sentinel:// for TLS to the master; "
            "docs/scaling.md, 'Redis Sentinel').",
            id="realtime.E011",
        )
    ]


@override_settings(
    REALTIME={"REDIS_URL": "redis+sentinel://10.0.0.1:26379/orders/0"},
    CHANNEL_LAYERS=REDIS,
    DEBUG=True,
)
def test_a_well_formed_sentinel_url_passes():
    assert run() == []


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


def deployable(**realtime: Any) -> override_settings:
    """Settings ``check --deploy`` has nothing to say about, but ``realtime``: a Redis channel
    layer (the Redis log is E005's business) and a STATIC_ROOT."""
    return override_settings(REALTIME=realtime, CHANNEL_LAYERS=REDIS, STATIC_ROOT="/srv/static")


@deployable()
def test_deploy_defaults_pass():
    assert checks.check_deploy() == []


@deployable(ALLOWED_ORIGINS=["*"], METRICS=True)
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
    with deployable(REDIS_URL=url):
        [warning] = checks.check_deploy()
    assert warning.id == "realtime.W007"
    assert warning.msg.startswith(f"Redis at {url!r} does not answer: ConnectionError: ")
    assert warning.hint == (
        "Start Redis, or correct REALTIME['REDIS_URL']: publish() and every connection need it."
    )


def test_deploy_sentinels_that_do_not_answer():
    from tests.conftest import free_port

    url = f"redis+sentinel://127.0.0.1:{free_port()}/orders/0"  # no sentinel there
    with deployable(REDIS_URL=url):
        [warning] = checks.check_deploy()
    assert warning.id == "realtime.W007"
    assert "MasterNotFoundError: No master found for 'orders'" in warning.msg


def test_deploy_redis_that_answers(redis_url):
    with deployable(REDIS_URL=redis_url):
        assert checks.check_deploy() == []


IN_MEMORY_WARNING = Warning(
    "realtime keeps its topic logs and channel layer in one process's memory: a publish() "
    "from a management command, a Celery worker or another server process reaches no "
    "connection of this one.",
    hint="Set REALTIME['REDIS_URL'] and a Redis channel layer in every process (README, "
    "'Adding it to your project', step 1).",
    id="realtime.W009",
)


@pytest.mark.parametrize("layers", [MEMORY, {}], ids=["in-memory layer", "no layer"])
@pytest.mark.parametrize("debug", [True, False])
def test_deploy_everything_in_one_process_memory(layers, debug):
    with deployable(), override_settings(CHANNEL_LAYERS=layers, DEBUG=debug):
        assert checks.check_deploy() == [IN_MEMORY_WARNING]


def test_deploy_in_memory_layer_with_a_redis_log_is_w001s(redis_url):
    with deployable(REDIS_URL=redis_url), override_settings(CHANNEL_LAYERS=MEMORY):
        assert checks.check_deploy() == []


# URLconfs: realtime.urls, and static files served by the view of staticfiles_urlpatterns(),
# which serves only with DEBUG on (it is what that function adds when DEBUG is on), or by a
# view of the project's own; realtime.urls under another prefix.
class URLconf:
    def __init__(self, *urlpatterns: Any) -> None:
        self.urlpatterns = list(urlpatterns)


REALTIME_URLS = path("realtime/", include("realtime.urls"))
DEBUG_STATIC = URLconf(REALTIME_URLS, re_path(r"^static/(?P<path>.*)$", staticfiles_views.serve))
OWN_STATIC = URLconf(
    REALTIME_URLS,
    re_path(r"^static/(?P<path>.*)$", static_serve, {"document_root": "/srv/static"}),
)
ELSEWHERE = URLconf(path("live/", include("realtime.urls")))

STATIC_WARNING = Warning(
    "Nothing serves static files such as the JS client (/static/realtime/realtime.js) outside "
    "development: under daphne, pages using it get a 404 and no live updates.",
    hint="Run collectstatic into STATIC_ROOT and let your web server serve it, or add "
    "WhiteNoise's middleware (docs/deployment.md).",
    id="realtime.W010",
)
WHITENOISE = "whitenoise.middleware.WhiteNoiseMiddleware"


@pytest.mark.parametrize("debug", [True, False])
def test_deploy_static_files_served_by_runserver_only(debug):
    with deployable(), override_settings(STATIC_ROOT=None, DEBUG=debug):
        assert checks.check_deploy() == [STATIC_WARNING]


@override_settings(ROOT_URLCONF=DEBUG_STATIC)
def test_deploy_static_files_served_by_staticfiles_urlpatterns_only():
    with deployable(), override_settings(STATIC_ROOT=None, DEBUG=False):
        assert checks.check_deploy() == [STATIC_WARNING]


@pytest.mark.parametrize(
    "served",
    [
        {"STATIC_ROOT": "/srv/static"},
        {"STATIC_ROOT": None, "MIDDLEWARE": [WHITENOISE, *settings.MIDDLEWARE]},
        {"STATIC_ROOT": None, "STATIC_URL": "https://cdn.example.com/static/"},
        {"STATIC_ROOT": None, "ROOT_URLCONF": OWN_STATIC},
    ],
    ids=["STATIC_ROOT", "WhiteNoise", "another host", "a view of the project's own"],
)
def test_deploy_static_files_served(served):
    with deployable(), override_settings(DEBUG=False, **served):
        assert checks.check_deploy() == []


# ASGI applications for ASGI_APPLICATION: Django's handler alone, a router without
# WebSocket, a realtime consumer at another path, another consumer at realtime's path, and
# the realtime consumer behind nested routers and an OriginValidator (at realtime/ws/ and at
# live/ws/); a callable of the project's own, which the check cannot follow.
django_only = ASGIHandler()
http_only = ProtocolTypeRouter({"http": django_only})
wrong_path = ProtocolTypeRouter(
    {"websocket": AuthMiddlewareStack(URLRouter([path("ws/", RealtimeConsumer.as_asgi())]))}
)
another_consumer = ProtocolTypeRouter(
    {"websocket": URLRouter([path("realtime/ws/", AsyncWebsocketConsumer.as_asgi())])}
)


def _nested(prefix: str) -> ProtocolTypeRouter:
    inner = URLRouter([path("ws/", RealtimeConsumer.as_asgi())])
    return ProtocolTypeRouter(
        {"websocket": OriginValidator(URLRouter([path(prefix, inner)]), ["*"])}
    )


nested = _nested("realtime/")
nested_elsewhere = _nested("live/")


async def opaque(scope: Any, receive: Any, send: Any) -> None:
    raise NotImplementedError


def test_asgi_application_of_the_tests_routes_to_realtime():
    assert checks.check_asgi() == []


@override_settings(ASGI_APPLICATION="tests.nowhere.application")
def test_asgi_application_that_does_not_import():
    assert checks.check_asgi() == [
        Error(
            "ASGI_APPLICATION 'tests.nowhere.application' cannot be imported: "
            "ModuleNotFoundError: No module named 'tests.nowhere'",
            hint="Point it at the application in your project's asgi.py, made by "
            "realtime.asgi.get_asgi_application().",
            id="realtime.E010",
        )
    ]


@override_settings(ASGI_APPLICATION="tests.asgi.nothing")
def test_asgi_application_module_without_the_application():
    [error] = checks.check_asgi()
    assert (error.id, error.msg) == (
        "realtime.E010",
        "ASGI_APPLICATION 'tests.asgi.nothing' cannot be imported: ImportError: Module "
        '"tests.asgi" does not define a "nothing" attribute/class',
    )


@pytest.mark.parametrize(
    "name", ["django_only", "http_only", "wrong_path", "another_consumer", "nested_elsewhere"]
)
def test_asgi_application_that_does_not_route_to_realtime(name):
    with override_settings(ASGI_APPLICATION=f"tests.test_checks.{name}"):
        assert checks.check_asgi() == [
            Warning(
                f"ASGI_APPLICATION 'tests.test_checks.{name}' does not route WebSocket "
                "connections for /realtime/ws/ to a RealtimeConsumer: browsers fall back to "
                "SSE or long-poll.",
                hint="Make it with realtime.asgi.get_asgi_application(), or route "
                'path("realtime/ws/", YourConsumer.as_asgi()) in its "websocket" URLRouter.',
                id="realtime.W008",
            )
        ]


@pytest.mark.parametrize("name", ["nested", "opaque"])
def test_asgi_application_that_routes_or_cannot_be_followed(name):
    with override_settings(ASGI_APPLICATION=f"tests.test_checks.{name}"):
        assert checks.check_asgi() == []


@override_settings(ROOT_URLCONF=ELSEWHERE)
def test_asgi_check_follows_where_realtime_urls_are_included():
    with override_settings(ASGI_APPLICATION="tests.test_checks.nested_elsewhere"):
        assert checks.check_asgi() == []
    with override_settings(ASGI_APPLICATION="tests.asgi.application"):
        [warning] = checks.check_asgi()
    assert warning.msg.startswith(
        "ASGI_APPLICATION 'tests.asgi.application' does not route WebSocket connections for "
        "/live/ws/ to a RealtimeConsumer"
    )


# With DURABLE on: the realtime router as get_asgi_application() builds it (its relay
# starter around it), behind a middleware of the project's own, and inside a router.
relayed = RelayStarter(nested)
relayed_in_middleware = AuthMiddlewareStack(RelayStarter(nested))
relayed_in_router = ProtocolTypeRouter({"http": django_only, "websocket": RelayStarter(nested)})

NO_RELAY_WITH_REDIS = Warning(
    "REALTIME['DURABLE'] is on but ASGI_APPLICATION 'tests.test_checks.nested' starts no outbox "
    "relay in the server processes: messages a publisher left in the outbox (it stopped "
    "before its relay ran, or Redis was down) wait there until a process that publishes "
    "durably runs.",
    hint="Make it with realtime.asgi.get_asgi_application() (your own middleware may wrap it), "
    "or run manage.py realtime_relay beside the servers and silence this check.",
    id="realtime.W011",
)
NO_RELAY_WITHOUT_REDIS = Warning(
    "REALTIME['DURABLE'] is on but ASGI_APPLICATION 'tests.test_checks.nested' starts no outbox "
    "relay in the server processes: without REDIS_URL, durable messages of a shell or a "
    "worker wait in the outbox until a server process publishes durably itself.",
    hint="Make it with realtime.asgi.get_asgi_application() (your own middleware may wrap it): "
    "without Redis only a server process can relay.",
    id="realtime.W011",
)


@pytest.mark.parametrize(
    ("realtime", "warning"),
    [
        ({"DURABLE": True, "REDIS_URL": "redis://127.0.0.1:6379/0"}, NO_RELAY_WITH_REDIS),
        ({"DURABLE": True}, NO_RELAY_WITHOUT_REDIS),
    ],
    ids=["redis", "no redis"],
)
def test_durable_publishing_without_a_relay_in_the_servers(realtime, warning):
    with override_settings(REALTIME=realtime, ASGI_APPLICATION="tests.test_checks.nested"):
        assert checks.check_asgi() == [warning]


@pytest.mark.parametrize(
    ("name", "durable"),
    [
        ("nested", False),
        ("relayed", True),
        ("relayed_in_middleware", True),
        ("relayed_in_router", True),
        ("opaque", True),
    ],
)
def test_durable_publishing_with_a_relay_in_the_servers_or_off(name, durable):
    with override_settings(
        REALTIME={"DURABLE": durable}, ASGI_APPLICATION=f"tests.test_checks.{name}"
    ):
        assert checks.check_asgi() == []


def test_the_application_get_asgi_application_builds_with_durable_on_starts_a_relay():
    with override_settings(REALTIME={"DURABLE": True}):
        application = get_asgi_application()
        assert asgi_structure.starts_relay(application) is True
    assert asgi_structure.starts_relay(get_asgi_application()) is False  # DURABLE off: no relay


@override_settings(REALTIME={"BROKER": "redis"}, CHANNEL_LAYERS=MEMORY, DEBUG=True)
def test_the_redis_broker_needs_a_redis_url():
    assert run() == [
        Error(
            "REALTIME['BROKER'] is 'redis' but REALTIME['REDIS_URL'] is not set.",
            hint="Set REALTIME['REDIS_URL'], or leave BROKER at 'layer'.",
            id="realtime.E012",
        )
    ]


@override_settings(
    REALTIME={"REDIS_URL": "redis+cluster://10.0.0.1:7000/", "BROKER": "redis"},
    CHANNEL_LAYERS=MEMORY,
    DEBUG=False,
)
def test_the_redis_broker_on_a_cluster_needs_no_channel_layer():
    assert [m.id for m in run()] == []


@override_settings(REALTIME={"BROKER": "kafka"}, CHANNEL_LAYERS=MEMORY, DEBUG=True)
def test_the_broker_is_layer_or_redis():
    assert run() == [
        Error(
            "REALTIME['BROKER']: 'kafka' is not one of 'layer', 'redis'.",
            hint="See the configuration table in README.md.",
            id="realtime.E002",
        )
    ]
