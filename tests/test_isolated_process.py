"""No silent no-ops: without Redis, a process that serves no connection (a shell, a worker, a
management command) cannot reach the server's connections or its topic log. publish() says so
once; the operator commands refuse with a CommandError that says what to set."""

from __future__ import annotations

import logging

import pytest
from asgiref.sync import sync_to_async
from django.core.management import CommandError, call_command

import realtime
from realtime import publishing
from realtime.testing import RealtimeCommunicator
from tests.asgi import application


@pytest.fixture
def unreported():
    publishing.forget_isolation_warning()


def isolation_warnings(caplog) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "realtime.publishing" and "serves no realtime connection" in r.getMessage()
    ]


def test_publish_without_redis_from_a_process_without_connections_warns_once(unreported, caplog):
    caplog.set_level(logging.WARNING, logger="realtime.publishing")
    realtime.publish("public.shell", "n", 1)
    realtime.publish("public.shell", "n", 2)
    [warning] = isolation_warnings(caplog)
    assert "REALTIME['REDIS_URL']" in warning and "RedisPubSubChannelLayer" in warning


@pytest.mark.django_db(transaction=True)
async def test_publish_in_a_process_that_serves_connections_does_not_warn(unreported, caplog):
    client = RealtimeCommunicator(application)
    assert (await client.connect())[0]
    assert (await client.receive_frame(5))["type"] == "welcome"
    caplog.set_level(logging.WARNING, logger="realtime.publishing")
    await realtime.apublish("public.server", "n", 1)
    assert isolation_warnings(caplog) == []
    await client.disconnect()


@pytest.mark.parametrize(
    "command",
    [
        ("realtime_publish", "public.cron", "tick"),
        ("realtime_status",),
        ("realtime_status", "--json"),
        ("realtime_disconnect", "--user", "alice"),
    ],
)
def test_operator_commands_without_redis_refuse_with_what_to_set(command):
    with pytest.raises(CommandError) as refused:
        call_command(*command)
    message = str(refused.value)
    assert message.startswith(f"{command[0]} needs REALTIME['REDIS_URL']")
    assert "cannot reach" in message


@pytest.mark.django_db(transaction=True)
async def test_operator_commands_run_in_a_process_that_serves_connections():
    client = RealtimeCommunicator(application)
    assert (await client.connect())[0]
    assert (await client.receive_frame(5))["type"] == "welcome"
    await sync_to_async(call_command)("realtime_status", "--json")
    await client.disconnect()
