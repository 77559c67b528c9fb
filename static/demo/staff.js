// The staff page: the table of recent notifications follows `notifications.staff`, so a row
// appears when a notification is sent and turns "delivered" when the user's browser ACKs it.

import { client, timeElement } from "./site.js";

const rows = document.querySelector("[data-staff-rows]");

function cell(content) {
  const td = document.createElement("td");
  td.append(content);
  return td;
}

function badge(delivered) {
  const span = document.createElement("span");
  span.className = delivered ? "badge badge--delivered badge--flash" : "badge";
  span.append(delivered ? timeElement(delivered, { timeOnly: true }) : "pending");
  return span;
}

client.subscribe("notifications.staff", (event) => {
  if (event.type === "reset") {
    location.reload();
    return;
  }
  if (event.type !== "message") return;
  const note = event.data;
  let tr = rows.querySelector(`[data-row="${CSS.escape(String(note.id))}"]`);
  if (!tr && event.event === "created") {
    tr = document.createElement("tr");
    tr.dataset.row = note.id;
    const delivered = document.createElement("td");
    delivered.dataset.deliveredCell = "";
    delivered.append(badge(note.delivered_at));
    const sent = timeElement(note.created, { timeOnly: true });
    tr.append(cell(note.user), cell(note.title), cell(sent));
    tr.append(delivered);
    rows.prepend(tr);
  } else if (tr && event.event === "delivered") {
    tr.querySelector("[data-delivered-cell]").replaceChildren(badge(note.delivered_at));
  }
});
