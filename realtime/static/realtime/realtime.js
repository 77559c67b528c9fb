// @ts-check
/**
 * The browser client of django-realtime-push: one dependency-free ES module, no build step.
 *
 * ```js
 * import { Realtime } from "/static/realtime/realtime.js";
 *
 * const client = Realtime.fromPage();             // reads {% realtime_client "order.42" %}
 * const off = client.subscribe("order.42", (event) => {
 *   if (event.type === "message") render(event.data);
 *   if (event.type === "reset") reloadFromServer();  // the gap could not be replayed
 * });
 * client.on("state", (state) => indicator.textContent = state);
 * const result = await client.send("chat.post", { text: "hi" });
 * ```
 *
 * It speaks protocol version 1 (docs/protocol.md) over WebSocket, SSE (fetch streaming) or
 * long-poll, falls back from one to the next when a transport is blocked or silent, resumes
 * every topic from its cursor after any break, acknowledges `ack: true` messages, drops
 * duplicates, and queues client messages while offline. Options and their defaults: see
 * {@link DEFAULTS} and docs/client.md.
 *
 * @module realtime
 */

// ---- constants: all in one place, frozen ------------------------------------------------------

/** Connection states reported by `client.on("state", …)` and `client.state`. */
export const State = Object.freeze({
  /** Trying to connect, never open yet. */
  CONNECTING: "connecting",
  /** A transport is connected and authenticated; subscriptions are live. */
  OPEN: "open",
  /** Was open; the connection broke and the client is trying again. */
  RECONNECTING: "reconnecting",
  /** Closed by `close()`, or by the server for good (e.g. 4403); `connect()` starts again. */
  CLOSED: "closed",
});

/** Transport names, for the `transports` option and `client.on("transport", …)`. */
export const Transport = Object.freeze({
  WEBSOCKET: "websocket",
  SSE: "sse",
  LONGPOLL: "longpoll",
});

/**
 * The options' defaults. Every option of `new Realtime(options)` is listed here.
 * @type {Readonly<Required<RealtimeOptions>>}
 */
export const DEFAULTS = Object.freeze({
  /** Base URL of the realtime endpoints: `ws/`, `sse/`, `poll/`, `send/` are appended. */
  url: "/realtime/",
  /** A token from `realtime.make_token()`; null: same-site pages use the session cookie. */
  token: null,
  /** GET returns `{"token", "expires_in_ms"}`; fetched before connecting and when a token
   * expires. null: none (with `token` alone, an expired token cannot be renewed). */
  tokenUrl: null,
  /** Transports to try, best first. */
  transports: Object.freeze([Transport.WEBSOCKET, Transport.SSE, Transport.LONGPOLL]),
  /** Positions the page's content reflects (`"topic~epoch~offset,…"` or
   * `{topic: {epoch, offset}}`), e.g. captured when the page was rendered. They win over
   * positions stored for those topics. */
  cursors: null,
  /** How long `send()` waits for the server's `ack` (queued offline time included). */
  sendTimeoutMs: 10_000,
  /** How long a transport may take to say `welcome` before the next transport is tried. */
  connectTimeoutMs: 5_000,
  /** Reconnect backoff: full jitter, the ceiling doubling from `backoffMinMs` … */
  backoffMinMs: 500,
  /** … up to `backoffMaxMs`. */
  backoffMaxMs: 20_000,
  /** After falling back to a lower transport, try the better ones again this much later. */
  upgradeAfterMs: 300_000,
  /** A long-poll request that has not answered after this long is abandoned (the server
   * answers within its POLL_TIMEOUT, 25 s by default). */
  pollTimeoutMs: 40_000,
  /** Connect at once (on the next microtask, so that `subscribe()` calls made right after
   * construction go into the first request). false: call `connect()`. */
  autoConnect: true,
  /** Where cursors and the working transport are remembered: `sessionStorage` (per tab). A
   * `Storage`-like object, or null for memory only. */
  storage: "session",
  /** Name of Django's CSRF cookie (`CSRF_COOKIE_NAME`), sent as `X-CSRFToken` on POSTs
   * under cookie authentication. */
  csrfCookieName: "csrftoken",
  /** A CSRF token to use instead of the cookie (e.g. with `CSRF_COOKIE_HTTPONLY`). */
  csrfToken: null,
  /** Log transport decisions with `console.debug`. */
  debug: false,
  /** Share one connection between the tabs of this origin with the same `url`, `transports`
   * and identity (docs/client.md, "One connection per browser"). false: one per tab. */
  share: true,
  /** The identity tabs must have in common to share a connection (`fromPage()` sets it from
   * `{% realtime_client %}`: one per user). null: derived from `token` (cookie auth: one for
   * the origin's session). */
  shareKey: null,
});

/** The wire protocol's fixed names (docs/protocol.md). */
const WIRE = Object.freeze({
  subprotocol: "realtime.v1",
  tokenSubprotocolPrefix: "realtime.token.",
  /** Offered with `subprotocol`: the client unpacks `batch` frames ("Batch frames"). */
  batchSubprotocol: "realtime.batch",
  maxAckIds: 100,
  /** The `ack` error (POST: 409) for a `send` whose id another attempt is still running: not
   * an answer, send it again with the same id. */
  inProgress: "in_progress",
  cursorSeparator: ",",
  cursorFieldSeparator: "~",
  connectionHeader: "X-Realtime-Connection",
  /** Long-poll answers carry `welcome`'s `limits` in this header (there is no `welcome`). */
  limitsHeader: "X-Realtime-Limits",
  csrfHeader: "X-CSRFToken",
  paths: Object.freeze({ websocket: "ws/", sse: "sse/", longpoll: "poll/", send: "send/" }),
});

/** WebSocket close codes the client acts on (docs/protocol.md, "Close codes"). */
const CLOSE = Object.freeze({
  NORMAL: 1000,
  /** The RFC's "service restart": what uvicorn sends when it stops without a drain. */
  RESTART: 1012,
  /** Service restart: the node drains before it stops; reconnect now (elsewhere). */
  SERVICE_RESTART: 4012,
  /** Try again later: the node is over its admission budget; a `close` frame says when. */
  TRY_AGAIN_LATER: 4013,
  PROTOCOL_ERROR: 4400,
  UNAUTHORIZED: 4401,
  DISCONNECTED: 4403,
  TOKEN_EXPIRED: 4419,
});

/** Internal timings; not options because nobody should need to change them. */
const TIMING = Object.freeze({
  /** ACKs are gathered this long, then sent in one frame/POST (at most 100 ids). */
  ackBatchMs: 20,
  /** An unanswered WebSocket `send` is sent again (same id; the server dedups) this often. */
  sendRetryMs: 3_000,
  /** A failed POST of a client message is retried after this long. */
  postRetryMs: 1_000,
  /** A timer that fires this much later than asked was throttled or frozen … */
  lateTimerMs: 1_000,
  /** … so the silence check waits this much more for queued events before giving up. */
  thawGraceMs: 1_500,
  /** After a service restart (4012, 1012) the client reconnects within this long: a little
   * jitter on top of the server's own spreading, never the backoff. */
  restartJitterMs: 1_000,
  /** A busy node (4013) that gave no hint of when to come back: this long, plus jitter. */
  busyHintMs: 1_000,
  /** A connection open at least this long resets the backoff when it breaks. */
  stableMs: 10_000,
  /** A long-poll request held this long without an error counts as connected. */
  longpollOpenMs: 1_000,
  /** A token is renewed this long before it expires. */
  tokenMarginMs: 30_000,
  /** ACKs kept until the server confirms them, at most (the oldest are dropped past it). */
  owedAcks: 1_000,
  /** Message ids remembered to drop duplicates. */
  seenIds: 2_000,
  /** Default client frame limits until `welcome` tells the real ones. */
  rate: 20,
  burst: 60,
});

/**
 * Options of `new Realtime(options)`; every one is optional, with the default in
 * {@link DEFAULTS}.
 * @typedef {object} RealtimeOptions
 * @property {string} [url] Base URL of the endpoints. Default `"/realtime/"`.
 * @property {string|null} [token] Token for non-cookie auth. Default `null`.
 * @property {string|null} [tokenUrl] URL returning `{token, expires_in_ms}`. Default `null`.
 * @property {readonly TransportName[]} [transports] Best first. Default all three.
 * @property {string|Record<string, Cursor>|null} [cursors] Render-time positions. Default `null`.
 * @property {number} [sendTimeoutMs] Default 10 000.
 * @property {number} [connectTimeoutMs] Default 5 000.
 * @property {number} [backoffMinMs] Default 500.
 * @property {number} [backoffMaxMs] Default 20 000.
 * @property {number} [upgradeAfterMs] Default 300 000.
 * @property {number} [pollTimeoutMs] Default 40 000.
 * @property {boolean} [autoConnect] Default `true`.
 * @property {"session"|StorageLike|null} [storage] Default `"session"` (sessionStorage).
 * @property {string} [csrfCookieName] Default `"csrftoken"`.
 * @property {string|null} [csrfToken] Default `null` (read the cookie).
 * @property {boolean} [debug] Default `false`.
 * @property {boolean} [share] Default `true`.
 * @property {string|null} [shareKey] Default `null`.
 */

/** @typedef {"websocket"|"sse"|"longpoll"} TransportName */
/** @typedef {"connecting"|"open"|"reconnecting"|"closed"} StateName */
/** @typedef {{epoch: string, offset: number}} Cursor */
/** @typedef {Pick<Storage, "getItem"|"setItem"|"removeItem">} StorageLike */

/**
 * What a topic handler receives. `type` says which:
 * - `"message"`: a published message (`event`, `data`, `id`, `epoch`, `offset`, `ack`);
 * - `"reset"`: the server could not replay what this page missed (`reason` is
 *   `"epoch_changed"`, `"too_old"` or `"cursor_ahead"`): reload the state from the source
 *   of truth;
 * - `"subscribed"`: the subscription is live (`recovered`: the missed messages were or are
 *   being replayed);
 * - `"error"`: the subscription was refused (`code`, e.g. `"forbidden"`, and `reason`).
 * @typedef {object} TopicEvent
 * @property {"message"|"reset"|"subscribed"|"error"} type
 * @property {string} topic
 * @property {string} [event]
 * @property {*} [data]
 * @property {string} [id]
 * @property {string} [epoch]
 * @property {number} [offset]
 * @property {boolean} [ack]
 * @property {boolean} [recovered]
 * @property {string} [reason]
 * @property {string} [code]
 */

/** @typedef {(event: TopicEvent) => void} TopicHandler */
/**
 * Why a transport is finished (internal).
 * @typedef {object} DownInfo
 * @property {number} [code] close code or HTTP status
 * @property {string} [reason]
 * @property {boolean} [silent] nothing heard in time
 * @property {boolean} [final] reconnecting cannot help
 * @property {boolean} [retry] the cause was dealt with: try the same transport again now
 * @property {boolean} [retryToken] the token was refused: renew it and try again now
 * @property {RealtimeError} [error]
 * @property {{topic: string, code: string, reason: string}} [refused] the server refused
 *   this topic: the client drops it (and the transport asks to `retry` without it)
 * @property {boolean} [badCursor] the server could not parse the cursor: if the client had
 *   positions to forget, it forgets them and tries again now (whatever `final` says)
 * @property {number} [retryAfterMs] the server is busy and said when to try again (a `close`
 *   frame's `retry_after_ms`, an HTTP 503's `Retry-After`)
 */
/**
 * What a transport gets from the client at construction, and all it knows of the client
 * (internal; see {@link BaseTransport}). Values and getters to read, callbacks to report.
 * @typedef {object} TransportHost
 * @property {TransportName} name the transport's name in `TRANSPORT_CLASSES`
 * @property {(path: string) => URL} url an endpoint: `path` resolved against the `url` option
 * @property {(force?: boolean) => Promise<string|null>} token the token to authenticate
 *   with (null: cookie auth); `force`: a fresh one. Rejects with a {@link RealtimeError},
 *   `final` when retrying cannot help
 * @property {() => boolean} canRenewToken whether `token(true)` can bring a new token
 * @property {() => string|null} csrf the CSRF token for POSTs under cookie auth
 * @property {() => Map<string, Cursor|null>} topics the wanted topics, each with its position
 * @property {number} connectTimeoutMs the `connectTimeoutMs` option
 * @property {number} pollTimeoutMs the `pollTimeoutMs` option
 * @property {() => void} opened connected and authenticated (`welcome`)
 * @property {() => void} proven it delivers (a frame after `welcome`, or up a silence limit)
 * @property {(frame: Frame) => void} frame a frame from the server (or an `ack` made up for
 *   a `send` the server answered by HTTP status)
 * @property {(info: DownInfo & {wasOpen: boolean, openFor: number}) => void} down finished,
 *   once; after it, nothing more is reported
 * @property {() => void} accepted an HTTP request was answered 200: the credentials work
 * @property {(cursors: Map<string, Cursor>) => void} handled the frames up to these
 *   positions were handled (long-poll: the answer's cursor)
 * @property {(...args: any[]) => void} debug log with the `debug` option
 * @property {TabLink|null} link the tab group (tab sharing on), for {@link TabTransport}
 * @property {() => void} switched the transport now speaks for another transport (its `name`
 *   changed while open: the leading tab's connection upgraded or fell back)
 */
/** @typedef {Record<string, any>} Frame */

// ---- small helpers ----------------------------------------------------------------------------

/** An error with the protocol's `code` (e.g. `"timeout"`, `"rejected"`) and `reason`. */
export class RealtimeError extends Error {
  /**
   * @param {string} code
   * @param {string} reason
   * @param {object} [detail] extra fields (e.g. `status` of an HTTP error)
   */
  constructor(code, reason, detail = {}) {
    super(`${code}: ${reason}`);
    this.name = "RealtimeError";
    this.code = code;
    this.reason = reason;
    Object.assign(this, detail);
  }
}

