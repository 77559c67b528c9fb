// The order page's live updates: a minimal client of the realtime protocol v1
// (docs/protocol.md), with no dependencies. The full JS client is realtime's own
// static/realtime/realtime.js; this file is just enough for one topic on one page.
//
// What it does:
// - opens a WebSocket to /realtime/ws/ (the session cookie authenticates it);
// - subscribes to the order's topic from a cursor {epoch, offset}: the one rendered into the
//   page, else the last one seen in this tab (sessionStorage), so nothing published while the
//   page loaded or the network was down is lost;
// - on `message`: updates the status and appends to the log; acknowledges when asked; drops
//   duplicates (a retried message keeps its id) but acknowledges them again;
// - on `reset` (the server cannot replay the gap): re-reads the order from the page's URL;
// - answers `ping`, and treats silence longer than interval + timeout as a dead connection;
// - reconnects with full-jitter exponential backoff, 0.5 s to 20 s.

const BACKOFF_BASE_MS = 500;
const BACKOFF_MAX_MS = 20_000;
const SEEN_IDS_MAX = 500;
const SUBPROTOCOL = "realtime.v1";
const WS_PATH = "/realtime/ws/";
// Close codes after which reconnecting cannot help (docs/protocol.md, "Close codes").
const FINAL_CLOSE_CODES = new Map([
  [1000, "Connection closed"],
  [4400, "Protocol error"],
  [4401, "Not authorized"],
  [4403, "Disconnected by the server"],
]);

const config = JSON.parse(document.getElementById("order-live").textContent);
const topic = config.topic;
const storageKey = `realtime.cursor.${topic}`;

const ui = {
  conn: document.querySelector("[data-conn]"),
  connText: document.querySelector("[data-conn-text]"),
  log: document.querySelector("[data-log]"),
  logEmpty: document.querySelector("[data-log-empty]"),
  state: () => document.querySelector("[data-order-state]"),
};

// ---- cursor: the last position seen on the topic -------------------------------------------

function loadCursor() {
  try {
    const cursor = JSON.parse(sessionStorage.getItem(storageKey));
    if (cursor && typeof cursor.epoch === "string" && Number.isInteger(cursor.offset)) {
      return cursor;
    }
  } catch {
    // Storage disabled or garbage in it: start without a cursor.
  }
  return null;
}

function saveCursor(cursor) {
  try {
    sessionStorage.setItem(storageKey, JSON.stringify(cursor));
  } catch {
    // Storage disabled or full: the cursor still lives in memory for this page.
  }
}

let cursor = config.cursor ?? loadCursor();

/** Move the cursor forward; a new epoch always wins, an older offset never does. */
function advance(epoch, offset) {
  if (typeof epoch !== "string" || !Number.isInteger(offset)) return;
  if (!cursor || cursor.epoch !== epoch || offset > cursor.offset) {
    cursor = { epoch, offset };
    saveCursor(cursor);
  }
}

/** Whether a message at (epoch, offset) is already reflected by the cursor. */
function isBehindCursor(epoch, offset) {
  return cursor !== null && cursor.epoch === epoch && offset <= cursor.offset;
}

// ---- duplicates ------------------------------------------------------------------------------

const seenIds = new Set();

function markSeen(id) {
  seenIds.add(id);
  if (seenIds.size > SEEN_IDS_MAX) {
    seenIds.delete(seenIds.values().next().value); // a Set iterates in insertion order
  }
}

// ---- page updates -----------------------------------------------------------------------------

const timeFormat = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "medium" });
const clockFormat = new Intl.DateTimeFormat(undefined, { timeStyle: "medium" });

function formatTimes(root) {
  for (const el of root.querySelectorAll("time[datetime]")) {
    const when = new Date(el.dateTime);
    if (!Number.isNaN(when.getTime())) el.textContent = timeFormat.format(when);
  }
}

let lastStatus = null; // the data of the last status message applied

