"""The browser tests' ASGI application: tests.asgi (with tests.browser.settings) behind a
switchboard of network faults, set by the tests over HTTP.

``POST /_test/faults`` with a JSON object of :class:`Faults` fields sets them (fields left out
are reset to off); ``POST /_test/drop`` cuts every live realtime connection from the server
side (WebSocket closed with 3000, SSE stream ended, pending long-poll answered 502, as a
restarting proxy would; daphne lets a server send only 1000 or 3000-4999, and 1000 means "do
not reconnect"); ``POST /_test/disconnect`` disconnects every open realtime connection as an
operator does (4403; on SSE a final ``close`` event); ``POST /_test/notice`` with
``{"text": …}`` sends every registered realtime connection an operator's ``notice`` through
``realtime.control``, and with ``"poll": true`` adds it to the next long-poll answer that carries
frames (polls are not registered, so no server can address one: this is how the tests give a
long-polling client the frame); ``GET /_test/stats`` reports what went over the wire. Faults:

- ``block_ws``: WebSocket handshakes refused (HTTP 403), like a proxy without WebSocket;
- ``silent_ws``: handshakes accepted, then nothing, ever (a proxy that buffers);
- ``mute_ws``: the server's first frame on a WebSocket (``welcome``) passes, nothing after it,
  not even its close: the socket stays up until the client closes it (half-open). A socket
  already open when it is switched on hears nothing more from then on;
- ``block_sse``: ``realtime/sse/`` answers 502; ``silent_sse``: it never answers;
- ``hold``: every new realtime connection is refused (WS 403, HTTP 503): the server is away;
- ``duplicate``: every ``message`` frame is delivered twice (WS, SSE, long-poll);
- ``lose_ack``: the server runs the next client ``send``, but its answer is lost (WebSocket:
  the ``ack`` frame is swallowed and the connection cut; POST: a 502 instead of the answer).
  Once: the fault switches itself off.
- ``cut_after_ack``: the connection that carries the next ``message`` with ``"ack": true`` is
  cut right after it, before the client's ``ack`` can come (WebSocket closed with 3000, SSE
  stream ended); a long-poll answer ends by itself, so there the ``ack`` POST that follows it
  is lost instead (502, the app never sees it). Once, like ``lose_ack``.
- ``in_progress``: the next client ``send`` does not reach the app and is answered
  ``in_progress``, as a node answers while another attempt with the id runs its handler
  (WebSocket: that ``ack`` frame; POST: 409 with ``Retry-After``). Once, like ``lose_ack``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
from collections import Counter
from typing import Any
from urllib.parse import parse_qs

os.environ["DJANGO_SETTINGS_MODULE"] = "tests.browser.settings"

from realtime.exceptions import InProgress
from tests.asgi import application as inner

DROP_CODE = 3000  # not a protocol close code: the client just reconnects
Scope = dict[str, Any]
Message = dict[str, Any]


@dataclasses.dataclass
class Faults:
    block_ws: bool = False
    silent_ws: bool = False
    mute_ws: bool = False
    block_sse: bool = False
    silent_sse: bool = False
    hold: bool = False
    duplicate: bool = False
    lose_ack: bool = False
    cut_after_ack: bool = False
    in_progress: bool = False
    batch: bool = False  # let the client's offer of realtime.batch through (no other fault)


faults = Faults()
links: set[Link] = set()
poll_notices: list[str] = []  # `notice` texts for the next long-poll answer with frames
lose_next_ack_post: list[str] = []  # cut_after_ack on long-poll: lose the ack POST of these
stats: dict[str, Any] = {}


def reset_stats() -> None:
    poll_notices.clear()
    lose_next_ack_post.clear()
    stats.update(
        ws_attempts=0,  # WebSocket handshakes, refused and silent ones included
        ws_opened=0,
        sse_opened=0,
        polls=[],  # the cursor parameter of every long-poll
        streams=[],  # the cursor parameter of every SSE request
        client_frames=[],  # WebSocket frames and POST bodies from clients, decoded
        post_headers=[],  # the X-Realtime-Connection header of each POST
        delivered=Counter(),  # message id -> times sent to a client
        answers=[],  # every answer (`ack` frame) to a client `send`, lost ones included
        rate_limited=0,  # HTTP 429 answers (streams, polls, POSTs)
        batches=0,  # `batch` frames sent to WebSocket clients (with the `batch` switch)
    )


reset_stats()


class Link:
    """One live realtime connection through the wrapper, which a test can cut."""

    def __init__(self, receive: Any, send: Any, kind: str) -> None:
        self.kind = kind
        self._receive = receive
        self._send = send
        self._injected: asyncio.Queue[Message] = asyncio.Queue()
        self._pending: asyncio.Future[Message] | None = None
        self.started = False  # HTTP: the response has started
        self.dropped = False

    async def receive(self) -> Message:
        """The client's next message, or one injected by :meth:`drop`."""
        if self._pending is None:
            self._pending = asyncio.ensure_future(self._receive())
        injected = asyncio.ensure_future(self._injected.get())
        done, _ = await asyncio.wait({self._pending, injected}, return_when=asyncio.FIRST_COMPLETED)
        if injected in done:
            return injected.result()
        injected.cancel()
        message = self._pending.result()
        self._pending = None
        return message

    async def send(self, message: Message) -> None:
        if self.dropped:
            return  # the app goes on for a moment; the client is gone
        if message["type"] == "http.response.start":
            self.started = True
        await self._send(message)

    async def drop(self) -> None:
        if self.dropped:
            return
        if self.kind == "websocket":
            await self._send({"type": "websocket.close", "code": DROP_CODE})
            self.dropped = True
            await self._injected.put({"type": "websocket.disconnect", "code": DROP_CODE})
            return
        if self.started:
            await self._send({"type": "http.response.body", "body": b"", "more_body": False})
        else:
            await self._send(
                {"type": "http.response.start", "status": 502, "headers": []},
            )
            await self._send({"type": "http.response.body", "body": b"proxy: upstream gone"})
        self.dropped = True
        await self._injected.put({"type": "http.disconnect"})

    def close(self) -> None:
        if self._pending is not None and not self._pending.done():
            self._pending.cancel()