/**
 * A one-shot timer on a wall-clock deadline. Background tabs throttle and freeze timers, so
 * the deadline is compared with `Date.now()` when the timer fires (re-armed if early) and
 * whenever the page wakes up (`check()`): a deadline that passed while the tab slept is
 * acted on at once, never trusted to an interval.
 */
class WallTimer {
  /** @param {(lateMs: number) => void} callback receives how late it fired */
  constructor(callback) {
    this._callback = callback;
    /** @type {number|null} */
    this._at = null;
    /** @type {ReturnType<typeof setTimeout>|undefined} */
    this._handle = undefined;
  }

  /** @param {number} at wall-clock time in ms */
  at(at) {
    this.cancel();
    this._at = at;
    this._arm();
  }

  /** @param {number} ms */
  in(ms) {
    this.at(Date.now() + ms);
  }

  get pending() {
    return this._at !== null;
  }

  cancel() {
    clearTimeout(this._handle);
    this._at = null;
  }

  /** Fire now if the deadline has passed (call on wake-up events). */
  check() {
    if (this._at !== null && Date.now() >= this._at) this._fire();
  }

  _arm() {
    const delay = Math.min(Math.max(0, (this._at ?? 0) - Date.now()), 2 ** 31 - 1);
    this._handle = setTimeout(() => {
      if (this._at === null) return;
      if (Date.now() < this._at) this._arm();
      else this._fire();
    }, delay);
  }

  _fire() {
    const late = Date.now() - (this._at ?? Date.now());
    this.cancel();
    this._callback(late);
  }
}

/** Full-jitter exponential backoff: a delay anywhere in [0, ceiling), the ceiling doubling
 * from `minMs` to `maxMs`, so clients cut off together do not come back together. */
class Backoff {
  /** @param {number} minMs @param {number} maxMs */
  constructor(minMs, maxMs) {
    this.minMs = minMs;
    this.maxMs = maxMs;
    this.attempts = 0;
  }

  next() {
    const ceiling = Math.min(this.maxMs, this.minMs * 2 ** Math.min(this.attempts, 30));
    this.attempts += 1;
    return Math.random() * ceiling;
  }

  reset() {
    this.attempts = 0;
  }
}

/**
 * A token bucket that keeps the client under the server's rate limit (`RATE`/`BURST`, told
 * by `welcome.limits` or long-poll's `X-Realtime-Limits` header): `rate` tokens a second up
 * to `burst`, one per frame or request. It runs a little under the server's numbers: the
 * server's clock and ours differ.
 */
class TokenBucket {
  /** @param {{rate?: number, burst?: number}} [limits] the server's; defaults until known */
  constructor(limits = {}) {
    this.rate = TIMING.rate * 0.9;
    this.burst = TIMING.burst - 2;
    this.tokens = 0;
    this._stamp = Date.now();
    this.limit(limits);
    this.tokens = this.burst;
  }

  /** The server's limits: keep under them from now on (a smaller burst drops tokens).
   * @param {{rate?: number, burst?: number}|undefined} limits */
  limit(limits) {
    const rate = Number(limits?.rate);
    const burst = Number(limits?.burst);
    if (rate > 0) this.rate = rate * 0.9;
    if (burst > 0) this.burst = Math.max(1, burst - 2);
    this._refill();
  }

  _refill() {
    const now = Date.now();
    this.tokens = Math.min(this.burst, this.tokens + ((now - this._stamp) / 1000) * this.rate);
    this._stamp = now;
  }

  /** Spend a token; false (nothing spent) when there is none. */
  take() {
    this._refill();
    if (this.tokens < 1) return false;
    this.tokens -= 1;
    return true;
  }

  /** The server said its bucket is empty (HTTP 429: another tab of the user spent it, say):
   * so is ours. */
  empty() {
    this._refill();
    this.tokens = 0;
  }

  /** How long until `take()` can succeed, in ms. */
  waitMs() {
    this._refill();
    return this.tokens >= 1 ? 0 : ((1 - this.tokens) / this.rate) * 1000;
  }

  /** Resolves once a token is spent. */
  async acquire() {
    while (!this.take()) {
      await new Promise((resolve) => setTimeout(resolve, Math.max(10, this.waitMs())));
    }
  }
}

/** A bounded set of recently seen message ids (oldest forgotten first). */
class SeenIds {
  /** @param {number} limit */
  constructor(limit) {
    this.limit = limit;
    /** @type {Set<string>} */
    this._ids = new Set();
  }

  /** @param {string} id */
  has(id) {
    return this._ids.has(id);
  }

  /** @param {string} id */
  add(id) {
    this._ids.add(id);
    if (this._ids.size > this.limit) {
      const oldest = this._ids.values().next().value;
      if (oldest !== undefined) this._ids.delete(oldest);
    }
  }
}

/**
 * The ids of `ack: true` messages this tab handled and still owes the server an ACK for: kept
 * (in storage too, so a reload keeps them) until the server confirmed the ACK (an `acked`
 * frame, or a 2xx answer to the POST), and sent again on every new connection.
 */
class OwedAcks {
  /** @param {StorageLike|null} storage @param {string} key */
  constructor(storage, key) {
    this._storage = storage;
    this._key = key;
    /** @type {Set<string>} */
    this._ids = new Set();
    try {
      const stored = JSON.parse(storage?.getItem(key) || "[]");
      if (Array.isArray(stored)) {
        for (const id of stored) if (typeof id === "string") this._ids.add(id);
      }
    } catch {
      // storage disabled or garbage: nothing owed from before
    }
  }

  /** @returns {string[]} */
  ids() {
    return [...this._ids];
  }

  /** @param {string} id */
  add(id) {
    if (this._ids.has(id)) return;
    this._ids.add(id);
    if (this._ids.size > TIMING.owedAcks) {
      const oldest = this._ids.values().next().value;
      if (oldest !== undefined) this._ids.delete(oldest);
    }
    this._save();
  }

  /** The server confirmed these. @param {unknown} ids */
  confirm(ids) {
    if (!Array.isArray(ids)) return;
    let changed = false;
    for (const id of ids) changed = this._ids.delete(id) || changed;
    if (changed) this._save();
  }

  _save() {
    try {
      if (this._ids.size) this._storage?.setItem(this._key, JSON.stringify([...this._ids]));
      else this._storage?.removeItem(this._key);
    } catch {
      // storage full or disabled: the ids still live in memory
    }
  }
}

/** Listeners by event name; `on()` returns the function that removes the listener. */
class Emitter {
  constructor() {
    /** @type {Map<string, Set<Function>>} */
    this._listeners = new Map();
  }

  /** @param {string} name @param {Function} listener @returns {() => void} */
  on(name, listener) {
    let set = this._listeners.get(name);
    if (!set) this._listeners.set(name, (set = new Set()));
    set.add(listener);
    return () => {
      set.delete(listener);
    };
  }

  /** @param {string} name @param {...*} args */
  emit(name, ...args) {
    for (const listener of [...(this._listeners.get(name) ?? [])]) {
      try {
        listener(...args);
      } catch (error) {
        console.error(`realtime: a "${name}" listener failed`, error);
      }
    }
  }
}

/**
 * Per-topic positions `{epoch, offset}`, in memory and in storage (sessionStorage by
 * default, so a tab resumes where it left off across reloads and transport changes).
 */
export class CursorStore {
  /** @param {StorageLike|null} storage @param {string} prefix */
  constructor(storage, prefix) {
    this._storage = storage;
    this._prefix = prefix;
    /** @type {Map<string, Cursor|null>} */
    this._memory = new Map();
  }

  /** @param {string} topic @returns {Cursor|null} */
  get(topic) {
    if (!this._memory.has(topic)) {
      let cursor = null;
      try {
        const stored = this._storage?.getItem(this._prefix + topic);
        if (stored) cursor = CursorStore.parse(`${topic}~${stored}`).get(topic) ?? null;
      } catch {
        // storage disabled or full of garbage: no stored position
      }
      this._memory.set(topic, cursor);
    }
    return this._memory.get(topic) ?? null;
  }

  /** @param {string} topic @param {Cursor} cursor */
  set(topic, cursor) {
    this._memory.set(topic, { epoch: cursor.epoch, offset: cursor.offset });
    try {
      this._storage?.setItem(this._prefix + topic, `${cursor.epoch}~${cursor.offset}`);
    } catch {
      // storage full or disabled: the position still lives in memory
    }
  }

  /** @param {string} topic */
  delete(topic) {
    this._memory.set(topic, null);
    try {
      this._storage?.removeItem(this._prefix + topic);
    } catch {
      // nothing to do
    }
  }

  /**
   * Move forward to (epoch, offset): always for another epoch, only to a higher offset in the
   * same epoch. Returns whether the position moved.
   * @param {string} topic @param {string} epoch @param {number} offset
   */
  advance(topic, epoch, offset) {
    const current = this.get(topic);
    if (current && current.epoch === epoch && offset <= current.offset) return false;
    this.set(topic, { epoch, offset });
    return true;
  }

  /** Whether a message at (epoch, offset) is already behind the position.
   * @param {string} topic @param {string} epoch @param {number} offset */
  covers(topic, epoch, offset) {
    const current = this.get(topic);
    return current !== null && current.epoch === epoch && offset <= current.offset;
  }

  /** The cursor string (`topic~epoch~offset,…`) of the topics that have a position.
   * @param {Iterable<string>} topics */
  encode(topics) {
    return CursorStore.format([...topics].map((topic) => [topic, this.get(topic)]));
  }

  /**
   * Build a cursor string from `[topic, cursor]` pairs (a `Map` too); topics without a
   * cursor are left out.
   * @param {Iterable<[string, Cursor|null|undefined]>} cursors
   * @returns {string}
   */
  static format(cursors) {
    const parts = [];
    for (const [topic, cursor] of cursors) {
      if (cursor) parts.push(`${topic}~${cursor.epoch}~${cursor.offset}`);
    }
    return parts.join(WIRE.cursorSeparator);
  }

  /**
   * Parse a cursor string; malformed parts are skipped.
   * @param {string} text
   * @returns {Map<string, Cursor>}
   */
  static parse(text) {
    const cursors = new Map();
    for (const part of (text || "").split(WIRE.cursorSeparator)) {
      const fields = part.split(WIRE.cursorFieldSeparator);
      if (fields.length !== 3 || !fields[0] || !fields[1] || !/^\d+$/.test(fields[2])) continue;
      cursors.set(fields[0], { epoch: fields[1], offset: Number(fields[2]) });
    }
    return cursors;
  }
}

/** One topic's handlers. */
class Subscription {
  /** @param {string} topic */
  constructor(topic) {
    this.topic = topic;
    /** @type {Set<TopicHandler>} */
    this.handlers = new Set();
    /** Set when the server refused the topic; not asked for again until re-subscribed.
     * @type {string|null} */
    this.refused = null;
  }

  /** @param {TopicEvent} event */
  dispatch(event) {
    for (const handler of [...this.handlers]) {
      try {
        handler(event);
      } catch (error) {
        console.error(`realtime: a handler of topic ${this.topic} failed`, error);
      }
    }
  }
}

/** One client message (`send`): its id survives reconnects so the server can dedup retries. */
class Push {
  /** @param {string} id @param {string} event @param {*} data @param {number} timeoutMs
   * @param {(push: Push) => void} onTimeout */
  constructor(id, event, data, timeoutMs, onTimeout) {
    /** @type {Frame} */
    this.frame = { type: "send", id, event };
    if (data !== undefined) this.frame.data = data;
    this.id = id;
    /** @type {BaseTransport|null} the transport it was last sent on */
    this.sentVia = null;
    this.sentAt = 0;
    /** @type {(value: any) => void} */
    this.resolve = () => {};
    /** @type {(error: Error) => void} */
    this.reject = () => {};
    /** Answered, timed out or closed: then it is not sent any more. */
    this.settled = false;
    /** @type {Promise<any>} */
    this.promise = new Promise((resolve, reject) => {
      this.resolve = (value) => {
        this.settled = true;
        resolve(value);
      };
      this.reject = (error) => {
        this.settled = true;
        reject(error);
      };
    });
    this.timer = new WallTimer(() => onTimeout(this));
    if (Number.isFinite(timeoutMs)) this.timer.in(timeoutMs);
  }
}

/** @param {string} name */
function readCookie(name) {
  if (typeof document === "undefined") return null;
  for (const part of document.cookie ? document.cookie.split(";") : []) {
    const [key, ...rest] = part.trim().split("=");
    if (key === name) return decodeURIComponent(rest.join("="));
  }
  return null;
}

/** @param {Response} response @returns {Promise<{code: string, reason: string, ref?: string}>} */
async function errorBody(response) {
  try {
    const body = await response.json();
    if (body && typeof body.error === "object" && body.error) return body.error;
  } catch {
    // not JSON
  }
  return { code: `http_${response.status}`, reason: response.statusText || "HTTP error" };
}

