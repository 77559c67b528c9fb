"""The transports, each driving the same :class:`~realtime.connection.Connection` with the
consumer's hooks (:mod:`.base`), so auth, topics, cursors, ACKs and limits are shared:
WebSocket (:mod:`.websocket`), and the HTTP fallbacks (:mod:`.http`) SSE (:mod:`.sse`) and
long-poll (:mod:`.longpoll`), with client frames by POST (:mod:`.post`)."""
