import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")

from realtime.asgi import get_asgi_application

application = get_asgi_application("tests.testapp.consumers.EchoConsumer")

# a consumer whose methods are named as a transport's (tests/test_e2e.py)
own_names_application = get_asgi_application("tests.testapp.consumers.OwnNamesConsumer")

if os.environ.get("RT_HEALTH_REMINDER"):
    # a shorter "still down" reminder than production's 30 s, so that an outage of a few
    # reminders takes less of the suite (tests/test_redis_failures.py)
    from realtime import health

    health.REMINDER = float(os.environ["RT_HEALTH_REMINDER"])
