// The order page: the order's status and an update log, live. The connection, cursors,
// ACKs, duplicates, reconnects and transport fallback are realtime.js's business (the page's
// one client comes from site.js); this file only turns the topic's events into the page.
//
// - `message` "order.updated" (realtime.publish_model in orders/realtime_topics.py): update the badge and the progress, add a line to the log;
// - `reset` (the server could not replay what this page missed): re-read the order;
// - `subscribed` after a break: note in the log whether the missed updates were replayed.

import { client } from "./site.js";

const topic = client.topics.find((name) => name.startsWith("order."));

const ui = {
  log: document.querySelector("[data-log]"),
  logEmpty: document.querySelector("[data-log-empty]"),
  state: () => document.querySelector("[data-order-state]"),
};

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

// ---- the topic ---------------------------------------------------------------------------------

let subscribedOnce = false;
let outage = false; // one log line per outage, not one per failed attempt

client.on("state", (state) => {
  if (state === "reconnecting" && subscribedOnce && !outage) {
    outage = true;
    addLog("Connection lost; reconnecting…", { note: true });
  }
});

client.subscribe(topic, (event) => {
  switch (event.type) {
    case "message":
      if (event.event !== "order.updated") break;
      applyStatus(event.data);
      // Stamped with the change's own time: a replayed update may be minutes old.
      addLog(`Status changed to ${event.data.label ?? event.data.status}.`, {
        at: new Date(event.data.updated_at),
      });
      break;
    case "subscribed":
      if (subscribedOnce && outage) {
        const how = event.recovered ? "caught up on what this page missed" : "live from now";
        addLog(`Reconnected; ${how}.`, { note: true });
      }
      subscribedOnce = true;
      outage = false;
      break;
    case "reset":
      addLog("Some updates could not be replayed; the order was re-read.", { note: true });
      reloadState();
      break;
    case "error":
      addLog(`Cannot follow this order: ${event.reason}`, { note: true });
      break;
    default:
      break;
  }
});

formatTimes(document);
