from django.apps import AppConfig


class TestAppConfig(AppConfig):
    name = "tests.testapp"
    label = "testapp"

    def ready(self) -> None:
        from realtime.signals import message_undelivered
        from tests.testapp import consumers

        message_undelivered.connect(consumers.record_undelivered)
