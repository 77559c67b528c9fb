"""The consumer a Channels tutorial leads to: join a group on connect, forward group messages."""

from __future__ import annotations

from typing import Any

from channels.generic.websocket import AsyncWebsocketConsumer

from bench._common import TOPIC

#: Sent once the socket is in the group, so the client knows it will see every message.
READY_FRAME = '{"type":"ready"}'


class BroadcastConsumer(AsyncWebsocketConsumer):
    """One group membership per socket; every ``bench.message`` is sent on as a text frame."""

    async def connect(self) -> None:
        """Called on the WebSocket handshake: join the group, accept, say ready."""
        await self.channel_layer.group_add(TOPIC, self.channel_name)
        await self.accept()
        await self.send(text_data=READY_FRAME)

    async def disconnect(self, code: int) -> None:
        """Called when the socket closes: leave the group."""
        await self.channel_layer.group_discard(TOPIC, self.channel_name)

    async def bench_message(self, event: dict[str, Any]) -> None:
        """Called for each group message of type ``bench.message``: forward its text."""
        await self.send(text_data=event["text"])
