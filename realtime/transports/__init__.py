"""The HTTP fallback transports: SSE (:mod:`.sse`) and long-poll (:mod:`.longpoll`), with
client frames by POST (:mod:`.post`). They drive the same :class:`~realtime.connection.Connection`
as the WebSocket consumer, so auth, topics, cursors, ACKs and limits are shared."""