function applyStatus(data, { flash = true } = {}) {
  const state = ui.state();
  const badge = state.querySelector("[data-status-badge]");
  badge.className = `badge badge--${data.status}`;
  badge.textContent = data.label ?? data.status;
  if (flash) {
    void badge.offsetWidth; // restart the animation when two updates come close together
    badge.classList.add("badge--flash");
  }

  const updated = state.querySelector("[data-updated-at]");
  if (updated && data.updated_at) {
    updated.dateTime = data.updated_at;
    formatTimes(updated.parentElement);
  }

  const progress = state.querySelector("[data-progress]");
  if (progress) {
    const steps = [...progress.querySelectorAll("[data-step]")];
    const reached = steps.findIndex((li) => li.dataset.step === data.status);
    progress.classList.toggle("progress--cancelled", data.status === "cancelled");
    steps.forEach((li, i) => {
      li.classList.toggle("progress__step--done", reached >= 0 && i <= reached);
    });
  }
  lastStatus = data;
}

function addLog(text, { note = false, at = new Date() } = {}) {
  ui.logEmpty?.remove();
  const item = document.createElement("li");
  const time = document.createElement("span");
  time.className = "log__time";
  time.textContent = clockFormat.format(Number.isNaN(at.getTime()) ? new Date() : at);
  const body = document.createElement("span");
  body.textContent = text;
  if (note) body.className = "log__note";
  item.append(time, body);
  ui.log.prepend(item);
}

function setIndicator(state, text) {
  ui.conn.dataset.state = state;
  ui.connText.textContent = text;
}

/** After a `reset`: read the order again from the server, the source of truth. */
async function reloadState() {
  try {
    const response = await fetch(location.href, {
      credentials: "same-origin",
      headers: { Accept: "text/html" },
    });
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    const html = new DOMParser().parseFromString(await response.text(), "text/html");
    const fresh = html.querySelector("[data-order-state]");
    if (!fresh) throw new Error("no order state in the page");
    const current = ui.state();
    current.replaceWith(fresh);
    formatTimes(fresh);
    // A message applied while the request was in flight may be newer than the page we got.
    const freshTime = fresh.querySelector("[data-updated-at]")?.dateTime;
    if (lastStatus && freshTime && new Date(lastStatus.updated_at) > new Date(freshTime)) {
      applyStatus(lastStatus, { flash: false });
    }
  } catch (error) {
    console.warn("realtime demo: could not reload the order, reloading the page", error);
    location.reload();
  }
}

// ---- the connection ---------------------------------------------------------------------------

let socket = null;
let attempt = 0; // reconnect attempts since the last good subscription
let reconnectTimer = null;
let silenceTimer = null;
let silenceLimitMs = null; // heartbeat interval + timeout, from `welcome`
let everSubscribed = false;
let outageNoted = false; // one log line per outage, not one per failed attempt

function send(frame) {
  if (socket?.readyState === WebSocket.OPEN) socket.send(JSON.stringify(frame));
}

function watchSilence() {
  clearTimeout(silenceTimer);
  if (silenceLimitMs === null) return;
  silenceTimer = setTimeout(() => {
    // Nothing heard for interval + timeout: the link is dead even if the socket looks open.
    drop("No heartbeat from the server");
  }, silenceLimitMs);
}

function connect() {
  clearTimeout(reconnectTimer);
  reconnectTimer = null;
  setIndicator(attempt === 0 ? "connecting" : "reconnecting", "Connecting…");
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const ws = new WebSocket(`${scheme}://${location.host}${WS_PATH}`, [SUBPROTOCOL]);
  socket = ws;
  ws.onmessage = (event) => {
    if (ws !== socket) return;
    let frame;
    try {
      frame = JSON.parse(event.data);
    } catch {
      console.warn("realtime demo: ignoring a frame that is not JSON", event.data);
      return;
    }
    watchSilence();
    handle(frame);
  };
  ws.onclose = (event) => {
    if (ws !== socket) return; // a socket we already gave up on
    socket = null;
    clearTimeout(silenceTimer);
    const final = FINAL_CLOSE_CODES.get(event.code);
    if (final) {
      setIndicator("offline", `${final} — reload to retry`);
      addLog(`${final} (code ${event.code}${event.reason ? `: ${event.reason}` : ""}).`, {
        note: true,
      });
      return;
    }
    scheduleReconnect(`Connection lost (code ${event.code})`);
  };
}

