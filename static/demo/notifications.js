// The notifications page: new notifications appear at the top of the list as they arrive,
// each row says whether the server has recorded its delivery (the browser's ACK), and the
// button sends a test notification through the realtime connection (`client.send`).

import { client, timeElement, userTopic } from "./site.js";

const list = document.querySelector("[data-notes]");
const result = document.querySelector("[data-test-result]");
const form = document.querySelector("[data-test-form]");

function row(note) {
  const item = document.createElement("li");
  item.className = "note note--new note--arrived";
  item.dataset.note = note.id;
  const head = document.createElement("div");
  head.className = "note__head";
  const title = document.createElement("strong");
  title.className = "note__title";
  title.textContent = note.title;
  const time = timeElement(note.created);
  time.className = "note__time";
  head.append(title, time);
  item.append(head);
  if (note.body) {
    const body = document.createElement("p");
    body.className = "note__body";
    body.textContent = note.body;
    item.append(body);
  }
  const status = document.createElement("span");
  status.className = "note__status";
  status.dataset.delivered = "no";
  status.textContent = "received; acknowledging…";
  item.append(status);
  return item;
}

function markDelivered(id, when) {
  const status = list.querySelector(`[data-note="${CSS.escape(String(id))}"] .note__status`);
  if (!status) return;
  status.dataset.delivered = "yes";
  status.replaceChildren("delivered ", timeElement(when, { timeOnly: true }));
}

client.subscribe(userTopic, (event) => {
  if (event.type === "reset") {
    location.reload(); // some notifications could not be replayed: re-read the list
    return;
  }
  if (event.type !== "message") return;
  if (event.event === "notification") {
    list.querySelector("[data-notes-empty]")?.remove();
    if (!list.querySelector(`[data-note="${CSS.escape(String(event.data.id))}"]`)) {
      list.prepend(row(event.data));
    }
  } else if (event.event === "delivered") {
    markDelivered(event.data.id, event.data.delivered_at);
  }
});

form.addEventListener("submit", async (submit) => {
  submit.preventDefault();
  const button = form.querySelector("button");
  button.disabled = true;
  try {
    const answer = await client.send("notifications.test");
    result.textContent = `Sent as notification #${answer.id}: the server's handler answered.`;
  } catch (error) {
    result.textContent = `Not sent: ${error.reason ?? error}`;
  } finally {
    button.disabled = false;
  }
});