async def application(scope: Scope, receive: Any, send: Any) -> None:
    path = scope.get("path", "")
    if scope["type"] == "http" and path.startswith("/_test/") and path[7:] in CONTROL:
        await CONTROL[path[7:]](scope, receive, send)
    elif scope["type"] == "websocket" and path.startswith("/realtime/"):
        await websocket(scope, receive, send)
    elif scope["type"] == "http" and path in ("/realtime/sse/", "/realtime/poll/"):
        await stream(scope, receive, send)
    elif scope["type"] == "http" and path == "/realtime/send/":
        await post(scope, receive, send)
    else:
        await inner(scope, receive, send)


# ---- WebSocket --------------------------------------------------------------------------------


async def websocket(scope: Scope, receive: Any, send: Any) -> None:
    stats["ws_attempts"] += 1
    if faults.block_ws or faults.hold:
        await receive()  # websocket.connect
        await send({"type": "websocket.close"})  # before accept: HTTP 403
        return
    if faults.silent_ws:
        await receive()
        accept: Message = {"type": "websocket.accept"}
        if "realtime.v1" in scope.get("subprotocols", ()):
            accept["subprotocol"] = "realtime.v1"
        await send(accept)
        while (await receive())["type"] != "websocket.disconnect":
            pass
        return
    link = Link(receive, send, "websocket")
    stats["ws_opened"] += 1
    sent_frames = 0
    muted = False
    duplicate = faults.duplicate

    async def receive_frames() -> Message:
        while True:
            message = await link.receive()
            text = message.get("text") if message["type"] == "websocket.receive" else None
            if not text:
                return message
            with contextlib.suppress(ValueError):
                stats["client_frames"].append(json.loads(text))
            if not (faults.in_progress and text.startswith('{"type":"send"')):
                return message
            faults.in_progress = False
            answer = in_progress_answer(json.loads(text)["id"])
            await link.send({"type": "websocket.send", "text": json.dumps(answer)})

    async def send_frames(message: Message) -> None:
        nonlocal sent_frames, muted
        if message["type"] == "websocket.send":
            sent_frames += 1
        if message["type"] in ("websocket.send", "websocket.close") and sent_frames > 1:
            muted = muted or faults.mute_ws
            if muted:
                return
            text = message.get("text") or ""
            if text.startswith('{"type":"ack"'):
                stats["answers"].append(json.loads(text))
                if faults.lose_ack:
                    faults.lose_ack = False
                    await link.drop()
                    return
            stats["batches"] += text.startswith('{"type":"batch"')
            if text.startswith('{"type":"message"'):
                stats["delivered"][json.loads(text)["id"]] += 1
                if duplicate:
                    await link.send(message)
                if faults.cut_after_ack and json.loads(text)["ack"]:
                    faults.cut_after_ack = False
                    await link.send(message)
                    await link.drop()
                    return
        await link.send(message)

    # The faults above act on single frames: the app sends no `batch` frames through here
    # (the client's offer of realtime.batch is withheld; it then gets plain frames only),
    # unless a test asks for them.
    offered = [p for p in scope.get("subprotocols", ()) if p != "realtime.batch" or faults.batch]
    links.add(link)
    try:
        await inner({**scope, "subprotocols": offered}, receive_frames, send_frames)
        while muted and (await link.receive())["type"] != "websocket.disconnect":
            pass  # half-open: the server is done, the client does not know
    finally:
        links.discard(link)
        link.close()