/** Give up on the current socket at once and reconnect (used when it has gone silent). */
function drop(why) {
  const ws = socket;
  socket = null;
  clearTimeout(silenceTimer);
  if (ws) {
    ws.onmessage = ws.onclose = null;
    ws.close();
  }
  scheduleReconnect(why);
}

function scheduleReconnect(why) {
  if (reconnectTimer !== null) return;
  // Full jitter: anywhere between 0 and the capped exponential step, so that many clients
  // cut off at once by a restart do not all come back at the same moment.
  const ceiling = Math.min(BACKOFF_MAX_MS, BACKOFF_BASE_MS * 2 ** attempt);
  const delayMs = Math.max(BACKOFF_BASE_MS, Math.random() * ceiling);
  attempt += 1;
  const seconds = (delayMs / 1000).toFixed(1);
  setIndicator("reconnecting", `Reconnecting in ${seconds} s`);
  if (everSubscribed && !outageNoted) {
    addLog(`${why}; reconnecting…`, { note: true });
    outageNoted = true;
  }
  reconnectTimer = setTimeout(connect, delayMs);
}

function handle(frame) {
  switch (frame.type) {
    case "welcome":
      silenceLimitMs = frame.heartbeat_interval_ms + frame.heartbeat_timeout_ms;
      watchSilence();
      // Without a cursor the subscription starts live; `cursor: null` is left out.
      send(cursor ? { type: "subscribe", topic, cursor } : { type: "subscribe", topic });
      break;
    case "subscribed":
      if (frame.topic !== topic) break;
      if (everSubscribed) {
        const how = frame.recovered ? "resuming where this page left off" : "live from now";
        addLog(`Reconnected; ${how}.`, { note: true });
      }
      everSubscribed = true;
      outageNoted = false;
      attempt = 0;
      // When the cursor was honoured, the replayed messages move it forward themselves (they
      // may still be on their way); otherwise the live stream starts after this position.
      if (!frame.recovered) advance(frame.epoch, frame.offset);
      setIndicator("live", "Live");
      break;
    case "reset":
      if (frame.topic !== topic) break;
      // Replaying the gap is impossible: take the new position and re-read the order.
      cursor = { epoch: frame.epoch, offset: frame.offset };
      saveCursor(cursor);
      addLog("Some updates could not be replayed; the order was re-read.", { note: true });
      reloadState();
      break;
    case "message":
      onMessage(frame);
      break;
    case "ping":
      send({ type: "pong" });
      break;
    case "error":
      console.warn("realtime demo: server error frame", frame);
      if (frame.ref === topic && frame.code === "forbidden") {
        setIndicator("offline", "Not allowed to follow this order");
      }
      break;
    default:
      // Unknown types and fields are ignored: later minor versions may add some.
      break;
  }
}

function onMessage(frame) {
  if (frame.topic !== topic) return;
  // Acknowledge even a duplicate: its retry means the server missed our first ack.
  if (frame.ack) send({ type: "ack", ids: [frame.id] });
  if (seenIds.has(frame.id) || isBehindCursor(frame.epoch, frame.offset)) return;
  markSeen(frame.id);
  advance(frame.epoch, frame.offset);
  if (frame.event === "status") {
    applyStatus(frame.data);
    // Stamped with the change's own time: a replayed update may be minutes old.
    addLog(`Status changed to ${frame.data.label ?? frame.data.status}.`, {
      at: new Date(frame.data.updated_at),
    });
  }
}

addEventListener("online", () => {
  if (socket === null) connect();
});

formatTimes(document);
connect();