function randomId() {
  const bytes = new Uint8Array(9);
  crypto.getRandomValues(bytes);
  return btoa(String.fromCharCode(...bytes))
    .replace(/\+/g, "-")
    .replace(/\//g, "_");
}

// ---- transports -------------------------------------------------------------------------------

/**
 * What every transport shares: the silence watchdog, ACK batching, and the reports to its
 * host. A transport instance is used for one connection attempt; the client makes a new one
 * to reconnect. After `close()` it never calls back.
 *
 * A transport knows the client only through its {@link TransportHost}: it reads the token,
 * the endpoints and the wanted topics with their positions there, and reports there:
 * `opened()` once it is connected and authenticated (the `welcome`), `proven()` once it has
 * shown it really delivers (a frame after `welcome`, or staying up past one silence limit),
 * `frame()` for each frame, `down(info)` once, when it is finished.
 *
 * The client calls: `open()`, `close()`, `topicsChanged()`, `reauth(token)`,
 * `sendPush(push)`, `ack(id)`, `check()`, and reads `name`, `opened`, `proven`, `closed`,
 * `resends`.
 */
class BaseTransport {
  /** @param {TransportHost} host */
  constructor(host) {
    this._host = host;
    /** @type {TransportName} */
    this.name = host.name;
    this.closed = false;
    this.opened = false;
    this.openedAt = 0;
    this.proven = false;
    /** @type {Frame|null} */
    this.welcome = null;
    this.lastHeard = Date.now();
    /** Silence after which the link is dead: until `welcome`, the connect timeout. */
    this.silenceLimitMs = host.connectTimeoutMs;
    this._graced = false;
    /** A request went out whose answer proves the link (see `_expectAnswer`). */
    this._answerDue = false;
    this._watchdog = new WallTimer((late) => this._checkSilence(late));
    /** @type {string[]} */
    this._acks = [];
    this._ackTimer = new WallTimer(() => this._flushAcks());
    /** Whether the client should re-send unanswered `send`s on a timer (WebSocket). */
    this.resends = false;
  }

  /** Start connecting. */
  open() {
    this._watch();
  }

  /** Stop for good, silently. */
  close() {
    this.closed = true;
    this._watchdog.cancel();
    this._ackTimer.cancel();
  }

  /** The set of wanted topics changed. */
  topicsChanged() {}

  /** A fresh token to use from now on. @param {string} _token */
  reauth(_token) {}

  /** Send one client message; resolves to false if it could not be handed over.
   * @param {Push} _push @returns {Promise<boolean>} */
  async sendPush(_push) {
    return false;
  }

  /** Acknowledge a message (gathered, then sent in batches). @param {string} id */
  ack(id) {
    this._acks.push(id);
    if (this._acks.length >= WIRE.maxAckIds) this._flushAcks();
    else if (!this._ackTimer.pending) this._ackTimer.in(TIMING.ackBatchMs);
  }

  _flushAcks() {
    this._ackTimer.cancel();
    while (this._acks.length && !this.closed) {
      this._sendAcks(this._acks.splice(0, WIRE.maxAckIds));
    }
  }

  /** @param {string[]} _ids */
  _sendAcks(_ids) {}

  /** Called by the client when the page wakes up (visible, online). */
  check() {
    this._watchdog.check();
  }

  _heard() {
    this.lastHeard = Date.now();
  }

  _watch() {
    this._graced = false;
    this._watchdog.at(this.lastHeard + this._limitMs());
  }

  /**
   * A request went out that the server answers at once (a `subscribe`): until the transport
   * has proved it delivers, silence longer than the connect timeout means it is mute (a
   * half-open link, a proxy that passed `welcome` only), not just a heartbeat interval away.
   */
  _expectAnswer() {
    if (this.proven || this._answerDue) return;
    this._answerDue = true;
    this._watch();
  }

  /** The silence after which the link is dead, now. */
  _limitMs() {
    if (!this._answerDue || this.proven) return this.silenceLimitMs;
    return Math.min(this.silenceLimitMs, this._host.connectTimeoutMs);
  }

  /** @param {number} late */
  _checkSilence(late) {
    if (this.closed) return;
    const silent = Date.now() - this.lastHeard;
    if (silent < this._limitMs()) {
      this._watch();
      if (this.opened && !this.proven && Date.now() - this.openedAt >= this.silenceLimitMs) {
        this._proven(); // up for a whole silence limit: a ping or keep-alive got through
      }
      return;
    }
    if (late > TIMING.lateTimerMs && !this._graced) {
      // The tab was asleep: frames may be queued behind this timer. Look again shortly.
      this._graced = true;
      this._watchdog.in(TIMING.thawGraceMs);
      return;
    }
    this._down({ reason: this.opened ? "silent" : "connect timeout", silent: true });
  }

  /** @param {Frame} welcome */
  _opened(welcome) {
    if (this.closed || this.opened) return;
    this.opened = true;
    this.openedAt = Date.now();
    this.welcome = welcome;
    const interval = Number(welcome.heartbeat_interval_ms);
    const timeout = Number(welcome.heartbeat_timeout_ms);
    if (interval > 0) this.silenceLimitMs = interval + (timeout > 0 ? timeout : 0);
    this._heard();
    this._watch();
    this._afterOpen();
    this._host.opened();
  }

  /** Runs once when open, before the host hears of it (WebSocket: subscribe). */
  _afterOpen() {}

  _proven() {
    if (this.closed || this.proven) return;
    this.proven = true;
    this._host.proven();
  }

  /** @param {Frame} frame */
  _frame(frame) {
    if (this.closed) return;
    if (this.opened && frame.type !== "welcome") this._proven();
    this._host.frame(frame);
  }

  /**
   * A `close` frame: the server says why it ends this transport, with a WebSocket close code
   * (daphne sends no close reasons; an SSE stream has no close code at all). Act on it as on
   * a WebSocket closed with that code (4419: renew the token, 4403: stop).
   * @param {Frame} frame
   */
  _closeFrame(frame) {
    /** @type {DownInfo} */
    const info = { code: Number(frame.code), reason: String(frame.reason ?? "") };
    const hint = Number(frame.retry_after_ms);
    if (hint > 0) info.retryAfterMs = hint;
    this._down(info);
  }

  /** @param {DownInfo} info */
  _down(info) {
    if (this.closed) return;
    const wasOpen = this.opened;
    const openFor = wasOpen ? Date.now() - this.openedAt : 0;
    this.close();
    this._host.down({ ...info, wasOpen, openFor });
  }

  /** Ask the host for the token; on failure, go down (for good when retrying cannot help).
   * @returns {Promise<{token: string|null}|null>} null when down */
  async _tokenOrDown() {
    try {
      return { token: await this._host.token() };
    } catch (error) {
      const final = error instanceof RealtimeError && /** @type {any} */ (error).final;
      this._down({ reason: "no token", ...(final ? { final: true, error } : {}) });
      return null;
    }
  }
}

/** The WebSocket transport: subscribe/ack/send frames, `pong` for `ping`, and a client-side
 * token bucket so a burst of frames never trips the server's rate limit. */
class WebSocketTransport extends BaseTransport {
  /** @param {TransportHost} host */
  constructor(host) {
    super(host);
    this.resends = true;
    /** @type {WebSocket|null} */
    this.ws = null;
    /** Topics subscribed on this socket. @type {Set<string>} */
    this._topics = new Set();
    /** @type {string[]} */
    this._outbox = [];
    this._bucket = new TokenBucket();
    /** @type {ReturnType<typeof setTimeout>|undefined} */
    this._drainTimer = undefined;
  }

  async open() {
    super.open();
    const got = await this._tokenOrDown();
    if (got === null || this.closed) return;
    /** @type {string[]} */
    const protocols = [WIRE.subprotocol, WIRE.batchSubprotocol];
    if (got.token) protocols.push(WIRE.tokenSubprotocolPrefix + got.token);
    const url = this._host.url(WIRE.paths.websocket);
    url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
    let ws;
    try {
      ws = new WebSocket(url.href, protocols);
    } catch (error) {
      this._down({ reason: String(error) });
      return;
    }
    this.ws = ws;
    ws.onmessage = (event) => this._receive(event.data);
    ws.onclose = (event) => {
      this.ws = null;
      this._down({ code: event.code, reason: event.reason });
    };
  }

  close() {
    super.close();
    clearTimeout(this._drainTimer);
    const ws = this.ws;
    this.ws = null;
    if (ws) {
      ws.onmessage = ws.onclose = null;
      try {
        ws.close(CLOSE.NORMAL);
      } catch {
        // already closing
      }
    }
  }

  /** @param {*} text */
  _receive(text) {
    if (this.closed) return;
    this._heard();
    let frame;
    try {
      frame = JSON.parse(text);
    } catch {
      return; // not JSON: ignored
    }
    if (!frame || typeof frame !== "object") return;
    if (frame.type !== "batch") {
      this._receiveFrame(frame);
      return;
    }
    // several frames the server had queued at once, each handled as if it came alone
    for (const inner of Array.isArray(frame.frames) ? frame.frames : []) {
      if (this.closed) return;
      if (inner && typeof inner === "object" && inner.type !== "batch") this._receiveFrame(inner);
    }
  }

  /** One server frame (alone, or out of a `batch`). @param {Frame} frame */
  _receiveFrame(frame) {
    if (frame.type === "ping") {
      this._send({ type: "pong" });
      if (this.opened) this._proven();
      return;
    }
    if (frame.type === "close") {
      this._closeFrame(frame);
      return;
    }
    if (frame.type === "welcome") {
      // the server's bucket of this connection starts full
      this._bucket = new TokenBucket(frame.limits);
      this._opened(frame);
      this._host.frame(frame);
      return;
    }
    if (frame.type === "error" && typeof frame.ref === "string" && REFUSALS.includes(frame.code)) {
      // The server refused this subscription, so it holds none: when the client drops the
      // topic there is nothing to unsubscribe from (an `unsubscribe` would earn a second
      // error, `not_subscribed`).
      this._topics.delete(frame.ref);
    }
    this._frame(frame);
  }

  _afterOpen() {
    this.topicsChanged();
  }

  topicsChanged() {
    if (!this.opened || this.closed) return;
    const wanted = this._host.topics();
    for (const [topic, cursor] of wanted) {
      if (this._topics.has(topic)) continue;
      this._topics.add(topic);
      this._send(cursor ? { type: "subscribe", topic, cursor } : { type: "subscribe", topic });
      this._expectAnswer();
    }
    for (const topic of [...this._topics]) {
      if (wanted.has(topic)) continue;
      this._topics.delete(topic);
      this._send({ type: "unsubscribe", topic });
    }
  }

  /** @param {string} token */
  reauth(token) {
    if (this.opened) this._send({ type: "auth", token });
  }

  /** @param {Push} push */
  async sendPush(push) {
    if (!this.opened || this.closed) return false;
    const text = JSON.stringify(push.frame);
    const limit = this.welcome?.limits?.max_frame_bytes;
    if (limit && new TextEncoder().encode(text).length > limit) {
      this._host.frame({
        type: "ack",
        id: push.id,
        error: { code: "too_large", reason: `The message is larger than ${limit} bytes.` },
      });
      return true;
    }
    this._sendText(text);
    return true;
  }

  /** @param {string[]} ids */
  _sendAcks(ids) {
    // Outside the bucket: the server does not count an ack of messages it waits an ACK for.
    // Not sent on a socket that is no longer open: the client keeps the ids (OwedAcks) until
    // the server answers `acked`, and sends them again on the next connection.
    if (this.ws && this.ws.readyState === WebSocket.OPEN) {
      this.ws.send(JSON.stringify({ type: "ack", ids }));
    }
  }

  /** @param {Frame} frame */
  _send(frame) {
    this._sendText(JSON.stringify(frame));
  }

  /** @param {string} text */
  _sendText(text) {
    this._outbox.push(text);
    this._drain();
  }

  _drain() {
    clearTimeout(this._drainTimer);
    this._drainTimer = undefined;
    while (this._outbox.length) {
      if (!this.ws || this.ws.readyState !== WebSocket.OPEN) return;
      if (!this._bucket.take()) break;
      this.ws.send(/** @type {string} */ (this._outbox.shift()));
    }
    if (this._outbox.length) {
      this._drainTimer = setTimeout(() => this._drain(), Math.max(10, this._bucket.waitMs()));
    }
  }
}

/**
 * What the HTTP transports (SSE and long-poll) share: one GET at a time for the wanted
 * topics with their cursors (a newer one supersedes it), client messages and ACKs POSTed to
 * `send/`, and the reading of a failed response. Requests are paced to stay under the
 * server's rate limit: GETs and `send` POSTs spend one bucket, ACK POSTs another (the
 * server keeps one for them too), and ACK ids gather while their bucket is empty.
 */
class HttpTransport extends BaseTransport {
  /** @param {TransportHost} host */
  constructor(host) {
    super(host);
    /** @type {AbortController|null} */
    this._abort = null;
    /** Counts the GETs; a response to an older one is ignored. */
    this._generation = 0;
    this._bucket = new TokenBucket();
    this._ackBucket = new TokenBucket();
  }

  /** The server's limits (SSE: `welcome.limits`; long-poll: `X-Realtime-Limits`).
   * @param {{rate?: number, burst?: number}|undefined} limits */
  _limit(limits) {
    this._bucket.limit(limits);
    this._ackBucket.limit(limits);
  }

  _flushAcks() {
    this._ackTimer.cancel();
    while (this._acks.length && !this.closed && this._ackBucket.take()) {
      this._sendAcks(this._acks.splice(0, WIRE.maxAckIds));
    }
    // the bucket is empty: the ids gather into the next POST
    if (this._acks.length && !this.closed) this._ackTimer.in(this._ackBucket.waitMs());
  }

  close() {
    super.close();
    this._abort?.abort();
    this._abort = null;
  }

  /** @param {Push} push */
  async sendPush(push) {
    if (this.closed) return false;
    return this._postPush(push);
  }

  /** Open with nothing to receive (no topics): usable for sending, nothing to watch. */
  _idle() {
    this._opened({});
    this._proven();
    this._watchdog.cancel();
  }

  /** Headers for HTTP requests: the bearer token, or the CSRF token under cookie auth.
   * @param {string|null} token @param {boolean} post */
  _headers(token, post) {
    /** @type {Record<string, string>} */
    const headers = {};
    if (token) headers.Authorization = `Bearer ${token}`;
    else if (post) {
      const csrf = this._host.csrf();
      if (csrf) headers[WIRE.csrfHeader] = csrf;
    }
    if (post) headers["Content-Type"] = "application/json";
    return headers;
  }

  /**
   * POST one client frame to `send/`. Resolves to the response, or null on a network error.
   * @param {Frame} frame @param {Record<string, string>} [extra]
   */
  async _post(frame, extra = {}) {
    try {
      const token = await this._host.token();
      return await fetch(this._host.url(WIRE.paths.send), {
        method: "POST",
        credentials: "same-origin",
        cache: "no-store",
        headers: { ...this._headers(token, true), ...extra },
        body: JSON.stringify(frame),
      });
    } catch {
      return null;
    }
  }

  /**
   * Start the GET of an HTTP transport (SSE stream or poll) for the wanted topics, with their
   * cursors, and watch it for silence. Resolves to the response and the request's generation,
   * or null when there is nothing more to do: no topics (idle), no token, superseded, or a
   * network error (each already handled).
   * @param {string} path @param {string} accept @param {number} silenceLimitMs
   * @param {() => void} [beforeFetch]
   * @returns {Promise<{response: Response, generation: number} | null>}
   */
  async _request(path, accept, silenceLimitMs, beforeFetch = () => {}) {
    const generation = ++this._generation;
    this._abort?.abort();
    const abort = (this._abort = new AbortController());
    const topics = [...this._host.topics().keys()];
    if (topics.length === 0) {
      this._idle(); // nothing to receive, but usable for sending
      return null;
    }
    const got = await this._tokenOrDown();
    if (got === null || this.closed || generation !== this._generation) return null;
    await this._bucket.acquire();
    if (this.closed || generation !== this._generation) return null;
    const url = this._host.url(path);
    for (const topic of topics) url.searchParams.append("topic", topic);
    // the positions as they are now: they may have moved while the token came
    const positions = this._host.topics();
    const cursor = CursorStore.format(topics.map((topic) => [topic, positions.get(topic)]));
    if (cursor) url.searchParams.set("cursor", cursor);
    this.silenceLimitMs = silenceLimitMs;
    this._heard();
    this._watch();
    beforeFetch();
    let response;
    try {
      response = await fetch(url, {
        credentials: "same-origin",
        cache: "no-store",
        headers: { Accept: accept, ...this._headers(got.token, false) },
        signal: abort.signal,
      });
    } catch {
      if (generation === this._generation) this._down({ reason: "network error" });
      return null;
    }
    if (this.closed || generation !== this._generation) return null;
    return { response, generation };
  }

  /**
   * The answer to an ACK POST: 2xx confirms the ids (the client stops keeping them); after a
   * failure they are POSTed again a while later (a long-poll is not sent a message again).
   * @param {string[]} ids @param {Response|null} response
   */
  _ackAnswered(ids, response) {
    if (response?.ok) {
      this._host.frame({ type: "acked", ids });
      return;
    }
    this._host.debug(`${this.name} ack failed`, response?.status);
    setTimeout(() => {
      if (!this.closed) for (const id of ids) this.ack(id);
    }, TIMING.postRetryMs);
  }

  /**
   * POST a `send`: the answer is its `ack` frame. False when it should be tried again later.
   * @param {Push} push
   */
  async _postPush(push) {
    await this._bucket.acquire();
    if (this.closed) return false;
    if (push.settled) return true; // timed out while it waited: never sent
    const response = await this._post(push.frame);
    if (response?.status === 429) this._bucket.empty();
    if (response === null || response.status === 429 || response.status >= 500) return false;
    if (response.status === 401 && this._host.canRenewToken()) {
      await this._host.token(true);
      return false;
    }
    if (response.ok) {
      try {
        this._host.frame(await response.json());
      } catch {
        return false;
      }
      return true;
    }
    const error = await errorBody(response);
    // 409 in_progress: another attempt runs the handler; POST it again for its answer
    if (error.code === WIRE.inProgress) return false;
    this._host.frame({ type: "ack", id: push.id, error });
    return true;
  }

  /**
   * Turn a failed HTTP response (before a stream or poll started) into `_down()`.
   * @param {Response} response
   */
  async _httpFailure(response) {
    const error = await errorBody(response);
    const status = response.status;
    const failure = new RealtimeError(error.code, error.reason, { status });
    const topic = error.ref && this._host.topics().has(error.ref) ? error.ref : null;
    // 401 naming a topic: the request had no credentials and the topic needs some. A page
    // that cannot get a token drops that topic, as the WebSocket's `forbidden` does.
    const anonymousRefusal = status === 401 && topic !== null && !this._host.canRenewToken();
    if (status === 401 && !anonymousRefusal) {
      // the client renews the token and tries again once, else gives up
      this._down({ code: status, reason: error.reason, retryToken: true, error: failure });
      return;
    }
    if (topic && [400, 401, 403, 409].includes(status)) {
      // One topic was refused: drop it, keep the others.
      const refused = { topic, code: error.code, reason: error.reason };
      this._down({ code: status, reason: error.reason, retry: true, refused });
      return;
    }
    const final = [400, 403, 409].includes(status);
    // 400 invalid_frame: maybe a garbled cursor; the client forgets the positions, if any
    const badCursor = status === 400 && error.code === "invalid_frame";
    /** @type {DownInfo} */
    const info = { code: status, reason: error.reason, final, error: failure, badCursor };
    // 503 with Retry-After (seconds): the node is busy, draining, or lost a backend
    const hint = status === 503 ? Number(response.headers.get("Retry-After")) * 1000 : 0;
    if (hint > 0) info.retryAfterMs = hint;
    this._down(info);
  }
}

/** SSE over `fetch` streaming (so it can send `Authorization`), one stream for all topics;
 * ACKs and client messages go by POST. A change of topics opens a new stream. */
class SseTransport extends HttpTransport {
  /** @param {TransportHost} host */
  constructor(host) {
    super(host);
    /** @type {string|null} */
    this.connectionId = null;
  }

  open() {
    super.open();
    this._stream();
  }

  topicsChanged() {
    if (this.closed) return;
    // A stream carries a fixed set of topics: replace it, resuming from the cursors.
    this._stream();
  }

  async _stream() {
    this.connectionId = null; // the next `welcome` names the new stream
    // Every stream, a replacement too, must say `welcome` within the connect timeout.
    const started = await this._request(
      WIRE.paths.sse,
      "text/event-stream",
      this._host.connectTimeoutMs,
    );
    if (started === null) return;
    const { response, generation } = started;
    if (!response.ok || !response.body) {
      await this._httpFailure(response);
      return;
    }
    this._host.accepted();
    try {
      await this._read(response.body, generation);
    } catch {
      // aborted, or the network broke
    }
    if (generation === this._generation) this._down({ reason: "stream ended" });
  }

  /** Parse the event stream (text/event-stream) and hand each frame on.
   * @param {ReadableStream<Uint8Array>} body @param {number} generation */
  async _read(body, generation) {
    const reader = body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    let data = [];
    let kind = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done || this.closed || generation !== this._generation) {
        reader.cancel().catch(() => {});
        return;
      }
      this._heard();
      buffer += decoder.decode(value, { stream: true });
      const lines = buffer.split(/\r\n|\r|\n/);
      buffer = lines.pop() ?? "";
      for (const line of lines) {
        if (line === "") {
          if (data.length) this._event(kind, data.join("\n"));
          data = [];
          kind = "";
          if (this.closed || generation !== this._generation) return;
          continue;
        }
        if (line.startsWith(":")) continue; // a comment: padding or keep-alive
        const colon = line.indexOf(":");
        const field = colon < 0 ? line : line.slice(0, colon);
        let value = colon < 0 ? "" : line.slice(colon + 1);
        if (value.startsWith(" ")) value = value.slice(1);
        if (field === "data") data.push(value);
        else if (field === "event") kind = value;
        // `id:` repeats the positions the frames already carry; `retry:` is for EventSource
      }
    }
  }

  /** @param {string} kind @param {string} text */
  _event(kind, text) {
    let frame;
    try {
      frame = JSON.parse(text);
    } catch {
      return;
    }
    if (!frame || typeof frame !== "object") return;
    if (frame.type === "close") {
      this._closeFrame(frame);
      return;
    }
    if (frame.type === "welcome") {
      this.connectionId = frame.connection_id ?? null;
      this._limit(frame.limits);
      if (!this.opened) {
        this._opened(frame);
      } else {
        // a replacement stream (topics changed): the same transport, a new stream
        const interval = Number(frame.heartbeat_interval_ms);
        const timeout = Number(frame.heartbeat_timeout_ms) || 0;
        if (interval > 0) this.silenceLimitMs = interval + timeout;
        this._watch();
      }
      this._host.frame(frame);
      return;
    }
    this._frame(frame);
  }

  /** A fresh token: open a new stream with it, resuming from the cursors.
   * @param {string} _token */
  reauth(_token) {
    if (!this.closed && this.opened) this._stream();
  }

  /** @param {string[]} ids */
  async _sendAcks(ids) {
    if (!this.connectionId) return;
    const headers = { [WIRE.connectionHeader]: this.connectionId };
    // A lost ACK is not lost: the client keeps the ids until a POST of them succeeds.
    this._ackAnswered(ids, await this._post({ type: "ack", ids }, headers));
  }
}

