"""The hub works over both channels_redis layers (the pub/sub layer is the recommended one)."""

from __future__ import annotations

import pytest
from django.test import override_settings

import realtime
from realtime.testing import RealtimeCommunicator
from tests.asgi import application

pytestmark = pytest.mark.django_db(transaction=True)


async def test_core_redis_layer_delivers_in_order(use_redis):
    layers = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [use_redis["url"]], "prefix": use_redis["prefix"]},
        }
    }
    from channels.layers import channel_layers

    with override_settings(CHANNEL_LAYERS=layers):
        channel_layers.backends.clear()
        from realtime import hubs

        hubs.reset_hubs()
        client = RealtimeCommunicator(application)
        assert (await client.connect())[0]
        await client.receive_frame()
        await client.subscribe("public.core")
        ids = [await realtime.apublish("public.core", "n", n) for n in range(5)]
        received = [await client.receive_frame() for _ in range(5)]
        assert [m["id"] for m in received] == ids
        await client.disconnect()
        await channel_layers["default"].close_pools()
        channel_layers.backends.clear()