# ---- SSE and long-poll ------------------------------------------------------------------------


async def stream(scope: Scope, receive: Any, send: Any) -> None:
    sse = scope["path"] == "/realtime/sse/"
    if faults.hold or (sse and faults.block_sse):
        await respond(send, 503 if faults.hold else 502, b"unavailable")
        return
    if sse and faults.silent_sse:
        while (await receive())["type"] != "http.disconnect":
            pass
        return
    cursor = parse_qs(scope.get("query_string", b"").decode()).get("cursor", [""])[0]
    stats["streams" if sse else "polls"].append(cursor)
    if sse:
        stats["sse_opened"] += 1
    link = Link(receive, send, "sse" if sse else "longpoll")
    duplicate = faults.duplicate
    held: list[Message] = []  # a long-poll's response start, held until its body is known

    async def send_events(message: Message) -> None:
        count_refusal(message)
        if message["type"] == "http.response.start" and not sse:
            held.append(message)
            return
        if message["type"] != "http.response.body":
            await link.send(message)
            return
        body = message.get("body", b"")
        if sse:
            # a chunk may hold several events (the server sends a burst as one chunk)
            messages = [
                event
                for event in body.split(b"\n\n")
                if event.startswith(b"event: message\n") or b"\nevent: message\n" in event
            ]
            acked = False
            for event in messages:
                frame = json.loads(event.split(b"data: ", 1)[1])
                stats["delivered"][frame["id"]] += 1
                acked = acked or frame["ack"]
            if messages and duplicate:
                await link.send({**message, "more_body": True})
            await link.send(message)
            if acked and faults.cut_after_ack:
                faults.cut_after_ack = False
                await link.drop()
            return
        start = held.pop(0) if held else None
        if body.startswith(b'{"frames"'):
            answer = json.loads(body)
            frames = [{"type": "notice", "text": text} for text in poll_notices]
            poll_notices.clear()
            for frame in answer["frames"]:
                frames.append(frame)
                if frame["type"] == "message":
                    stats["delivered"][frame["id"]] += 1
                    if duplicate:
                        frames.append(frame)
                    if frame["ack"] and faults.cut_after_ack:
                        faults.cut_after_ack = False
                        lose_next_ack_post.append(frame["id"])
            if duplicate or frames != answer["frames"]:
                body = json.dumps({**answer, "frames": frames}).encode()
        if start is not None:
            headers = [(k, v) for k, v in start["headers"] if k.lower() != b"content-length"]
            headers.append((b"content-length", str(len(body)).encode()))
            await link.send({**start, "headers": headers})
        await link.send({**message, "body": body})

    links.add(link)
    try:
        await inner(scope, link.receive, send_events)
    finally:
        links.discard(link)
        link.close()


