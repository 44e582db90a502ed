// Palisade UI: progressive enhancement only. Every page works without this file.
// Nothing here builds HTML from strings: entries are created with textContent.
(function () {
  "use strict";

  // Keyboard: "/" focuses the query, j/k move through rows and timeline entries,
  // Enter opens the current row's first link, "a" acknowledges on an incident page.
  let current = -1;
  function rows() { return Array.from(document.querySelectorAll(".nav-row")); }
  function move(step) {
    const all = rows();
    if (!all.length) return;
    if (current >= 0 && all[current]) all[current].classList.remove("current");
    current = Math.max(0, Math.min(all.length - 1, current + step));
    all[current].classList.add("current");
    all[current].scrollIntoView({ block: "nearest" });
  }
  document.addEventListener("keydown", function (e) {
    const t = e.target;
    if (t && (t.tagName === "INPUT" || t.tagName === "TEXTAREA" || t.tagName === "SELECT")) return;
    if (e.ctrlKey || e.metaKey || e.altKey) return;
    if (e.key === "/") {
      const q = document.getElementById("q");
      if (q) { e.preventDefault(); q.focus(); q.select(); }
    } else if (e.key === "j") { move(1); }
    else if (e.key === "k") { move(-1); }
    else if (e.key === "Enter" && current >= 0) {
      const link = rows()[current] && rows()[current].querySelector("a");
      if (link) link.click();
    } else if (e.key === "a") {
      const form = document.getElementById("ack-form");
      if (form) form.submit();
    }
  });

  // Histogram: drag across the chart to zoom into that time range.
  const chart = document.getElementById("histogram");
  if (chart) {
    const from = Number(chart.dataset.from), to = Number(chart.dataset.to);
    const left = Number(chart.dataset.left), right = Number(chart.dataset.right);
    const width = Number(chart.dataset.width);
    let start = null;
    function at(ev) {
      const svg = chart.querySelector("svg");
      if (!svg) return null;
      const box = svg.getBoundingClientRect();
      const x = (ev.clientX - box.left) * (width / box.width);
      const f = Math.max(0, Math.min(1, (x - left) / (width - left - right)));
      return from + f * (to - from);
    }
    chart.addEventListener("mousedown", function (ev) { start = at(ev); ev.preventDefault(); });
    chart.addEventListener("mouseup", function (ev) {
      if (start === null) return;
      const end = at(ev);
      const a = Math.min(start, end), b = Math.max(start, end);
      start = null;
      if (b - a < 1000) return;
      const url = new URL(window.location.href);
      url.searchParams.set("from", new Date(a).toISOString());
      url.searchParams.set("to", new Date(b).toISOString());
      url.searchParams.delete("cursor");
      window.location.assign(url.toString());
    });
  }

  // Search: live tail polls the search API (same session) and adds new events on top.
  const tail = document.getElementById("tail-state");
  const results = document.getElementById("results");
  if (tail && results) {
    let since = new Date().toISOString();
    const seen = new Set(Array.from(results.querySelectorAll("a.event-link")).map(a => a.getAttribute("href")));
    async function poll() {
      const url = "/api/v1/search?limit=100&sort=oldest&q=" + encodeURIComponent(tail.dataset.q || "") +
        "&from=" + encodeURIComponent(since) + "&to=now%2B1d";
      try {
        const resp = await fetch(url, { credentials: "same-origin" });
        if (resp.ok) {
          const body = await resp.json();
          (body.hits || []).forEach(function (h) {
            const href = "/events/" + encodeURIComponent(h.id);
            if (seen.has(href)) return;
            seen.add(href);
            const tr = document.createElement("tr");
            tr.className = "nav-row fresh";
            [h.time, h.severity_text, h.body].forEach(function (text) {
              const td = document.createElement("td");
              td.textContent = text == null ? "" : String(text);
              tr.appendChild(td);
            });
            const td = document.createElement("td");
            const a = document.createElement("a");
            a.className = "event-link";
            a.href = href;
            a.textContent = "open";
            td.appendChild(a);
            tr.appendChild(td);
            results.insertBefore(tr, results.firstChild);
            if (h.time > since) since = h.time;
          });
        }
      } catch (_) { /* next poll */ }
      setTimeout(poll, 2000);
    }
    setTimeout(poll, 2000);
  }

  // Incident page: the live timeline (Server-Sent Events from the API, same session).
  const timeline = document.getElementById("timeline");
  if (timeline && window.EventSource) {
    const id = timeline.dataset.incident;
    const source = new EventSource("/api/v1/incidents/" + encodeURIComponent(id) + "/events");
    source.addEventListener("entry", function (msg) {
      let entry;
      try { entry = JSON.parse(msg.data); } catch (_) { return; }
      const li = document.createElement("li");
      li.className = "nav-row entry fresh kind-" + String(entry.kind).replace(/[^a-z_]/g, "");
      const parts = [["time", entry.time], ["kind", entry.kind], ["actor", entry.actor], ["text", summary(entry)]];
      parts.forEach(function (p, i) {
        const span = document.createElement("span");
        span.className = p[0];
        span.textContent = p[1] == null ? "" : String(p[1]);
        li.appendChild(span);
        if (i < parts.length - 1) li.appendChild(document.createTextNode(" "));
      });
      timeline.appendChild(li);
    });
  }
  function summary(e) {
    const p = e.payload || {};
    switch (e.kind) {
      case "note": return p.markdown;
      case "event": return p.body;
      case "notification": return (p.event || "") + " to " + (p.channel || "") + ": " + (p.status == null ? (p.error || "") : ("HTTP " + p.status));
      case "state_change": return p.action ? p.action : ((p.from || "") + " → " + (p.to || ""));
      case "assignment": return "assigned to " + (p.to || "nobody");
      case "pin": return "pinned event " + (p.event_id || "");
      default: return (p.rule_id || "") + " " + (p.to || "") + " " + (p.summary || "");
    }
  }
})();
