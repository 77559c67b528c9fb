// Every demo page: one realtime client for the page (realtime's own realtime.js), the status
// bar (connection state and transport, live; after an operator's disconnect, its reason and a
// Reconnect button), the transport switch, the notification bell with its toasts, and the
// operator's test messages (the admin console's `notice`) as toasts. Page scripts import `client` from here, so a page has one connection.
//
// The switch: `?transport=websocket|sse|longpoll` pins this tab to one transport (remembered
// in sessionStorage until `?transport=auto`); without it the client picks, falling back from
// WebSocket to SSE to long-poll when one does not get through.

import { Realtime, Transport } from "../realtime/realtime.js";

const CHOICE_KEY = "demo.transport";
const TRANSPORT_LABELS = { websocket: "WebSocket", sse: "SSE", longpoll: "long-poll" };

function transportChoice() {
  const wanted = new URLSearchParams(location.search).get("transport");
  try {
    if (wanted === "auto") sessionStorage.removeItem(CHOICE_KEY);
    else if (Object.values(Transport).includes(wanted)) {
      sessionStorage.setItem(CHOICE_KEY, wanted);
    }
    return sessionStorage.getItem(CHOICE_KEY);
  } catch {
    return Object.values(Transport).includes(wanted) ? wanted : null;
  }
}

const choice = transportChoice();
export const client = Realtime.fromPage("realtime-config", choice ? { transports: [choice] } : {});
window.realtimeClient = client; // for poking at it from the console

// ---- times in the reader's locale ---------------------------------------------------------

const dateTime = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "medium" });
const timeOnly = new Intl.DateTimeFormat(undefined, { timeStyle: "medium" });

/** Show `<time datetime data-local>` (or `data-local="time"`) in the reader's locale. */
export function formatTimes(root = document) {
  for (const el of root.querySelectorAll("time[datetime][data-local]")) {
    const when = new Date(el.dateTime);
    if (Number.isNaN(when.getTime())) continue;
    el.textContent = (el.dataset.local === "time" ? timeOnly : dateTime).format(when);
  }
}

/** A `<time>` element for an ISO date, formatted like the rest of the page. */
export function timeElement(iso, { timeOnly: short = false } = {}) {
  const el = document.createElement("time");
  el.dateTime = iso;
  el.dataset.local = short ? "time" : "";
  formatTimes({ querySelectorAll: () => [el] });
  return el;
}

formatTimes();

// ---- status bar -------------------------------------------------------------------------------

const status = {
  conn: document.querySelector("[data-rt-conn]"),
  state: document.querySelector("[data-rt-state]"),
  via: document.querySelector("[data-rt-via]"),
  transport: document.querySelector("[data-rt-transport]"),
  closed: document.querySelector("[data-rt-closed]"),
  reason: document.querySelector("[data-rt-reason]"),
  reconnect: document.querySelector("[data-rt-reconnect]"),
};

function renderStatus() {
  status.conn.dataset.state = client.state;
  status.state.textContent = client.state;
  status.transport.textContent = client.transport ? TRANSPORT_LABELS[client.transport] : "…";
  status.via.hidden = client.state === "closed";
}

/** The server closed for good (`detail.code`, e.g. 4403 from an operator): say why, and offer
 * to connect again; the client does not reconnect by itself after that. */
function renderClosed(state, detail = {}) {
  const closedByServer = state === "closed" && detail.code !== undefined;
  status.closed.hidden = !closedByServer;
  if (closedByServer) status.reason.textContent = `— ${detail.reason || `code ${detail.code}`}`;
}

client.on("state", (state, detail) => {
  renderStatus();
  renderClosed(state, detail);
});
client.on("transport", renderStatus);
renderStatus();
status.reconnect.addEventListener("click", () => client.connect());

for (const link of document.querySelectorAll("[data-transport-choice]")) {
  const value = link.dataset.transportChoice;
  const url = new URL(location.href);
  url.searchParams.set("transport", value);
  link.href = url.pathname + url.search;
  if ((choice ?? "auto") === value) link.setAttribute("aria-current", "true");
}

// ---- the bell and its toasts ------------------------------------------------------------------

const bell = document.querySelector("[data-bell-count]");
const toasts = document.querySelector("[data-toasts]");
export const userTopic = client.topics.find((topic) => topic.startsWith("user:")) ?? null;

function setUnread(count) {
  if (!bell) return;
  bell.textContent = String(count);
  bell.hidden = count === 0;
}

function toast(title, body) {
  const item = document.createElement("div");
  item.className = "toast";
  const heading = document.createElement("strong");
  heading.textContent = title;
  item.append(heading);
  if (body) {
    const text = document.createElement("p");
    text.textContent = body;
    item.append(text);
  }
  toasts.append(item);
  setTimeout(() => item.classList.add("toast--leaving"), 4500);
  setTimeout(() => item.remove(), 5000);
}

// An operator's test message from the admin console (a `notice` frame).
client.on("notice", (text) => toast("Message from the operators", text));

/** After a `reset` the count may be off: ask the server, the source of truth. */
async function reloadUnread() {
  try {
    const response = await fetch("/notifications/unread/", { credentials: "same-origin" });
    if (response.ok) setUnread((await response.json()).unread);
  } catch {
    // the next page load shows the right count
  }
}

if (userTopic) {
  const onNotificationsPage = document.querySelector("[data-notes]") !== null;
  client.subscribe(userTopic, (event) => {
    if (event.type === "reset") reloadUnread();
    if (event.type !== "message" || event.event !== "notification") return;
    // on the notifications page the list shows it (and opening that page marks all read)
    if (!onNotificationsPage) setUnread(Number(bell?.textContent || 0) + 1);
    toast(event.data.title, event.data.body);
  });
}