/** Long-poll: GET `poll/` with the cursor in a loop. Acknowledging is implicit (the next poll
 * starts after what was handled), and the ids are POSTed too, so that the server's `on_ack`
 * hook runs without waiting for the next poll; client messages go by POST. */
class LongPollTransport extends HttpTransport {
  /** @param {TransportHost} host */
  constructor(host) {
    super(host);
    this._openTimer = new WallTimer(() => {
      if (!this.closed && !this.opened) this._opened({});
    });
  }

  open() {
    // Each request has its own deadline (pollTimeoutMs) instead of the silence watchdog.
    this._poll();
  }

  close() {
    super.close();
    this._openTimer.cancel();
  }

  check() {
    super.check();
    this._openTimer.check();
  }

  topicsChanged() {
    if (!this.closed) this._poll(); // the pending poll has the old topics: ask again
  }

  async _poll() {
    // The server holds a poll up to its POLL_TIMEOUT: give up on it a while after that.
    const started = await this._request(
      WIRE.paths.longpoll,
      "application/json",
      this._host.pollTimeoutMs,
      () => {
        // No `welcome` on long-poll: an answer, or a request held without error, means connected.
        if (!this.opened) this._openTimer.in(TIMING.longpollOpenMs);
      },
    );
    if (started === null) return;
    const { response, generation } = started;
    this._heard();
    try {
      this._limit(JSON.parse(response.headers.get(WIRE.limitsHeader) ?? "null") ?? undefined);
    } catch {
      // no usable header: keep the limits known
    }
    if (response.status === 204) {
      this._answered();
      this._poll();
      return;
    }
    if (!response.ok) {
      await this._httpFailure(response);
      return;
    }
    let body;
    try {
      body = await response.json();
    } catch {
      if (generation === this._generation) this._down({ reason: "bad response" });
      return;
    }
    if (this.closed || generation !== this._generation) return;
    this._host.accepted();
    this._answered();
    for (const frame of Array.isArray(body.frames) ? body.frames : []) {
      if (this.closed || generation !== this._generation) return;
      if (frame && typeof frame === "object") this._frame(frame);
    }
    // Handled: now the position moves on, which is the acknowledgement.
    if (typeof body.cursor === "string") this._host.handled(CursorStore.parse(body.cursor));
    this._poll();
  }

  _answered() {
    this._openTimer.cancel();
    this._opened({});
    this._proven();
  }

  /**
   * The next poll's cursor is the acknowledgement; the ids are POSTed as well (no connection
   * header: there is no stream), so that the server runs its `on_ack` hook at once.
   * @param {string[]} ids
   */
  async _sendAcks(ids) {
    this._ackAnswered(ids, await this._post({ type: "ack", ids }));
  }
}

/** The transports by name: adding one is a class above and a line here (and its name in
 * {@link Transport}). */
const TRANSPORT_CLASSES = Object.freeze({
  [Transport.WEBSOCKET]: WebSocketTransport,
  [Transport.SSE]: SseTransport,
  [Transport.LONGPOLL]: LongPollTransport,
});

// ---- one connection per browser: the tabs share it ---------------------------------------------

/** Timings of tab sharing (internal; docs/client.md, "One connection per browser"). */
const TABS = Object.freeze({
  /** The leading tab says it is alive this often … */
  heartbeatMs: 150,
  /** … a tab that heard nothing from it for this long asks it … */
  silenceMs: 350,
  /** … and takes over when the question is unanswered this long. */
  probeMs: 200,
  /** Tabs that all find the leader gone wait a random time below this before taking over. */
  jitterMs: 50,
  /** A tab that takes over waits this long for the others' positions before connecting. */
  gatherMs: 100,
  /** Without Web Locks: a tab that hears of no leader this long after saying hello leads. */
  claimMs: 300,
});

/**
 * What a leading tab's {@link Hub} gets from its client (internal).
 * @typedef {object} HubHost
 * @property {() => void} topicsChanged the topics wanted by the tabs changed
 * @property {(frame: Frame, answer: (ack: Frame) => void) => void} relay send another tab's
 *   client message (same id) and call `answer` with the server's `ack`
 * @property {(topic: string) => Cursor|null|undefined} own the leading tab's own position of a
 *   topic it subscribes, undefined when it does not
 * @property {() => {state: StateName, transport: TransportName|null}} state
 * @property {(listener: (detail: {code?: number, reason?: string}) => void) => () => void}
 *   onState listen to the client's state and transport changes; returns off()
 */

/**
 * What a {@link TabLink} gets from its client (internal).
 * @typedef {object} TabOwner
 * @property {() => void} roleChanged this tab started or stopped leading
 * @property {() => HubHost} hubHost what the hub of a leading tab needs from the client
 * @property {(...args: any[]) => void} debug log with the `debug` option
 */

/** @param {Cursor|null|undefined} a @param {Cursor|null|undefined} b @returns {Cursor|null} */
function earliest(a, b) {
  if (!a) return b ?? null;
  if (!b || a.epoch !== b.epoch) return a;
  return a.offset <= b.offset ? a : b;
}

/** A 53-bit hash (cyrb53), so a token never appears in a channel's name. @param {string} text */
function hashText(text) {
  let h1 = 0xdeadbeef;
  let h2 = 0x41c6ce57;
  for (let i = 0; i < text.length; i += 1) {
    const code = text.charCodeAt(i);
    h1 = Math.imul(h1 ^ code, 2654435761);
    h2 = Math.imul(h2 ^ code, 1597334677);
  }
  h1 = Math.imul(h1 ^ (h1 >>> 16), 2246822507) ^ Math.imul(h2 ^ (h2 >>> 13), 3266489909);
  h2 = Math.imul(h2 ^ (h2 >>> 16), 2246822507) ^ Math.imul(h1 ^ (h1 >>> 13), 3266489909);
  return (4294967296 * (2097151 & h2) + (h1 >>> 0)).toString(36);
}

