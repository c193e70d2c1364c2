// streamwork console: the little script the pages use. No framework, nothing from a CDN;
// every value from the server is set with textContent, never parsed as HTML of ours.
"use strict";

// Sections with data-refresh="N" are fetched again every N seconds and swapped in place.
function refreshSections() {
  for (const section of document.querySelectorAll("[data-refresh]")) {
    const every = Number(section.dataset.refresh) * 1000;
    setInterval(async () => {
      if (document.hidden) return;
      try {
        const response = await fetch(location.href, { credentials: "same-origin" });
        if (!response.ok) return;
        const page = new DOMParser().parseFromString(await response.text(), "text/html");
        const fresh = page.getElementById(section.id);
        if (fresh) section.replaceChildren(...fresh.childNodes);
      } catch (error) {
        // Redis or the console is away for a moment: keep what is shown.
      }
    }, every);
  }
}

// Forms with data-confirm ask first.
function confirmForms() {
  for (const form of document.querySelectorAll("form[data-confirm]")) {
    form.addEventListener("submit", (event) => {
      if (!window.confirm(form.dataset.confirm)) event.preventDefault();
    });
  }
}

// A "select all" box in a table header ticks every row's box.
function selectAll() {
  for (const box of document.querySelectorAll("input.select-all")) {
    box.addEventListener("change", () => {
      for (const row of box.closest("table").querySelectorAll("tbody input[type=checkbox]")) {
        row.checked = box.checked;
      }
    });
  }
}

function cell(text) {
  const td = document.createElement("td");
  td.textContent = text;
  return td;
}

// The events page: new events arrive over server-sent events, newest on top.
function liveEvents() {
  const table = document.getElementById("events");
  if (!table) return;
  const state = document.getElementById("stream-state");
  const body = table.querySelector("tbody");
  const source = new EventSource(table.dataset.stream);
  source.onopen = () => { state.textContent = "live"; };
  source.onerror = () => { state.textContent = "reconnecting…"; };
  source.onmessage = (message) => {
    const e = JSON.parse(message.data);
    const row = document.createElement("tr");
    const link = document.createElement("a");
    link.href = table.dataset.base + "/tasks/" + encodeURIComponent(e.message_id);
    link.textContent = e.message_id;
    const message_cell = document.createElement("td");
    message_cell.append(link);
    const detail = [
      e.progress === null ? "" : Math.round(e.progress * 100) + "%",
      e.note || "",
      e.error || "",
    ].join(" ").trim();
    row.append(cell(e.time.slice(11, 23)), cell(e.queue), cell(e.event), message_cell,
      cell(e.task), cell(String(e.attempt)), cell(e.worker || ""), cell(detail));
    row.classList.add("new");
    body.prepend(row);
    while (body.rows.length > 500) body.deleteRow(-1);
  };
}

document.addEventListener("DOMContentLoaded", () => {
  refreshSections();
  confirmForms();
  selectAll();
  liveEvents();
});
