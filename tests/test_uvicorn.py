"""uvicorn as the ASGI server: the end-to-end WebSocket, SSE, long-poll and POST tests of
tests/test_e2e.py and tests/test_http_transports.py (and the batch-frame tests of
tests/test_conformance.py) run again here, the same functions, with
this module's ``nodes``: two uvicorn processes started with docs/deployment.md's uvicorn
command (tests/test_nginx.py checks it) in place of daphne. And the slow-consumer close
(4503), which uvicorn's blocking ``send`` provokes (daphne's never blocks:
docs/security.md)."""

from __future__ import annotations

import asyncio
import json
import socket
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import websockets
from asgiref.sync import sync_to_async

import realtime
from tests import test_conformance as conformance
from tests import test_e2e as e2e
from tests import test_http_transports as http
from tests.servers import Uvicorn, running_nodes

pytestmark = pytest.mark.e2e

# The WebSocket tests (test_e2e.py)
test_wrong_origin_gets_http_403 = e2e.test_wrong_origin_gets_http_403
test_token_in_subprotocol_over_a_real_socket = e2e.test_token_in_subprotocol_over_a_real_socket
test_oversized_frame_is_closed_4009 = e2e.test_oversized_frame_is_closed_4009_by_a_real_daphne
test_published_once_received_on_both_nodes = e2e.test_published_once_received_on_both_nodes
test_resume_on_the_other_node_gets_exactly_the_missed_messages = (
    e2e.test_resume_on_the_other_node_gets_exactly_the_missed_messages
)
test_unacked_message_is_sent_again_and_stops_after_ack = (
    e2e.test_unacked_message_is_sent_again_and_stops_after_ack
)
test_retried_client_send_runs_once_across_nodes = (
    e2e.test_retried_client_send_runs_once_across_nodes
)
test_many_clients_on_two_nodes_receive_everything_once_in_order = (
    e2e.test_many_clients_on_two_nodes_receive_everything_once_in_order
)
# SSE, long-poll and POST (test_http_transports.py)
test_sse_stream_headers_welcome_and_live_message = (
    http.test_sse_stream_headers_welcome_and_live_message
)
test_sse_keepalive_comments_flow_while_idle = http.test_sse_keepalive_comments_flow_while_idle
test_sse_resume_with_last_event_id_on_the_other_node = (
    http.test_sse_resume_with_last_event_id_on_the_other_node
)
test_sse_ack_posted_to_another_node_stops_redelivery = (
    http.test_sse_ack_posted_to_another_node_stops_redelivery
)
test_sse_disconnect_is_detected_and_the_node_leaves_the_topic = (
    http.test_sse_disconnect_is_detected_and_the_node_leaves_the_topic
)
test_poll_waits_for_the_first_message = http.test_poll_waits_for_the_first_message
test_consecutive_polls_on_alternating_nodes_lose_nothing = (
    http.test_consecutive_polls_on_alternating_nodes_lose_nothing
)
test_post_send_runs_the_handler_once_on_any_node = (
    http.test_post_send_runs_the_handler_once_on_any_node
)
# Batch frames (test_conformance.py), whose send may wait for a congested socket here
test_a_batching_client_gets_a_burst_as_batch_frames_with_acks_unchanged = (
    conformance.test_a_batching_client_gets_a_burst_as_batch_frames_with_acks_unchanged
)
test_batch_frames_keep_to_max_frames_and_max_bytes = (
    conformance.test_batch_frames_keep_to_max_frames_and_max_bytes
)
test_a_client_that_did_not_offer_realtime_batch_never_gets_a_batch_frame = (
    conformance.test_a_client_that_did_not_offer_realtime_batch_never_gets_a_batch_frame
)


@pytest.fixture(scope="module")
def node_settings() -> dict[str, str]:
    """What the two modules' nodes run with."""
    return {
        "RT_ACK_TIMEOUT": "0.3",
        "RT_AUTH_TIMEOUT": "2",
        "RT_POLL_TIMEOUT": "1.0",
        "RT_SSE_KEEPALIVE": "0.5",
    }


@pytest.fixture(scope="module")
def nodes(database: tuple[str, dict[str, Any]], node_env: dict[str, str]) -> Iterator[list[Any]]:
    """Two uvicorn nodes sharing one Redis."""
    with running_nodes(database[0], node_env, node=Uvicorn) as servers:
        yield servers


@pytest.fixture
def node(nodes: list[Any]) -> Any:
    """The conformance tests' one node: the first uvicorn node."""
    return nodes[0]


async def test_a_client_that_stops_reading_is_closed_4503(database, node_env, use_redis):
    # Large messages to a client that reads none: the kernel's socket buffers fill, uvicorn's
    # send blocks, OUTBOUND_QUEUE_SIZE frames wait behind it, and the node closes with 4503.
    # The client's receive buffer is fixed at 64 kB (else Linux grows it up to tcp_rmem's
    # maximum); 300 messages of 60 kB (18 MB) are more than the server's send buffer holds.
    node = Uvicorn(database[0], {**node_env, "RT_OUTBOUND_QUEUE_SIZE": "10"})
    name = f"public.slow-{uuid.uuid4().hex[:8]}"
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    sock.connect(("127.0.0.1", node.port))
    try:
        async with websockets.connect(
            node.url,
            sock=sock,
            origin=node.origin,
            subprotocols=["realtime.v1"],  # type: ignore[list-item]
            max_queue=1,  # the client stops reading from its socket
            compression=None,  # or the 60 kB of "x" shrink to nothing
        ) as ws:
            assert json.loads(await ws.recv())["type"] == "welcome"
            await ws.send(json.dumps({"type": "subscribe", "topic": name}))
            assert json.loads(await ws.recv())["type"] == "subscribed"
            for _ in range(300):
                await sync_to_async(realtime.publish)(name, "big", "x" * 60000)
            received = 0
            with pytest.raises(websockets.ConnectionClosed) as ended:
                while True:  # the close frame comes after every frame sent before it
                    await asyncio.wait_for(ws.recv(), 10)
                    received += 1
        assert ended.value.rcvd is not None, received
        assert ended.value.rcvd.code == 4503, received
        assert received < 300
    finally:
        node.stop()
