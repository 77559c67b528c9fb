import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")

from realtime.asgi import get_asgi_application

application = get_asgi_application("tests.testapp.consumers.EchoConsumer")

# a consumer whose methods are named as a transport's (tests/test_e2e.py)
own_names_application = get_asgi_application("tests.testapp.consumers.OwnNamesConsumer")