async def post(scope: Scope, receive: Any, send: Any) -> None:
    if faults.hold:
        await respond(send, 503, b"unavailable")
        return
    body = b""
    messages = []
    while True:
        message = await receive()
        messages.append(message)
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    with contextlib.suppress(ValueError):
        stats["client_frames"].append(json.loads(body))
    headers = dict(scope.get("headers", ()))
    stats["post_headers"].append(headers.get(b"x-realtime-connection", b"").decode() or None)

    async def replay() -> Message:
        if messages:
            return messages.pop(0)
        return await receive()

    if lose_next_ack_post and body.startswith(b'{"type":"ack"'):
        lost = set(json.loads(body)["ids"]) & set(lose_next_ack_post)
        if lost:
            lose_next_ack_post.clear()
            await respond(send, 502, b"proxy: the connection was cut")
            return
    if faults.in_progress and body.startswith(b'{"type":"send"'):
        faults.in_progress = False
        message_id = json.loads(body)["id"]
        error = {**in_progress_answer(message_id)["error"], "ref": message_id}
        await send(
            {
                "type": "http.response.start",
                "status": 409,
                "headers": [(b"content-type", b"application/json"), (b"retry-after", b"1")],
            }
        )
        await send({"type": "http.response.body", "body": json.dumps({"error": error}).encode()})
        return
    lose = faults.lose_ack and stats["client_frames"][-1:] and body.startswith(b'{"type":"send"')
    if lose:
        faults.lose_ack = False

    async def answer(message: Message) -> None:
        count_refusal(message)
        if message["type"] == "http.response.body" and message.get("body", b"").startswith(
            b'{"type":"ack"'
        ):
            stats["answers"].append(json.loads(message["body"]))
        if not lose:
            await send(message)

    await inner(scope, replay, answer)
    if lose:
        await respond(send, 502, b"proxy: the answer was lost")


def count_refusal(message: Message) -> None:
    """Count an HTTP answer 429 (rate limited) in the stats."""
    if message["type"] == "http.response.start" and message["status"] == 429:
        stats["rate_limited"] += 1


def in_progress_answer(message_id: str) -> dict[str, Any]:
    """The server's ``in_progress`` answer (docs/protocol.md) to a ``send``."""
    error = InProgress()
    return {
        "type": "ack",
        "id": message_id,
        "error": {"code": error.code, "reason": error.reason},
    }


async def respond(send: Any, status: int, body: bytes, content_type: bytes = b"text/plain") -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", content_type)],
        }
    )
    await send({"type": "http.response.body", "body": body})


# ---- control endpoints ------------------------------------------------------------------------


async def read_body(receive: Any) -> bytes:
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            return body


async def set_faults(scope: Scope, receive: Any, send: Any) -> None:
    values = json.loads(await read_body(receive) or b"{}")
    if values.pop("reset_stats", False):
        reset_stats()
    unknown = set(values) - {f.name for f in dataclasses.fields(Faults)}
    if unknown:
        await respond(send, 400, f"unknown faults: {sorted(unknown)}".encode())
        return
    for field in dataclasses.fields(Faults):
        setattr(faults, field.name, bool(values.get(field.name, False)))
    await respond(send, 204, b"")


async def drop(scope: Scope, receive: Any, send: Any) -> None:
    await read_body(receive)
    cut = list(links)
    for link in cut:
        await link.drop()
    kinds = Counter(link.kind for link in cut)
    await respond(send, 200, json.dumps(kinds).encode(), b"application/json")


async def get_stats(scope: Scope, receive: Any, send: Any) -> None:
    await read_body(receive)
    body = json.dumps({**stats, "live": sorted(link.kind for link in links)}).encode()
    await respond(send, 200, body, b"application/json")


async def disconnect(scope: Scope, receive: Any, send: Any) -> None:
    from realtime.hub import get_hub

    await read_body(receive)
    connections = list(get_hub().connections.values())
    for connection in connections:
        connection.on_control({"op": "disconnect", "reason": "by the test"})
    await respond(send, 200, json.dumps(len(connections)).encode(), b"application/json")


async def notice(scope: Scope, receive: Any, send: Any) -> None:
    from realtime import control
    from realtime.hub import get_hub

    values = json.loads(await read_body(receive))
    if values.get("poll"):
        poll_notices.append(values["text"])
    hub = get_hub()
    await hub.registry_written()  # so that realtime.control finds every open connection
    found = await control.anotify(list(hub.connections), values["text"])
    await respond(send, 200, json.dumps(found).encode(), b"application/json")


CONTROL = {
    "faults": set_faults,
    "drop": drop,
    "stats": get_stats,
    "disconnect": disconnect,
    "notice": notice,
}