/**
 * A tab's place in the group of tabs that share one connection (one per client; the group is
 * keyed by URL, transports and identity). It elects the leading tab with the Web Locks API
 * (the lock's holder leads; the next waiting tab gets it when the holder's tab closes), or with
 * BroadcastChannel claims where locks are missing; it watches the leader (a heartbeat, a
 * question when it is silent, stealing the lock when unanswered: a frozen tab keeps its lock),
 * and carries the group's messages. The leader's {@link Hub} serves the others; a following
 * tab's {@link TabTransport} is its link to the hub.
 */
class TabLink {
  /**
   * @param {string} key
   * @param {TabOwner} owner
   */
  constructor(key, owner) {
    this.key = key;
    this.id = randomId();
    this._owner = owner;
    this._locks = typeof navigator !== "undefined" && navigator.locks ? navigator.locks : null;
    /** @type {BroadcastChannel|null} */
    this._channel = null;
    this._running = false;
    /** This tab leads (holds the connection). */
    this.leader = false;
    /** The term of this tab's leadership: later leaders have higher terms. */
    this.term = 0;
    /** @type {string|null} the leading tab, as far as this one knows */
    this.leaderId = null;
    this.leaderTerm = 0;
    /** The highest term heard of. */
    this._maxTerm = 0;
    /** Whether this tab has followed a leader (then, taking over, it gathers positions). */
    this.followed = false;
    /** @type {Hub|null} the leader's service to the other tabs */
    this.hub = null;
    /** @type {TabTransport|null} this tab's link to the leader's connection */
    this.follower = null;
    this._lastHeard = 0;
    this._probedAt = 0;
    /** @type {AbortController|null} */
    this._lockAbort = null;
    /** @type {object|null} the lock request that made this tab leader */
    this._grant = null;
    /** @type {(() => void)|null} */
    this._release = null;
    this._watchdog = new WallTimer(() => this._check());
    this._heartbeat = new WallTimer(() => this._beat());
    this._claim = new WallTimer(() => this._claimNow());
    /** @param {PageTransitionEvent} event */
    this._onPageHide = (event) => this._pageHide(event.persisted);
    this._onFreeze = () => this._stepDown("the tab is frozen", true);
  }

  start() {
    if (this._running) return;
    this._running = true;
    this._channel = new BroadcastChannel(`realtime:${this.key}`);
    this._channel.onmessage = (event) => this._receive(event.data);
    if (typeof window !== "undefined") {
      window.addEventListener("pagehide", this._onPageHide);
      document.addEventListener("freeze", this._onFreeze);
    }
    this._heard();
    this._post({ k: "hello" });
    if (this._locks) this._request(false);
    else this._claim.in(TABS.claimMs);
  }

  /** Leave the group. @param {{code?: number, reason?: string}|null} closed the connection
   * closed for good (the other tabs close too); null: this tab stops (another leads) */
  stop(closed) {
    if (!this._running) return;
    if (this.leader && closed) this.hub?.broadcastState({ ...closed, final: true });
    if (this.leader) this._stepDown("stopped", false);
    else if (this.leaderId) this._post({ k: "leave", to: this.leaderId });
    this._running = false;
    this._lockAbort?.abort();
    this._lockAbort = null;
    this._watchdog.cancel();
    this._heartbeat.cancel();
    this._claim.cancel();
    this.leaderId = null;
    if (typeof window !== "undefined") {
      window.removeEventListener("pagehide", this._onPageHide);
      document.removeEventListener("freeze", this._onFreeze);
    }
    this._channel?.close();
    this._channel = null;
  }

  /** A message to the leading tab; false when there is none known.
   * @param {Record<string, any>} message */
  toLeader(message) {
    if (!this.leaderId || this.leader) return false;
    this._post({ ...message, to: this.leaderId });
    return true;
  }

  /** @param {TabTransport} transport */
  follow(transport) {
    this.follower = transport;
    if (this.leaderId && !this.leader) transport._join();
    else this._post({ k: "hello" });
  }

  /** @param {TabTransport} transport */
  unfollow(transport) {
    if (this.follower === transport) this.follower = null;
  }

  /** @param {Record<string, any>} message */
  _post(message) {
    try {
      this._channel?.postMessage({ ...message, from: this.id, term: this.leader ? this.term : 0 });
    } catch (error) {
      this._owner.debug("tabs: cannot post", error);
    }
  }

  /** @param {boolean} steal */
  _request(steal) {
    const locks = this._locks;
    if (!locks || !this._running) return;
    this._lockAbort?.abort();
    const abort = new AbortController();
    this._lockAbort = steal ? null : abort;
    const grant = {};
    const options = steal ? { steal: true } : { signal: abort.signal };
    locks
      .request(`realtime:${this.key}`, options, () => {
        if (!this._running || this.leader) return undefined;
        return new Promise((release) => {
          this._grant = grant;
          this._release = () => release(undefined);
          this._lead();
        });
      })
      .catch(() => {
        // Aborted (stopped, or about to steal), or stolen from this tab: then another leads.
        if (this.leader && this._grant === grant) this._stepDown("another tab took over", true);
      });
  }

  _lead() {
    if (!this._running || this.leader) return;
    this.leader = true;
    this.term = Math.max(Date.now() * 1000 + Math.floor(Math.random() * 1000), this._maxTerm + 1);
    this.leaderId = this.id;
    this.leaderTerm = this.term;
    this._watchdog.cancel();
    this._claim.cancel();
    this._owner.debug("tabs: this tab leads");
    this.hub = new Hub(this, this._owner.hubHost());
    this._beat();
    this._owner.roleChanged();
  }

  /**
   * Stop leading. @param {string} why
   * @param {boolean} again stay a candidate (wait for the lock again)
   */
  _stepDown(why, again) {
    if (!this.leader) return;
    this._owner.debug("tabs: stepping down:", why);
    this.leader = false;
    this.hub?.close();
    this.hub = null;
    this._heartbeat.cancel();
    this._post({ k: "resign" });
    this._grant = null;
    this._release?.();
    this._release = null;
    this.leaderId = null;
    this._heard();
    if (again && this._running) {
      if (this._locks) this._request(false);
      this._owner.roleChanged();
    }
  }

  _beat() {
    if (!this.leader) return;
    this._post({ k: "leader" });
    this._heartbeat.in(TABS.heartbeatMs);
  }

  /** @param {boolean} cached the page may come back (back/forward cache) */
  _pageHide(cached) {
    if (this.leader) this._stepDown("the page is going away", cached);
    else if (this.leaderId) this._post({ k: "leave", to: this.leaderId });
  }

  _heard() {
    this._lastHeard = Date.now();
    this._probedAt = 0;
    if (!this.leader && this._running) this._watchdog.at(this._lastHeard + TABS.silenceMs);
  }

  /** The follower's watchdog: ask a silent leader, take over from one that does not answer. */
  _check() {
    if (!this._running || this.leader) return;
    const now = Date.now();
    if (now - this._lastHeard < TABS.silenceMs) {
      this._watchdog.at(this._lastHeard + TABS.silenceMs);
    } else if (!this._probedAt) {
      this._probedAt = now;
      this._post({ k: "probe" });
      this._watchdog.in(TABS.probeMs);
    } else if (now - this._probedAt < TABS.probeMs) {
      this._watchdog.at(this._probedAt + TABS.probeMs);
    } else {
      this._claim.in(Math.random() * TABS.jitterMs);
    }
  }

  _claimNow() {
    if (!this._running || this.leader) return;
    if (this.leaderId && Date.now() - this._lastHeard < TABS.silenceMs) return; // it answered
    this._owner.debug("tabs: taking over");
    if (this._locks) this._request(true);
    else this._lead();
  }

  /** @param {*} message */
  _receive(message) {
    if (!this._running || !message || typeof message !== "object" || message.from === this.id) {
      return;
    }
    const { k: kind, from, term } = message;
    if (kind === "hello" || kind === "probe") {
      if (this.leader) this._post({ k: "leader" });
      return;
    }
    if (kind === "leader") {
      this._leaderSeen(from, term);
      return;
    }
    if (this.leader) {
      if (message.to === this.id) this.hub?.receive(message);
      return;
    }
    if (from !== this.leaderId || term !== this.leaderTerm) return; // a deposed leader's
    if (kind === "resign") {
      this.leaderId = null;
      this._heard();
      this.follower?._leaderChanged();
      if (!this._locks) this._claim.in(Math.random() * TABS.jitterMs);
      return;
    }
    this._heard();
    if (message.to && message.to !== this.id) return;
    this.follower?._fromLeader(message);
  }

  /** @param {string} from @param {number} term */
  _leaderSeen(from, term) {
    if (from === this.leaderId && term === this.leaderTerm) {
      this._heard();
      return;
    }
    this._maxTerm = Math.max(this._maxTerm, Number(term) || 0);
    if (this.leader) {
      // With locks, holding the lock is leading: a tab that lost it learns so from its lock
      // request. Without, the later claim wins.
      if (this._locks || term < this.term) return;
      this._stepDown("a newer leader", true);
    }
    // A tab deposed while frozen, awake again, still announces its older term; after a
    // resignation, any leader is welcome (the lock says which one is).
    if (this.leaderId && term < this.leaderTerm) return;
    this.leaderId = from;
    this.leaderTerm = term;
    this.followed = true;
    this._claim.cancel();
    this._heard();
    this.follower?._leaderChanged();
  }
}

/**
 * The leading tab's service to the others: the union of their topics joins the connection's
 * (each from the earliest position a tab has), the connection's frames go to the tabs that
 * want them, their client messages go out on it and its answers back.
 */
class Hub {
  /** @param {TabLink} link @param {HubHost} host */
  constructor(link, host) {
    this._link = link;
    this._host = host;
    /** The following tabs: their topics with positions, and the topics they await
     * `subscribed` for.
     * @type {Map<string, {topics: Map<string, Cursor|null>, pending: Set<string>}>} */
    this._tabs = new Map();
    /** Each topic's position on the connection (or where it is to resume from).
     * @type {Map<string, Cursor>} */
    this._positions = new Map();
    /** Topics the connection confirmed (`subscribed`) since its last `welcome`. */
    this._live = new Set();
    /** Topics being subscribed again from an earlier position. */
    this._rewinding = new Set();
    /** The leading tab's own topics, as last seen. @type {Set<string>} */
    this._owned = new Set();
    /** @type {Frame[]} frames to broadcast at the end of this task */
    this._outgoing = [];
    this._offState = host.onState((detail) => this.broadcastState(detail));
  }

  close() {
    this._offState();
    this._flush();
  }

  /** The tabs' topics added to the leading tab's own (`topics`), each from its earliest
   * position.
   * @param {Map<string, Cursor|null>} topics */
  merge(topics) {
    for (const [topic, cursor] of topics) {
      // Newly subscribed by the leading tab itself, behind the connection: replay for it too.
      if (this._owned.has(topic)) continue;
      const position = this._positions.get(topic);
      const behind = cursor && position && cursor.epoch === position.epoch;
      if (behind && cursor.offset < position.offset && this._live.has(topic)) {
        this._positions.set(topic, cursor);
        queueMicrotask(() => this._rewind(topic));
      }
    }
    this._owned = new Set(topics.keys());
    for (const entry of this._tabs.values()) {
      for (const topic of entry.topics.keys()) {
        if (!topics.has(topic)) topics.set(topic, null);
      }
    }
    for (const [topic, cursor] of topics) {
      if (this._rewinding.has(topic)) topics.delete(topic);
      else topics.set(topic, earliest(cursor, this._positions.get(topic)));
    }
  }

  /** @param {Record<string, any>} message from a following tab */
  receive(message) {
    if (message.k === "join" && Array.isArray(message.topics)) {
      this._join(message.from, message.topics);
    } else if (message.k === "leave") {
      const entry = this._tabs.get(message.from);
      this._tabs.delete(message.from);
      if (entry && [...entry.topics.keys()].some((topic) => !this._wanted(topic))) {
        this._host.topicsChanged();
      }
    } else if (message.k === "send" && message.frame && typeof message.frame.id === "string") {
      const to = message.from;
      this._host.relay(message.frame, (ack) => this._send(to, [ack]));
    }
  }

  /** @param {{code?: number, reason?: string, final?: boolean}} [detail] */
  broadcastState(detail = {}) {
    this._flush();
    this._link._post({ k: "state", ...this._state(detail) });
  }

  /** @param {{code?: number, reason?: string, final?: boolean}} detail */
  _state(detail) {
    const { state, transport } = this._host.state();
    const closed = detail.final || state === State.CLOSED;
    return closed
      ? { state: State.CLOSED, code: detail.code, reason: detail.reason }
      : { state, transport };
  }

