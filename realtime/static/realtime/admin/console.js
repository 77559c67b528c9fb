/*
 * The realtime admin console: auto-refresh and the live chart. No dependencies.
 *
 * Every REFRESH_MS (data-refresh-ms on #rt-console) the page fetches its JSON twin
 * (data-poll-url plus the page's own query string) and:
 * - feeds the cluster-wide totals to two sparklines: connections, and messages out per
 *   second (the difference of the total between two polls, divided by the time between
 *   them: the server sends counters, the page derives rates);
 * - replaces the filter choices, and the rows and paginator unless refresh is paused.
 * Refresh pauses while the operator has rows selected (so a selection is never pulled from
 * under them) or pressed Pause, and while the tab is hidden.
 */
(function () {
  "use strict";

  const POINTS = 60; // samples kept per sparkline
  const WIDTH = 200; // the sparklines' viewBox
  const HEIGHT = 40;

  const PEAK = 0.7; // the largest value is drawn at 70 % of the height, never at the top edge

  function sparkline(svg, samples) {
    // until POINTS samples have come, the ones there are span the whole width
    const values = samples.length === 1 ? [samples[0], samples[0]] : samples;
    const max = Math.max(1, ...values);
    const step = WIDTH / Math.max(1, values.length - 1);
    const points = values.map((value, index) => {
      const y = HEIGHT - 2 - (value / max) * (HEIGHT - 4) * PEAK;
      return `${(index * step).toFixed(1)},${y.toFixed(1)}`;
    });
    svg.querySelector("polyline").setAttribute("points", points.join(" "));
    const area = values.length ? `${points.join(" ")} ${WIDTH},${HEIGHT} 0,${HEIGHT}` : "";
    svg.querySelector("polygon").setAttribute("points", area);
    svg.dataset.points = String(samples.length);
    svg.dataset.max = String(max);
  }

  function formatRate(rate) {
    if (rate === null) return "\u2013";
    return rate >= 10 ? rate.toFixed(0) : rate.toFixed(1);
  }

  function start(root) {
    const pollUrl = root.dataset.pollUrl;
    const refreshMs = Number(root.dataset.refreshMs) || 5000;
    const rows = document.getElementById("rt-rows");
    const paginator = document.getElementById("rt-paginator");
    const filters = document.getElementById("rt-filters");
    const status = document.getElementById("rt-status");
    const refresh = status.parentElement;
    const pauseButton = document.getElementById("rt-pause");
    const toggle = document.getElementById("action-toggle");
    const counter = document.getElementById("rt-selected");
    const samples = []; // {time, connections, messagesOut, rate}
    let manualPause = false;
    let timer = null;
    let inFlight = false;
    let lastUpdate = null;

    function checkboxes() {
      return Array.from(rows.querySelectorAll("input.action-select"));
    }

    function selectedCount() {
      return checkboxes().filter((box) => box.checked).length;
    }

    function paused() {
      return manualPause || selectedCount() > 0;
    }

    function showStatus(failure) {
      refresh.classList.toggle("rt-failed", Boolean(failure));
      refresh.classList.toggle("rt-paused", !failure && paused());
      root.dataset.paused = paused() ? "true" : "false";
      if (failure) {
        status.textContent = `Refresh failed: ${failure}`;
      } else if (manualPause) {
        status.textContent = "Paused";
      } else if (paused()) {
        status.textContent = "Paused while connections are selected";
      } else {
        const when = lastUpdate ? `Updated ${lastUpdate.toLocaleTimeString()}; ` : "";
        status.textContent = `${when}refreshes every ${refreshMs / 1000} s`;
      }
      pauseButton.textContent = manualPause ? "Resume" : "Pause";
      pauseButton.setAttribute("aria-pressed", manualPause ? "true" : "false");
    }

    function selectionChanged() {
      const boxes = checkboxes();
      const count = boxes.filter((box) => box.checked).length;
      for (const box of boxes) box.closest("tr").classList.toggle("selected", box.checked);
      if (toggle) toggle.checked = count > 0 && count === boxes.length;
      if (counter) counter.textContent = `${count} selected`;
      showStatus(null);
      if (count === 0 && !manualPause) poll(); // catch up at once
    }

    function record(totals) {
      const last = samples[samples.length - 1];
      let rate = null;
      if (last && totals.time > last.time) {
        // a connection that leaves takes its counter along: never show a negative rate
        rate = Math.max(0, (totals.messages_out - last.messagesOut) / (totals.time - last.time));
      }
      samples.push({
        time: totals.time,
        connections: totals.connections,
        messagesOut: totals.messages_out,
        rate,
      });
      if (samples.length > POINTS) samples.shift();
      document.getElementById("rt-connections").textContent = String(totals.connections);
      document.getElementById("rt-nodes").textContent = String(totals.nodes);
      document.getElementById("rt-rate").textContent = formatRate(rate);
      sparkline(
        document.getElementById("rt-chart-connections"),
        samples.map((sample) => sample.connections),
      );
      sparkline(
        document.getElementById("rt-chart-rate"),
        samples.filter((sample) => sample.rate !== null).map((sample) => sample.rate),
      );
    }

    function schedule() {
      clearTimeout(timer);
      timer = setTimeout(poll, refreshMs);
    }

    async function poll() {
      if (inFlight) return;
      if (document.hidden) {
        schedule();
        return;
      }
      inFlight = true;
      let failure = null;
      try {
        const response = await fetch(pollUrl + window.location.search, {
          credentials: "same-origin",
          headers: { Accept: "application/json" },
          cache: "no-store",
        });
        const type = response.headers.get("Content-Type") || "";
        if (!type.startsWith("application/json")) {
          // a login page after the session ended, or a proxy's error page
          throw new Error(response.redirected ? "signed out? Reload the page." : `HTTP ${response.status}`);
        }
        const data = await response.json();
        if (!response.ok) throw new Error(data.error || `HTTP ${response.status}`);
        record(data.totals);
        filters.innerHTML = data.html.filters;
        if (!paused()) {
          rows.innerHTML = data.html.rows;
          paginator.innerHTML = data.html.paginator;
          if (toggle) toggle.checked = false;
          root.dataset.refreshes = String(Number(root.dataset.refreshes || 0) + 1);
        }
        lastUpdate = new Date();
      } catch (error) {
        failure = error.message || String(error);
      } finally {
        inFlight = false;
      }
      showStatus(failure);
      schedule();
    }

    rows.addEventListener("change", (event) => {
      if (event.target.matches("input.action-select")) selectionChanged();
    });
    if (toggle) {
      toggle.addEventListener("change", () => {
        for (const box of checkboxes()) box.checked = toggle.checked;
        selectionChanged();
      });
    }
    pauseButton.addEventListener("click", () => {
      manualPause = !manualPause;
      showStatus(null);
      if (!manualPause) poll();
    });
    document.addEventListener("visibilitychange", () => {
      if (!document.hidden) poll();
    });

    const initial = document.getElementById("rt-totals");
    if (initial) record(JSON.parse(initial.textContent));
    showStatus(null);
    root.dataset.ready = "true";
    schedule();
  }

  function ready() {
    const root = document.getElementById("rt-console");
    if (root) start(root);
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", ready);
  } else {
    ready();
  }
})();