  /**
   * A tab (re)states its topics with its positions. A topic new to the connection is
   * subscribed from the earliest position; one the connection has is confirmed at once, or,
   * when the tab is behind, subscribed again from the tab's position (the tabs ahead drop
   * what they had).
   * @param {string} tab @param {Array<[string, Cursor|null]>} list
   */
  _join(tab, list) {
    const entry = this._tabs.get(tab) ?? { topics: new Map(), pending: new Set() };
    const old = entry.topics;
    const onConnection = new Set(
      [...this._tabs.values()].flatMap((other) => [...other.topics.keys()]),
    );
    entry.topics = new Map();
    for (const [topic, cursor] of list) {
      if (typeof topic !== "string") continue;
      const valid = cursor && typeof cursor.epoch === "string" && Number.isInteger(cursor.offset);
      entry.topics.set(topic, valid ? { epoch: cursor.epoch, offset: cursor.offset } : null);
    }
    this._tabs.set(tab, entry);
    let changed = false;
    /** @type {Frame[]} */
    const direct = [];
    for (const [topic, cursor] of entry.topics) {
      if (old.has(topic)) continue;
      const own = this._host.own(topic);
      if (!onConnection.has(topic) && own === undefined) {
        changed = true; // new to the connection: subscribed from this tab's position
        if (cursor) this._positions.set(topic, cursor);
        else this._positions.delete(topic);
        entry.pending.add(topic);
        continue;
      }
      const position = this._positions.get(topic) ?? own ?? null;
      if (cursor && position && cursor.epoch !== position.epoch) {
        const { epoch, offset } = position;
        direct.push({ type: "reset", topic, reason: "epoch_changed", epoch, offset });
      } else if (cursor && position && cursor.offset < position.offset) {
        this._positions.set(topic, cursor);
        entry.pending.add(topic);
        this._rewind(topic);
      } else if (!this._live.has(topic)) {
        entry.pending.add(topic);
      } else if (!cursor && position) {
        const { epoch, offset } = position;
        direct.push({ type: "subscribed", topic, recovered: false, epoch, offset });
      } else {
        direct.push({ type: "subscribed", topic, recovered: !!cursor });
      }
    }
    for (const topic of old.keys()) {
      if (!entry.topics.has(topic) && !this._wanted(topic)) changed = true;
    }
    if (changed) this._host.topicsChanged();
    this._flush();
    this._link._post({ k: "state", to: tab, ...this._state({}) });
    if (direct.length) this._send(tab, direct);
  }

  /** @param {string} topic */
  _wanted(topic) {
    for (const entry of this._tabs.values()) if (entry.topics.has(topic)) return true;
    return this._host.own(topic) !== undefined;
  }

  /** Subscribe a topic again from its (earlier) position: unsubscribe, then subscribe.
   * @param {string} topic */
  _rewind(topic) {
    this._rewinding.add(topic);
    this._live.delete(topic);
    this._host.topicsChanged();
    // after the client's gathered topic change (a microtask queued before this one)
    queueMicrotask(() => {
      this._rewinding.delete(topic);
      this._host.topicsChanged();
    });
  }

  /**
   * A frame from the connection (current or probed transport). Returns true when it concerns
   * the other tabs only (a refusal of a topic the leading tab does not have).
   * @param {Frame} frame @returns {boolean}
   */
  frame(frame) {
    const topic = typeof frame.topic === "string" ? frame.topic : null;
    const positioned = typeof frame.epoch === "string" && Number.isInteger(frame.offset);
    switch (frame.type) {
      case "welcome":
        this._live.clear();
        return false;
      case "message":
        if (topic && positioned) this._advance(topic, frame.epoch, frame.offset);
        this._broadcast(frame);
        return false;
      case "reset":
        if (topic && positioned) {
          this._positions.set(topic, { epoch: frame.epoch, offset: frame.offset });
        }
        this._broadcast(frame);
        return false;
      case "subscribed":
        if (!topic) return false;
        this._live.add(topic);
        if (positioned && !frame.recovered) this._advance(topic, frame.epoch, frame.offset);
        for (const [tab, entry] of this._tabs) {
          if (entry.pending.delete(topic)) this._send(tab, [frame]);
        }
        return false;
      case "notice":
        this._broadcast(frame);
        return false;
      case "error":
        if (typeof frame.ref === "string" && REFUSALS.includes(frame.code)) {
          this.refused(frame.ref, frame.code, frame.reason);
          return this._host.own(frame.ref) === undefined;
        }
        return false;
      default:
        return false;
    }
  }

  /** The connection went down: nothing is confirmed any more. */
  down() {
    this._live.clear();
  }

  /** The server refused a topic: the tabs that want it hear it, and it is not asked again.
   * @param {string} topic @param {string} code @param {string} reason */
  refused(topic, code, reason) {
    let any = false;
    for (const entry of this._tabs.values()) {
      any = entry.topics.delete(topic) || any;
      entry.pending.delete(topic);
    }
    this._positions.delete(topic);
    if (!any) return;
    this._broadcast({ type: "error", code, reason, ref: topic });
    this._host.topicsChanged();
  }

  /** Long-poll answered up to these positions. @param {Map<string, Cursor>} cursors */
  handled(cursors) {
    for (const [topic, cursor] of cursors) this._advance(topic, cursor.epoch, cursor.offset);
  }

  /** @param {string} topic @param {string} epoch @param {number} offset */
  _advance(topic, epoch, offset) {
    const current = this._positions.get(topic);
    if (!current || current.epoch !== epoch || offset > current.offset) {
      this._positions.set(topic, { epoch, offset });
    }
  }

  /** @param {Frame} frame */
  _broadcast(frame) {
    this._outgoing.push(frame);
    if (this._outgoing.length === 1) queueMicrotask(() => this._flush());
  }

  _flush() {
    if (!this._outgoing.length) return;
    this._link._post({ k: "frames", frames: this._outgoing.splice(0) });
  }

  /** @param {string} tab @param {Frame[]} frames */
  _send(tab, frames) {
    this._flush(); // in order with what was broadcast before
    this._link._post({ k: "frames", to: tab, frames });
  }
}

/**
 * A following tab's "transport": the leading tab's connection, reached through the
 * {@link TabLink}. It is open while that connection is, under that connection's transport's
 * name; its frames are those of the connection for this tab's topics; a client message goes
 * to the leader, which sends it with the same id. When the leader changes, it goes down and
 * the client makes the next one (or a real transport, if this tab leads now).
 */
class TabTransport extends BaseTransport {
  /** @param {TransportHost} host */
  constructor(host) {
    super(host);
    this._link = /** @type {TabLink} */ (host.link);
  }

  open() {
    this._link.follow(this); // no silence watchdog: the link watches the leader
  }

  close() {
    super.close();
    this._link.unfollow(this);
  }

  _watch() {}

  topicsChanged() {
    if (!this.closed) this._join();
  }

  _join() {
    this._link.toLeader({ k: "join", topics: [...this._host.topics()] });
  }

  /** @param {Push} push */
  async sendPush(push) {
    if (this.closed || !this.opened) return false;
    return this._link.toLeader({ k: "send", frame: push.frame });
  }

  /** The leading tab acknowledges what its connection receives. @param {string} _id */
  ack(_id) {}

  /** Another tab leads now, or none. */
  _leaderChanged() {
    if (this.closed) return;
    if (this.opened) this._down({ reason: "another tab leads", retry: true });
    else if (this._link.leaderId) this._join();
  }

  /** @param {Record<string, any>} message */
  _fromLeader(message) {
    if (this.closed) return;
    if (message.k === "state") {
      this._leaderState(message);
      return;
    }
    if (message.k !== "frames" || !Array.isArray(message.frames)) return;
    const topics = this._host.topics();
    for (const frame of message.frames) {
      if (this.closed) return;
      const topic = frame?.topic ?? frame?.ref;
      if (frame?.type === "ack" || frame?.type === "notice" || topics.has(topic)) {
        this._frame(frame);
      }
    }
  }

  /** @param {Record<string, any>} message */
  _leaderState(message) {
    if (message.state === State.OPEN && message.transport in TRANSPORT_CLASSES) {
      if (!this.opened) {
        this.name = message.transport;
        this._opened({});
        this._proven();
      } else if (message.transport !== this.name) {
        this.name = message.transport;
        this._host.switched();
      }
    } else if (message.state === State.CLOSED) {
      const reason = String(message.reason ?? "");
      this._down({ code: Number(message.code) || CLOSE.NORMAL, reason, final: true });
    } else if (this.opened) {
      this._down({ reason: "the shared connection broke", retry: true });
    }
  }
}

// ---- the client -------------------------------------------------------------------------------

/**
 * A realtime connection: subscribe to topics, send client messages, watch the state.
 *
 * One instance per page is the rule; it multiplexes every topic over one transport.
 */
export class Realtime {
  /**
   * Read the configuration rendered by `{% realtime_client … %}` (a
   * `<script type="application/json">` element) and make a client from it. The page's
   * `topics` are on `client.topics`. A rendered `token` comes with token renewal from
   * `url + "token/"` unless `options` say otherwise.
   * @param {string} [id] the element's id; default `"realtime-config"`
   * @param {RealtimeOptions} [options] override anything in the page's configuration
   * @returns {Realtime}
   */
  static fromPage(id = "realtime-config", options = {}) {
    const element = document.getElementById(id);
    if (!element) {
      throw new RealtimeError(
        "no_config",
        `No <script id="${id}"> on the page: render it with {% realtime_client %}.`,
      );
    }
    const config = JSON.parse(element.textContent || "{}");
    const url = config.url ?? DEFAULTS.url;
    /** @type {RealtimeOptions} */
    const fromPage = { url, token: config.token ?? null, cursors: config.cursors ?? null };
    if (typeof config.share_key === "string") fromPage.shareKey = config.share_key;
    if (config.token) {
      fromPage.tokenUrl = config.token_url ?? new URL("token/", new URL(url, location.href)).href;
    }
    const client = new Realtime({ ...fromPage, ...options });
    client.topics = Object.freeze([...(config.topics ?? [])]);
    return client;
  }

  /** @param {RealtimeOptions} [options] */
  constructor(options = {}) {
    for (const key of Object.keys(options)) {
      if (!(key in DEFAULTS)) throw new TypeError(`realtime: unknown option "${key}"`);
    }
    /** @type {Required<RealtimeOptions>} */
    this.options = { ...DEFAULTS, ...options };
    const transports = [...this.options.transports];
    for (const name of transports) {
      if (!(name in TRANSPORT_CLASSES)) {
        throw new TypeError(`realtime: unknown transport "${name}"`);
      }
    }
    if (!transports.length) throw new TypeError("realtime: `transports` is empty");
    this.options.transports = Object.freeze(transports);
    /** Topics named by the page configuration (see `fromPage`). @type {readonly string[]} */
    this.topics = Object.freeze([]);
    /** `connecting` from construction (`closed` until `connect()` with `autoConnect: false`).
     * @type {StateName} */
    this.state = this.options.autoConnect ? State.CONNECTING : State.CLOSED;
    /** Whether `connect()` ran: until then, `connecting` is the state it will enter. */
    this._started = false;
    /** Name of the connected transport (null until one is open). @type {TransportName|null} */
    this.transport = null;

    const here = typeof location === "undefined" ? undefined : location.href;
    this._base = new URL(this.options.url, here);
    const storage = this._storage();
    const prefix = `realtime:${this._base.pathname}:`;
    this._memoryKey = `${prefix}transport`;
    this._storageRef = storage;
    this._cursors = new CursorStore(storage, `${prefix}cursor:`);
    if (this.options.cursors) this._seedCursors(this.options.cursors);
    this._owedAcks = new OwedAcks(storage, `${prefix}acks`);

    this._emitter = new Emitter();
    /** @type {Map<string, Subscription>} */
    this._subs = new Map();
    this._seen = new SeenIds(TIMING.seenIds);
    /** Client messages waiting for their `ack`, in order. @type {Map<string, Push>} */
    this._outbox = new Map();
    this._clientId = randomId();
    this._sequence = 0;
    this._backoff = new Backoff(this.options.backoffMinMs, this.options.backoffMaxMs);
    this._reconnectTimer = new WallTimer(() => this._startRound());
    this._upgradeTimer = new WallTimer(() => this._tryUpgrade());
    this._flushTimer = new WallTimer(() => this._flush());
    /** @type {BaseTransport|null} the transport in use (open, or being tried) */
    this._current = null;
    /** @type {BaseTransport|null} a better transport being tried while the current one works */
    this._probe = null;
    /** @type {TransportName[]} */
    this._round = [];
    this._roundIndex = 0;
    /** Set by close() (and a final close by the server); cleared by connect(). */
    this._closed = false;
    /** @type {{name: TransportName, since: number, list: string}|null} without storage */
    this._memoryTransport = null;
    this._flushing = false;
    this._topicsDirty = false;
    this._renewedForFailure = false;
    /** @type {string|null} */
    this._tokenValue = this.options.token;
    this._tokenExpiresAt = Infinity;
    /** @type {Promise<string|null>|null} */
    this._tokenFetch = null;
    this._listening = false;
    this._wake = () => this._onWake();
    this._online = () => this._onOnline();
    const sharing = this.options.share && typeof BroadcastChannel !== "undefined";
    /** The group of tabs sharing one connection; null: this tab has its own.
     * @type {TabLink|null} */
    this._link = sharing ? new TabLink(this._shareKey(), this._linkOwner()) : null;
    /** Ids in `_outbox` of the other tabs' messages, sent for them while this tab leads.
     * @type {Set<string>} */
    this._relayed = new Set();
    this._autoConnect = this.options.autoConnect;
    if (this._autoConnect) queueMicrotask(() => this._autoConnect && this.connect());
  }

  // ---- public API -----------------------------------------------------------------------------

  /**
   * Receive a topic's events. The first handler of a topic subscribes on the server, resuming
   * from the topic's cursor; the returned function removes this handler (and unsubscribes
   * with the last one).
   * @param {string} topic
   * @param {TopicHandler} handler
   * @returns {() => void} unsubscribe
   */
  subscribe(topic, handler) {
    if (typeof topic !== "string" || !topic) {
      throw new TypeError("realtime: topic must be a non-empty string");
    }
    if (typeof handler !== "function") throw new TypeError("realtime: handler must be a function");
    let sub = this._subs.get(topic);
    if (!sub) {
      this._subs.set(topic, (sub = new Subscription(topic)));
      this._topicsChanged();
    } else if (sub.refused) {
      sub.refused = null; // asked for again: try again
      this._topicsChanged();
    }
    const entry = sub;
    entry.handlers.add(handler);
    return () => {
      entry.handlers.delete(handler);
      if (entry.handlers.size === 0 && this._subs.get(topic) === entry) {
        this._subs.delete(topic);
        this._topicsChanged();
      }
    };
  }

  /**
   * Send a client message to the server's handler for `event`. Queued while offline and sent
   * in order once connected; retried with the same id after a reconnect (the server runs it
   * once). Resolves with the handler's result; rejects with a {@link RealtimeError}: the
   * server's error (`rejected`, `unknown_event`, …), `timeout`, or `closed`.
   * @param {string} event
   * @param {*} [data]
   * @param {{timeoutMs?: number}} [options] `timeoutMs` default: the `sendTimeoutMs` option
   * @returns {Promise<any>}
   */
  send(event, data, options = {}) {
    if (this._closed) {
      return Promise.reject(new RealtimeError("closed", "The client is closed."));
    }
    const id = `${this._clientId}.${++this._sequence}`;
    const timeout = options.timeoutMs ?? this.options.sendTimeoutMs;
    const push = new Push(id, event, data, timeout, (p) => {
      if (this._outbox.delete(p.id)) {
        p.reject(new RealtimeError("timeout", `No answer within ${timeout} ms.`));
      }
    });
    this._outbox.set(id, push);
    this._flush();
    return push.promise;
  }

  /**
   * Listen to the client's own events; returns the function that removes the listener.
   * - `"state"`: `(state, detail)`, state one of {@link State}; `detail` has `code`/`reason`
   *   of a final close;
   * - `"transport"`: `(name, previous)` when another transport takes over;
   * - `"error"`: `(error)`, a {@link RealtimeError} from the server or a refused topic;
   * - `"notice"`: `(text)`, a message from an operator (the admin console's test message).
   * @param {"state"|"transport"|"error"|"notice"} name
   * @param {Function} listener
   * @returns {() => void} off
   */
  on(name, listener) {
    if (!EVENTS.includes(name)) {
      throw new TypeError(`realtime: unknown event "${name}"`);
    }
    return this._emitter.on(name, listener);
  }

  /** Connect (done automatically unless `autoConnect: false`); after `close()`, reconnect. */
  connect() {
    if (this._started && this.state !== State.CLOSED) return;
    this._autoConnect = false;
    this._closed = false;
    if (!this._started && this.state === State.CONNECTING) {
      // the state it had from construction: listeners added since hear it now
      this._emitter.emit("state", State.CONNECTING, {});
    }
    this._started = true;
    this._setState(State.CONNECTING);
    this._listen(true);
    this._backoff.reset();
    this._link?.start();
    this._startRound();
  }

  /** Close for good: no reconnect; queued `send`s are rejected with `closed`. */
  close() {
    this._autoConnect = false;
    this._link?.stop(null); // another tab takes the connection over
    this._shutdown({ reason: "closed by the page" });
  }

  /** The current cursor of a topic, or null. @param {string} topic @returns {Cursor|null} */
  cursor(topic) {
    return this._cursors.get(topic);
  }

  /**
   * Whether the transport in use has proved that it delivers (a frame after `welcome`, or up
   * for a whole silence limit): only then is it remembered for the tab and an upgrade
   * scheduled. False while connecting and when closed.
   * @returns {boolean}
   */
  get transportProven() {
    return this._current?.proven ?? false;
  }

  /**
   * With tab sharing on, whether this tab holds the shared connection (`"leader"`) or uses
   * another tab's (`"follower"`); null when sharing is off or the client is closed.
   * @returns {"leader"|"follower"|null}
   */
  get role() {
    if (!this._link || this.state === State.CLOSED) return null;
    return this._link.leader ? "leader" : "follower";
  }

  // ---- connecting and falling back -------------------------------------------------------------

  /**
   * A round tries the transports once each: first the one that worked last in this tab, then
   * the others, best first. A transport that fails before it proves itself hands over to the
   * next at once; after a whole failed round, the backoff decides when the next one starts.
   */
  _startRound() {
    this._reconnectTimer.cancel();
    if (this.state === State.CLOSED) return;
    this._setRound(this._remembered()?.name ?? null);
    this._attempt(this._round[0]);
  }

  /** @param {TransportName|null} first */
  _setRound(first) {
    const list = this.options.transports;
    const start = first && list.includes(first) ? list.indexOf(first) : 0;
    this._round = [...list.slice(start), ...list.slice(0, start)];
    this._roundIndex = 0;
  }

  /** @param {TransportName} name */
  _attempt(name) {
    this._debug("trying", name);
    const transport = this._makeTransport(name);
    this._current = transport;
    transport.open();
  }

  /**
   * A new transport of that name, given what it needs and the callbacks it reports through:
   * its only way to the client.
   * @param {TransportName} name @returns {BaseTransport}
   */
  _makeTransport(name) {
    /** @type {BaseTransport} */
    let transport; // the callbacks are called only once it is set
    /** @type {TransportHost} */
    const host = {
      name,
      url: (path) => new URL(path, this._base),
      token: (force) => this._token(force),
      canRenewToken: () => this._canRenewToken(),
      csrf: () => this.options.csrfToken ?? readCookie(this.options.csrfCookieName),
      topics: () => this._wantedTopics(),
      connectTimeoutMs: this.options.connectTimeoutMs,
      pollTimeoutMs: this.options.pollTimeoutMs,
      opened: () => this._transportOpened(transport),
      proven: () => this._transportProven(transport),
      frame: (frame) => this._frame(transport, frame),
      down: (info) => this._transportDown(transport, info),
      accepted: () => {
        this._renewedForFailure = false;
      },
      handled: (cursors) => this._handled(cursors),
      debug: (...args) => this._debug(...args),
      link: this._link,
      switched: () => this._transportSwitched(transport),
    };
    const follows = this._link !== null && !this._link.leader;
    transport = follows ? new TabTransport(host) : new TRANSPORT_CLASSES[name](host);
    return transport;
  }

  /** @param {BaseTransport} transport */
  _transportOpened(transport) {
    if (transport !== this._current) return; // a probe is promoted once proven
    this._renewedForFailure = false;
    const previous = this.transport;
    this.transport = transport.name;
    this._setState(State.OPEN);
    if (previous !== transport.name) this._emitter.emit("transport", transport.name, previous);
    this._flushOwedAcks(transport);
    this._flush();
  }

  /** ACKs owed from before (another connection, or before a reload): send them on this one.
   * @param {BaseTransport} transport */
  _flushOwedAcks(transport) {
    for (const id of this._owedAcks.ids()) transport.ack(id);
  }

  /** @param {BaseTransport} transport */
  _transportProven(transport) {
    if (transport === this._probe) {
      this._promote(transport);
      return;
    }
    if (transport !== this._current) return;
    this._remember(transport.name);
    this._setRound(transport.name);
    this._scheduleUpgrade();
  }

  /**
   * @param {BaseTransport} transport
   * @param {DownInfo & {wasOpen: boolean, openFor: number}} info
   */
  _transportDown(transport, info) {
    this._debug("down", transport.name, info);
    // What the server said of the topics holds whichever transport heard it.
    if (info.refused) {
      const { topic, code, reason } = info.refused;
      this._link?.hub?.refused(topic, code, reason);
      this._refuse(topic, code, reason);
    }
    if (transport === this._current) this._link?.hub?.down();
    const retry = !!info.retry || (!!info.badCursor && this._clearCursors());
    if (transport === this._probe) {
      // The better transport failed: stay, and try again after another upgradeAfterMs.
      this._probe = null;
      if (this._current) this._remember(this._current.name, true);
      this._scheduleUpgrade();
      return;
    }
    if (transport !== this._current) return;
    this._current = null;
    this._probe?.close();
    this._probe = null;
    this._upgradeTimer.cancel();
    if (info.openFor >= TIMING.stableMs) this._backoff.reset();
    const unauthorized = info.code === CLOSE.UNAUTHORIZED || !!info.retryToken;
    const renew = unauthorized && this._canRenewToken() && !this._renewedForFailure;
    const final =
      (!retry && info.final) ||
      info.code === CLOSE.NORMAL ||
      info.code === CLOSE.PROTOCOL_ERROR ||
      info.code === CLOSE.DISCONNECTED ||
      (unauthorized && !renew);
    if (final) {
      if (info.error) this._emitter.emit("error", info.error);
      this._shutdown({ code: info.code, reason: info.reason });
      return;
    }
    if (this.state === State.OPEN) this._setState(State.RECONNECTING);
    if (renew || info.code === CLOSE.TOKEN_EXPIRED) {
      // The token was refused or ran out: fetch a fresh one and go again at once.
      this._renewedForFailure = renew;
      this._tokenExpiresAt = 0;
      this._attempt(transport.name);
      return;
    }
    if (retry) {
      this._attempt(transport.name); // the cause was dealt with (a topic or cursor dropped)
      return;
    }
    if (info.code === CLOSE.SERVICE_RESTART || info.code === CLOSE.RESTART) {
      // The node is going away (draining: it sent each client off at its own moment):
      // reconnect at once, through the load balancer to another node, from the cursors.
      this._backoff.reset();
      const delay = Math.random() * TIMING.restartJitterMs;
      this._debug("service restart: reconnecting in", Math.round(delay), "ms");
      this._reconnectTimer.in(delay);
      return;
    }
    if (info.retryAfterMs || info.code === CLOSE.TRY_AGAIN_LATER) {
      // The node is busy and said when to come back: after that hint plus a jitter as long
      // as the hint at most, so the clients it turned away together do not return together
      // (and never sooner than the backoff). The same transport again: it is not blocked.
      const hint = info.retryAfterMs || TIMING.busyHintMs;
      const delay = Math.max(hint + Math.random() * hint, this._backoff.next());
      this._debug("server busy: reconnecting in", Math.round(delay), "ms");
      this._reconnectTimer.in(delay);
      return;
    }
    if (transport.proven) {
      if (info.silent) this._startRound(); // maybe a dead link: a new connection at once
      else this._scheduleReconnect(); // a working connection broke: after the backoff
      return;
    }
    // The transport never showed it delivers: the next one, now.
    this._roundIndex += 1;
    if (this._roundIndex < this._round.length) this._attempt(this._round[this._roundIndex]);
    else this._scheduleReconnect();
  }

  _scheduleReconnect() {
    const delay = this._backoff.next();
    this._debug("reconnecting in", Math.round(delay), "ms");
    this._reconnectTimer.in(delay);
  }

  /** @param {{code?: number, reason?: string}} detail */
  _shutdown(detail) {
    this._link?.stop(detail); // the other tabs close too
    this._reconnectTimer.cancel();
    this._upgradeTimer.cancel();
    this._flushTimer.cancel();
    for (const transport of [this._current, this._probe]) transport?.close();
    this._current = this._probe = null;
    this.transport = null;
    this._listen(false);
    const pushes = [...this._outbox.values()];
    this._outbox.clear();
    for (const push of pushes) {
      push.timer.cancel();
      push.reject(new RealtimeError("closed", detail.reason || "The connection was closed."));
    }
    this._closed = true;
    this._setState(State.CLOSED, detail);
  }

  /** @param {StateName} next @param {object} [detail] */
  _setState(next, detail = {}) {
    if (this.state === next) return;
    /** @type {Record<StateName, StateName[]>} */
    const allowed = {
      connecting: ["open", "closed"],
      open: ["reconnecting", "closed"],
      reconnecting: ["open", "closed"],
      closed: ["connecting"],
    };
    if (!allowed[this.state].includes(next)) {
      throw new Error(`realtime: expected a state after "${this.state}", got "${next}"`);
    }
    this.state = next;
    this._emitter.emit("state", next, detail);
  }

  // ---- remembering the working transport and upgrading ------------------------------------------

  /**
   * The transport that worked last in this tab for this very list of transports (what a
   * client pinned to one transport learned says nothing about the others), and since when.
   * @returns {{name: TransportName, since: number}|null}
   */
  _remembered() {
    const list = this.options.transports.join(",");
    let value = this._memoryTransport;
    try {
      value = JSON.parse(this._storageRef?.getItem(this._memoryKey) ?? "null") ?? value;
    } catch {
      // nothing usable stored
    }
    if (!value || value.list !== list || !this.options.transports.includes(value.name)) {
      return null;
    }
    return Number.isFinite(value.since) ? value : null;
  }

  /**
   * Remember the transport that works; the best of the list needs no remembering.
   * @param {TransportName} name @param {boolean} [again] restart the wait before an upgrade
   */
  _remember(name, again = false) {
    const list = this.options.transports.join(",");
    const current = this._remembered();
    const since = !again && current?.name === name ? current.since : Date.now();
    const best = this.options.transports[0] === name;
    this._memoryTransport = best ? null : { name, since, list };
    try {
      if (best) this._storageRef?.removeItem(this._memoryKey);
      else this._storageRef?.setItem(this._memoryKey, JSON.stringify(this._memoryTransport));
    } catch {
      // memory only
    }
  }

  _scheduleUpgrade() {
    const current = this._current;
    if (!current || this._probe || current instanceof TabTransport) return; // the leader's job
    const list = this.options.transports;
    if (list.indexOf(current.name) <= 0) return;
    const since = this._remembered()?.since ?? Date.now();
    this._upgradeTimer.at(since + this.options.upgradeAfterMs);
  }

  /** Try the best transport while the current one keeps working; switch once it proves. */
  _tryUpgrade() {
    const current = this._current;
    if (!current || !current.proven || this._probe || this.state !== State.OPEN) return;
    const best = this.options.transports[0];
    if (best === current.name) return;
    this._debug("upgrade: trying", best);
    const probe = this._makeTransport(best);
    this._probe = probe;
    probe.open();
  }

  /** @param {BaseTransport} probe */
  _promote(probe) {
    const old = this._current;
    this._probe = null;
    this._current = probe;
    old?.close();
    const previous = this.transport;
    this.transport = probe.name;
    this._remember(probe.name);
    this._setRound(probe.name);
    this._emitter.emit("transport", probe.name, previous);
    this._scheduleUpgrade();
    this._flushOwedAcks(probe);
    this._flush();
  }

  // ---- frames -----------------------------------------------------------------------------

  /**
   * A frame from a transport. Frames from a transport that is neither current nor being
   * probed are ignored, except answers to client messages (always safe to apply).
   * @param {BaseTransport} transport @param {Frame} frame
   */
  _frame(transport, frame) {
    if (frame.type === "ack") {
      this._answer(frame);
      return;
    }
    if (frame.type === "acked") {
      this._owedAcks.confirm(frame.ids); // from any transport: the server has them
      return;
    }
    if (transport !== this._current && transport !== this._probe) return;
    if (this._link?.hub?.frame(frame)) return; // the other tabs' business only
    switch (frame.type) {
      case "message":
        this._message(transport, frame);
        break;
      case "subscribed": {
        if (typeof frame.epoch === "string" && Number.isInteger(frame.offset) && !frame.recovered) {
          this._cursors.advance(frame.topic, frame.epoch, frame.offset);
        }
        const sub = this._subs.get(frame.topic);
        sub?.dispatch({ type: "subscribed", topic: frame.topic, recovered: !!frame.recovered });
        break;
      }
      case "reset": {
        if (typeof frame.epoch === "string" && Number.isInteger(frame.offset)) {
          this._cursors.set(frame.topic, { epoch: frame.epoch, offset: frame.offset });
        }
        this._subs.get(frame.topic)?.dispatch({
          type: "reset",
          topic: frame.topic,
          reason: frame.reason,
          epoch: frame.epoch,
          offset: frame.offset,
        });
        break;
      }
      case "token-expiring":
        this._renewToken(transport);
        break;
      case "notice":
        this._emitter.emit("notice", String(frame.text ?? ""));
        break;
      case "error": {
        const error = new RealtimeError(frame.code, frame.reason, { ref: frame.ref });
        if (frame.ref && this._subs.has(frame.ref) && REFUSALS.includes(frame.code)) {
          this._refuse(frame.ref, frame.code, frame.reason);
        } else {
          this._emitter.emit("error", error);
        }
        break;
      }
      default:
        break; // welcome, unsubscribed, and types of later versions
    }
  }

  /** @param {BaseTransport} transport @param {Frame} frame */
  _message(transport, frame) {
    const { topic, id, epoch, offset } = frame;
    // Acknowledge even a duplicate: its redelivery means the server missed the first ACK.
    // Kept until the server confirms it, across reconnects and reloads.
    if (frame.ack && typeof id === "string") {
      this._owedAcks.add(id);
      transport.ack(id);
    }
    if (typeof id === "string" && this._seen.has(id)) return;
    const positioned = typeof epoch === "string" && Number.isInteger(offset);
    if (typeof id === "string") this._seen.add(id);
    if (positioned && this._cursors.covers(topic, epoch, offset)) return; // replayed twice
    try {
      this._subs.get(topic)?.dispatch({
        type: "message",
        topic,
        event: frame.event,
        data: frame.data,
        id,
        epoch,
        offset,
        ack: !!frame.ack,
      });
    } finally {
      // handled: the position moves on (on long-poll, that is the acknowledgement)
      if (positioned) this._cursors.advance(topic, epoch, offset);
    }
  }

  /** @param {Map<string, Cursor>} cursors positions handled (returned by a long-poll) */
  _handled(cursors) {
    this._link?.hub?.handled(cursors);
    for (const [topic, cursor] of cursors) {
      if (this._subs.has(topic)) this._cursors.advance(topic, cursor.epoch, cursor.offset);
    }
  }

  /** @param {string|Record<string, Cursor>} cursors */
  _seedCursors(cursors) {
    const entries =
      typeof cursors === "string" ? CursorStore.parse(cursors) : new Map(Object.entries(cursors));
    for (const [topic, cursor] of entries) {
      if (cursor && typeof cursor.epoch === "string" && Number.isInteger(cursor.offset)) {
        this._cursors.set(topic, cursor);
      }
    }
  }

  /** Forget every topic's position (a cursor the server could not parse). */
  _clearCursors() {
    let any = false;
    for (const topic of this._subs.keys()) {
      if (this._cursors.get(topic)) {
        this._cursors.delete(topic);
        any = true;
      }
    }
    return any;
  }

  /** @param {string} topic @param {string} code @param {string} reason */
  _refuse(topic, code, reason) {
    const sub = this._subs.get(topic);
    if (!sub) return;
    sub.refused = code;
    this._emitter.emit("error", new RealtimeError(code, reason, { ref: topic }));
    sub.dispatch({ type: "error", topic, code, reason });
    this._topicsChanged();
  }

  /** @returns {Map<string, Cursor|null>} topics to ask the server for, with their positions */
  _wantedTopics() {
    const topics = new Map();
    for (const [topic, sub] of this._subs) {
      if (!sub.refused) topics.set(topic, this._cursors.get(topic));
    }
    this._link?.hub?.merge(topics); // the other tabs' topics, from their earliest positions
    return topics;
  }

  _topicsChanged() {
    if (this._topicsDirty) return;
    this._topicsDirty = true;
    queueMicrotask(() => {
      // gathered: several subscribe() calls in a row open one new SSE stream, not several
      this._topicsDirty = false;
      this._current?.topicsChanged();
      this._probe?.topicsChanged();
    });
  }

  // ---- client messages --------------------------------------------------------------------

  /** @param {Frame} frame an `ack` answering a `send` */
  _answer(frame) {
    const push = this._outbox.get(frame.id);
    if (!push) return;
    if (frame.error?.code === WIRE.inProgress) {
      // Not the answer: another attempt with this id still runs the handler. The WebSocket
      // resends it on its timer (`sendRetryMs` after the last send).
      this._flush();
      return;
    }
    this._outbox.delete(frame.id);
    push.timer.cancel();
    if (frame.error) {
      const { code, reason } = frame.error;
      push.reject(new RealtimeError(code ?? "error", reason ?? "The server refused the message."));
    } else {
      push.resolve(frame.result);
    }
  }

  /** Send queued client messages in order on the current transport. */
  async _flush() {
    if (this._flushing) return;
    this._flushing = true;
    this._flushTimer.cancel();
    try {
      for (;;) {
        const transport = this._current;
        if (!transport || !transport.opened || transport.closed) return;
        const now = Date.now();
        let next = null;
        let waiting = false;
        for (const push of this._outbox.values()) {
          if (push.sentVia !== transport) {
            next = push;
            break;
          }
          if (transport.resends && now - push.sentAt >= TIMING.sendRetryMs) {
            next = push; // unanswered for a while: send again, same id
            break;
          }
          waiting = true;
        }
        if (!next) {
          if (waiting && transport.resends) this._flushTimer.in(TIMING.sendRetryMs);
          return;
        }
        next.sentVia = transport;
        next.sentAt = now;
        const handed = await transport.sendPush(next);
        if (!handed) {
          next.sentVia = null;
          if (this._outbox.has(next.id)) this._flushTimer.in(TIMING.postRetryMs);
          return;
        }
      }
    } finally {
      this._flushing = false;
    }
  }

  // ---- tokens -----------------------------------------------------------------------------

  _canRenewToken() {
    return !!this.options.tokenUrl;
  }

  /**
   * The token to authenticate with, or null for cookie auth. Fetched from `tokenUrl` when
   * missing or about to expire (or when `force`d).
   * @param {boolean} [force]
   * @returns {Promise<string|null>}
   */
  async _token(force = false) {
    const url = this.options.tokenUrl;
    if (!url) return this._tokenValue;
    const fresh = this._tokenValue && Date.now() < this._tokenExpiresAt - TIMING.tokenMarginMs;
    if (fresh && !force) return this._tokenValue;
    if (!this._tokenFetch) {
      this._tokenFetch = (async () => {
        let response;
        try {
          response = await fetch(url, {
            credentials: "same-origin",
            cache: "no-store",
            headers: { Accept: "application/json" },
          });
        } catch {
          throw new RealtimeError("token_unavailable", `Could not fetch ${url}.`);
        }
        if (!response.ok) {
          const error = await errorBody(response);
          // 401/403: not logged in any more; retrying will not help
          const final = response.status === 401 || response.status === 403;
          throw new RealtimeError(error.code, error.reason, { status: response.status, final });
        }
        const body = await response.json();
        this._tokenValue = body.token;
        const lifetime = Number(body.expires_in_ms);
        this._tokenExpiresAt = Number.isFinite(lifetime) ? Date.now() + lifetime : Infinity;
        return this._tokenValue;
      })().finally(() => {
        this._tokenFetch = null;
      });
    }
    return this._tokenFetch;
  }

  /** The server says the token expires soon: renew it on the open connection.
   * @param {BaseTransport} transport */
  async _renewToken(transport) {
    if (!this._canRenewToken()) {
      this._emitter.emit(
        "error",
        new RealtimeError("token_expiring", "The token expires soon and there is no tokenUrl."),
      );
      return;
    }
    try {
      const token = await this._token(true);
      if (token && !transport.closed) transport.reauth(token);
    } catch (error) {
      this._emitter.emit("error", error);
    }
  }

  // ---- page lifecycle ---------------------------------------------------------------------

  /** @param {boolean} on */
  _listen(on) {
    if (typeof window === "undefined" || on === this._listening) return;
    this._listening = on;
    const method = on ? "addEventListener" : "removeEventListener";
    window[method]("online", this._online);
    window[method]("focus", this._wake);
    window[method]("pageshow", this._wake);
    document[method]("visibilitychange", this._wake);
  }

  /** The tab became visible (or focused): timers may have slept, so look at every deadline. */
  _onWake() {
    if (typeof document !== "undefined" && document.visibilityState === "hidden") return;
    this._checkDeadlines();
    if (this._reconnectTimer.pending) this._startRound(); // do not wait out the backoff
  }

  /** The network is back: reconnect now instead of waiting out the backoff. */
  _onOnline() {
    this._checkDeadlines();
    if (this._reconnectTimer.pending) {
      this._backoff.reset();
      this._startRound();
    }
  }

  _checkDeadlines() {
    this._current?.check();
    this._probe?.check();
    this._upgradeTimer.check();
    this._flushTimer.check();
    for (const push of [...this._outbox.values()]) push.timer.check();
  }

  // ---- sharing one connection between tabs ----------------------------------------------------

  /** The tab group's key: the endpoint, the transports and the identity, so that a tab never
   * joins a connection made for another user or configuration. */
  _shareKey() {
    const { shareKey, token, tokenUrl, transports } = this.options;
    const identity =
      shareKey ?? (token ? `token:${hashText(token)}` : tokenUrl ? `url:${tokenUrl}` : "cookie");
    return `${this._base.href}|${transports.join(",")}|${identity}`;
  }

  _linkOwner() {
    return {
      roleChanged: () => this._roleChanged(),
      hubHost: () => this._hubHost(),
      /** @param {...*} args */
      debug: (...args) => this._debug(...args),
    };
  }

  /** @returns {HubHost} */
  _hubHost() {
    return {
      topicsChanged: () => this._topicsChanged(),
      relay: (frame, answer) => this._relay(frame, answer),
      own: (topic) => {
        const sub = this._subs.get(topic);
        return sub && !sub.refused ? this._cursors.get(topic) : undefined;
      },
      state: () => ({ state: this.state, transport: this.transport }),
      onState: (listener) => {
        const offs = [
          this._emitter.on("state", (/** @type {string} */ _state, /** @type {object} */ detail) =>
            listener(detail ?? {}),
          ),
          this._emitter.on("transport", () => listener({})),
        ];
        return () => offs.forEach((off) => off());
      },
    };
  }

  /** This tab started or stopped leading: the transport in use is of the wrong kind now. */
  _roleChanged() {
    if (this.state === State.CLOSED || !this._link) return;
    const leading = this._link.leader;
    const current = this._current;
    if (current && current instanceof TabTransport !== leading) return; // the right kind
    this._probe?.close();
    this._probe = null;
    this._upgradeTimer.cancel();
    if (!leading) {
      // The other tabs' messages are theirs to send again through the next leader.
      for (const id of this._relayed) {
        this._outbox.get(id)?.timer.cancel();
        this._outbox.delete(id);
      }
      this._relayed.clear();
    }
    if (current) {
      current.close();
      this._current = null;
      if (this.state === State.OPEN) this._setState(State.RECONNECTING);
    }
    // A tab taking over lets the others tell their positions first.
    this._reconnectTimer.in(leading && this._link.followed ? TABS.gatherMs : 0);
  }

  /**
   * Send another tab's client message on this tab's connection, with its own id (so a retry
   * through the next leader is run once), and hand the server's answer back. Timeouts and
   * `closed` are the other tab's to decide.
   * @param {Frame} frame @param {(ack: Frame) => void} answer
   */
  _relay(frame, answer) {
    if (this._closed) return;
    const id = String(frame.id);
    const existing = this._outbox.get(id);
    const push =
      existing ??
      new Push(id, frame.event, frame.data, this.options.sendTimeoutMs, (p) => {
        this._outbox.delete(p.id);
        this._relayed.delete(p.id);
      });
    this._relayed.add(id);
    push.resolve = (result) => {
      this._relayed.delete(id);
      answer({ type: "ack", id, result });
    };
    push.reject = (error) => {
      this._relayed.delete(id);
      const { code, reason } = /** @type {RealtimeError} */ (error);
      if (code === "closed" || code === "timeout") return;
      answer({ type: "ack", id, error: { code, reason } });
    };
    if (existing) return;
    this._outbox.set(id, push);
    this._flush();
  }

  /** @param {BaseTransport} transport */
  _transportSwitched(transport) {
    if (transport !== this._current) return;
    const previous = this.transport;
    this.transport = transport.name;
    this._remember(transport.name);
    this._emitter.emit("transport", transport.name, previous);
  }

  // ---- plumbing ---------------------------------------------------------------------------

  /** @returns {StorageLike|null} */
  _storage() {
    const option = this.options.storage;
    if (option !== "session") return option;
    try {
      return typeof sessionStorage === "undefined" ? null : sessionStorage;
    } catch {
      return null; // storage blocked (e.g. third-party frame)
    }
  }

  /** @param {...*} args */
  _debug(...args) {
    if (this.options.debug) console.debug("realtime:", ...args);
  }
}

/** The names `client.on()` accepts. */
const EVENTS = Object.freeze(["state", "transport", "error", "notice"]);

/** Error codes that refuse one topic (the others stay subscribed). */
const REFUSALS = Object.freeze(["forbidden", "invalid_topic", "too_many_topics"]);

export default Realtime;
