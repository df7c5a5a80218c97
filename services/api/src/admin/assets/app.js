// Roundhouse dashboard: a small dependency-free front end over /admin/api.
// Every string from the server is inserted as text (never as HTML): job
// payloads and errors are user data.
"use strict";

const CSRF = document.querySelector('meta[name="csrf-token"]').content;
const REFRESH_MS = 2000;
const STATUSES = ["queued", "scheduled", "processing", "completed", "failed", "cancelled"];

// ---- helpers ---------------------------------------------------------------

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else el.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
  return el;
}

async function api(method, path, body) {
  const init = { method, credentials: "same-origin", headers: { Accept: "application/json" } };
  if (method !== "GET") init.headers["X-CSRF-Token"] = CSRF;
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const url = path.startsWith("/admin/") ? path : "/admin/api" + path;
  const response = await fetch(url, init);
  if (response.status === 401) {
    window.location.assign("/admin/login");
    throw new Error("signed out");
  }
  const data = await response.json().catch(() => ({}));
  if (!response.ok) {
    const message = (data.error && data.error.message) || response.statusText;
    throw new Error(message);
  }
  return data;
}

function flash(message, kind) {
  const box = document.getElementById("flash");
  box.className = kind || "ok";
  box.textContent = message;
  clearTimeout(flash.timer);
  flash.timer = setTimeout(() => { box.textContent = ""; box.className = ""; }, 6000);
}

async function act(label, method, path, body) {
  try {
    const result = await api(method, path, body);
    flash(label + ": done");
    await refresh(true);
    return result;
  } catch (error) {
    flash(label + ": " + error.message, "error");
    return null;
  }
}

// Absolute times: a view is re-rendered only when its data changes, so a
// relative "5 s ago" would go stale.
function when(iso) {
  return iso ? new Date(iso).toLocaleString() : "—";
}

function duration(seconds) {
  if (seconds === null || seconds === undefined) return "—";
  if (seconds < 1) return Math.round(seconds * 1000) + " ms";
  if (seconds < 90) return seconds.toFixed(seconds < 10 ? 1 : 0) + " s";
  if (seconds < 5400) return Math.round(seconds / 60) + " min";
  return (seconds / 3600).toFixed(1) + " h";
}

function badge(status) {
  return h("span", { class: "badge " + status }, status);
}

function pretty(value) {
  return h("pre", { class: "json" }, value === null || value === undefined ? "—" : JSON.stringify(value, null, 2));
}

function parseHash() {
  const raw = window.location.hash.replace(/^#/, "") || "/";
  const [path, query] = raw.split("?");
  return { path, params: new URLSearchParams(query || "") };
}

// ---- views -----------------------------------------------------------------

const views = {};
let current = null; // { key, render(data), load(), teardown? }
let lastJson = "";

views.queues = () => ({
  key: "queues",
  load: () => api("GET", "/overview"),
  render(data) {
    const rows = data.queues.map((q) =>
      h("tr", { "data-queue": q.name },
        h("td", {}, h("a", { href: "#/jobs?queue=" + encodeURIComponent(q.name) }, q.name),
          q.paused ? h("span", { class: "badge paused" }, "paused") : null),
        ...["waiting", "scheduled", "active", "completed", "failed", "cancelled"].map((k) =>
          h("td", { class: "num", "data-count": k },
            k === "failed" && q[k] > 0
              ? h("a", { href: "#/jobs?status=failed&queue=" + encodeURIComponent(q.name) }, q[k])
              : q[k])),
        h("td", { class: "num", "data-count": "oldest" }, q.oldestWaitingMs == null ? "—" : duration(q.oldestWaitingMs / 1000)),
        h("td", { class: "num" }, q.avgDurationMs == null ? "—" : duration(q.avgDurationMs / 1000)),
        h("td", { class: "num" }, Number(q.rate || 0).toFixed(2)),
        h("td", {}, q.paused
          ? h("button", { "data-action": "resume", onclick: () => act("Resume " + q.name, "POST", "/queues/" + encodeURIComponent(q.name) + "/resume") }, "Resume")
          : h("button", { "data-action": "pause", onclick: () => act("Pause " + q.name, "POST", "/queues/" + encodeURIComponent(q.name) + "/pause") }, "Pause"))));
    const total = data.minutes.reduce((s, m) => s + m.completed + m.failed, 0);
    return [
      h("h2", {}, "Queues"),
      h("table", { id: "queues-table" },
        h("thead", {}, h("tr", {}, ["Queue", "Waiting", "Scheduled", "Active", "Completed", "Failed", "Cancelled", "Oldest waiting", "Avg run", "Done/s", ""].map((t) => h("th", {}, t)))),
        h("tbody", {}, rows.length ? rows : h("tr", {}, h("td", { colspan: 11, class: "muted" }, "No queues yet.")))),
      h("div", { class: "charts" },
        chart("Finished per minute (last hour)", data.minutes, (m) => m.completed + m.failed, (v) => String(v), "throughput-chart"),
        chart("Failure rate per minute (last hour)", data.minutes,
          (m) => (m.completed + m.failed ? m.failed / (m.completed + m.failed) : 0), (v) => Math.round(v * 100) + "%", "failure-chart", 1)),
      h("p", { class: "muted" }, total === 1 ? "1 job finished in the last hour." : total + " jobs finished in the last hour."),
    ];
  },
});

// A bar chart as inline SVG: one bar per minute.
function chart(title, minutes, value, label, id, fixedMax) {
  const ns = "http://www.w3.org/2000/svg";
  const width = 600, height = 120, pad = 2;
  const values = minutes.map(value);
  const max = fixedMax || Math.max(1, ...values);
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", `0 0 ${width} ${height + 16}`);
  svg.setAttribute("class", "chart");
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", title);
  const barWidth = width / values.length;
  values.forEach((v, i) => {
    const bar = document.createElementNS(ns, "rect");
    const barHeight = (v / max) * height;
    bar.setAttribute("x", i * barWidth + pad / 2);
    bar.setAttribute("y", height - barHeight);
    bar.setAttribute("width", Math.max(1, barWidth - pad));
    bar.setAttribute("height", barHeight);
    bar.setAttribute("class", fixedMax ? "bar fail" : "bar");
    const tip = document.createElementNS(ns, "title");
    tip.textContent = new Date(minutes[i].minute).toLocaleTimeString() + ": " + label(v);
    bar.append(tip);
    svg.append(bar);
  });
  const axis = document.createElementNS(ns, "text");
  axis.setAttribute("x", 0);
  axis.setAttribute("y", height + 14);
  axis.setAttribute("class", "axis");
  axis.textContent = "max " + label(max) + " · 60 min ago → now";
  svg.append(axis);
  return h("figure", { id }, h("figcaption", {}, title), svg);
}

views.jobs = (params) => {
  const filters = ["status", "queue", "jobType", "userId", "q"];
  const query = new URLSearchParams();
  for (const f of filters) if (params.get(f)) query.set(f, params.get(f));
  if (params.get("cursor")) query.set("cursor", params.get("cursor"));
  return {
    key: "jobs?" + query,
    load: () => api("GET", "/jobs?" + query),
    render(data) {
      const form = h("form", { id: "job-filters", class: "filters", onsubmit: (e) => {
        e.preventDefault();
        const next = new URLSearchParams();
        for (const f of filters) {
          const v = form.elements[f].value.trim();
          if (v) next.set(f, v);
        }
        window.location.hash = "#/jobs?" + next;
      } },
        h("select", { name: "status", id: "f-status" },
          h("option", { value: "" }, "any status"),
          STATUSES.map((s) => h("option", { value: s, selected: params.get("status") === s }, s))),
        h("input", { name: "queue", placeholder: "queue", value: params.get("queue") || "" }),
        h("input", { name: "jobType", placeholder: "job type", value: params.get("jobType") || "" }),
        h("input", { name: "userId", placeholder: "user id", value: params.get("userId") || "" }),
        h("input", { name: "q", placeholder: "text in error", value: params.get("q") || "" }),
        h("button", { type: "submit" }, "Filter"));
      const rows = data.jobs.map((job) =>
        h("tr", { "data-job-id": job.id, "data-status": job.status },
          h("td", {}, h("a", { href: "#/job/" + job.id, class: "mono" }, job.id.slice(0, 8) + "…" + job.id.slice(-4))),
          h("td", {}, job.jobType), h("td", {}, job.queue), h("td", {}, badge(job.status)),
          h("td", { class: "num" }, job.attempts),
          h("td", {}, job.userId || "—"), h("td", {}, when(job.createdAt)),
          h("td", { class: "error-cell" }, job.error || "")));
      const bulk = params.get("status") === "failed"
        ? h("button", { id: "bulk-retry", onclick: async () => {
            const body = {};
            for (const f of ["queue", "jobType", "userId", "q"]) if (params.get(f)) body[f] = params.get(f);
            if (!window.confirm("Retry every failed job matching these filters?")) return;
            const result = await act("Bulk retry", "POST", "/jobs/retry-failed", body);
            if (result) flash("Requeued " + result.retried + " failed jobs");
          } }, "Retry all failed matching")
        : null;
      const pager = h("p", { class: "pager" },
        params.get("cursor") ? h("a", { href: "#/jobs?" + withCursor(params, null) }, "« First page") : null,
        data.nextCursor ? h("a", { href: "#/jobs?" + withCursor(params, data.nextCursor), id: "next-page" }, "Next page »") : null);
      return [
        h("h2", {}, "Jobs"), form, bulk,
        h("table", { id: "jobs-table" },
          h("thead", {}, h("tr", {}, ["Id", "Type", "Queue", "Status", "Attempts", "User", "Created", "Error"].map((t) => h("th", {}, t)))),
          h("tbody", {}, rows.length ? rows : h("tr", {}, h("td", { colspan: 8, class: "muted" }, "No jobs match.")))),
        pager,
      ];
    },
  };
};

function withCursor(params, cursor) {
  const next = new URLSearchParams(params);
  if (cursor) next.set("cursor", cursor); else next.delete("cursor");
  return next.toString();
}

views.job = (params, id) => {
  let source = null;
  return {
    key: "job/" + id,
    load: () => api("GET", "/jobs/" + encodeURIComponent(id)),
    start() {
      // Live: every event of the job refreshes the page's data at once.
      source = new EventSource("/admin/api/jobs/" + encodeURIComponent(id) + "/events?after=0");
      const again = () => refresh(true);
      for (const kind of ["status", "progress", "log", "chunk"]) source.addEventListener(kind, again);
      source.onerror = () => {}; // the browser reconnects with Last-Event-ID
    },
    teardown() { if (source) source.close(); },
    render(data) {
      const job = data.job;
      const finished = ["completed", "failed", "cancelled"].includes(job.status);
      const path = "/jobs/" + encodeURIComponent(job.id);
      const actions = h("div", { class: "actions" },
        ["failed", "cancelled"].includes(job.status) ? h("button", { id: "retry", onclick: () => act("Retry", "POST", path + "/retry") }, "Retry") : null,
        !finished ? h("button", { id: "cancel", onclick: () => act("Cancel", "POST", path + "/cancel") }, "Cancel") : null,
        finished ? h("button", { id: "delete", class: "danger", onclick: async () => {
          if (!window.confirm("Delete this job and its history?")) return;
          if (await act("Delete", "DELETE", path)) window.location.hash = "#/jobs";
        } }, "Delete") : null);
      const facts = [
        ["Status", h("span", { id: "job-status" }, badge(job.status))],
        ["Type", job.jobType], ["Queue", job.queue], ["User", job.userId || "—"],
        ["Attempts", job.attempts], ["Max retries", job.maxRetries], ["Priority", job.priority],
        ["Progress", job.progress + "%" + (job.progressMessage ? " · " + job.progressMessage : "")],
        ["Created", when(job.createdAt)],
        ["Started", when(job.startedAt)],
        ["Finished", when(job.completedAt)],
        ["Worker", job.workerId || "—"],
      ];
      const timeline = data.events.map((e) =>
        h("li", { class: "event " + e.kind, "data-kind": e.kind },
          h("span", { class: "when" }, new Date(e.createdAt).toLocaleTimeString()),
          h("span", { class: "attempt" }, "#" + e.attempt),
          h("span", { class: "kind" }, e.kind),
          h("span", { class: "what" }, describe(e))));
      return [
        h("h2", {}, "Job ", h("span", { class: "mono", id: "job-id" }, job.id)),
        actions,
        h("dl", { class: "facts" }, facts.map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)])),
        job.error ? [h("h3", {}, "Error"), h("pre", { class: "error", id: "job-error" }, job.error)] : null,
        h("h3", {}, "Payload"), pretty(job.payload),
        h("h3", {}, "Result"), h("div", { id: "job-result" }, pretty(job.result)),
        h("h3", {}, "Timeline"),
        h("ol", { id: "timeline" }, timeline.length ? timeline : h("li", { class: "muted" }, "No events yet.")),
      ];
    },
  };
};

function describe(event) {
  const d = event.data || {};
  switch (event.kind) {
    case "status": return d.status + (d.reason ? " (" + d.reason + ")" : "") + (d.error ? ": " + d.error : "");
    case "progress": return (d.progress !== undefined ? d.progress + "%" : "") + (d.message ? " " + d.message : "");
    case "log": return (d.level ? "[" + d.level + "] " : "") + (d.message || JSON.stringify(d));
    case "chunk": return d.content || JSON.stringify(d);
    default: return JSON.stringify(d);
  }
}

views.schedules = () => ({
  key: "schedules",
  load: () => api("GET", "/schedules"),
  render(data) {
    const rows = data.schedules.map((s) => {
      const path = "/schedules/" + encodeURIComponent(s.id);
      return h("tr", { "data-schedule": s.name },
        h("td", {}, s.name), h("td", { class: "mono" }, s.cron + " " + s.timezone),
        h("td", {}, s.description || ""), h("td", {}, s.jobType), h("td", {}, s.queue),
        h("td", {}, s.enabled ? "enabled" : h("span", { class: "badge paused" }, "disabled")),
        h("td", {}, when(s.nextRunAt)),
        h("td", {}, s.lastJobId ? h("a", { href: "#/job/" + s.lastJobId }, when(s.lastRunAt)) : "—"),
        h("td", { class: "actions" },
          s.enabled
            ? h("button", { "data-action": "disable", onclick: () => act("Disable " + s.name, "POST", path + "/disable") }, "Disable")
            : h("button", { "data-action": "enable", onclick: () => act("Enable " + s.name, "POST", path + "/enable") }, "Enable"),
          h("button", { "data-action": "trigger", onclick: () => act("Trigger " + s.name, "POST", path + "/trigger") }, "Run now")));
    });
    return [
      h("h2", {}, "Schedules"),
      h("table", { id: "schedules-table" },
        h("thead", {}, h("tr", {}, ["Name", "Cron", "When", "Job type", "Queue", "State", "Next run", "Last run", ""].map((t) => h("th", {}, t)))),
        h("tbody", {}, rows.length ? rows : h("tr", {}, h("td", { colspan: 9, class: "muted" }, "No schedules.")))),
    ];
  },
});

views.audit = () => ({
  key: "audit",
  load: () => api("GET", "/audit?limit=200"),
  render(data) {
    return [
      h("h2", {}, "Audit log"),
      h("table", { id: "audit-table" },
        h("thead", {}, h("tr", {}, ["When", "Who", "Action", "Target", "Details", "From"].map((t) => h("th", {}, t)))),
        h("tbody", {}, data.entries.map((e) =>
          h("tr", { "data-action": e.action },
            h("td", {}, when(e.at)), h("td", {}, e.actor), h("td", {}, e.action),
            h("td", { class: "mono" }, e.target || ""), h("td", { class: "mono" }, JSON.stringify(e.details)),
            h("td", {}, e.clientIp || ""))))),
    ];
  },
});

// ---- routing and live refresh ---------------------------------------------

function route() {
  const { path, params } = parseHash();
  const parts = path.split("/").filter(Boolean);
  if (parts[0] === "jobs") return views.jobs(params);
  if (parts[0] === "job" && parts[1]) return views.job(params, parts[1]);
  if (parts[0] === "schedules") return views.schedules(params);
  if (parts[0] === "audit") return views.audit(params);
  return views.queues(params);
}

async function refresh(force) {
  const view = current;
  if (!view) return;
  let data;
  try {
    data = await view.load();
  } catch (error) {
    if (view === current) {
      document.getElementById("app").replaceChildren(h("p", { class: "error" }, error.message));
      lastJson = "";
    }
    return;
  }
  if (view !== current) return;
  const json = JSON.stringify(data);
  // Re-render only on change, so a poll never resets what the user is typing.
  if (!force && json === lastJson) return;
  lastJson = json;
  const app = document.getElementById("app");
  const focused = document.activeElement && document.activeElement.name;
  let nodes;
  try {
    nodes = [view.render(data)].flat(3).filter(Boolean);
  } catch (error) {
    nodes = [h("p", { class: "error" }, "Could not show this page: " + error.message)];
  }
  app.replaceChildren(...nodes);
  if (focused && app.querySelector(`[name="${focused}"]`)) app.querySelector(`[name="${focused}"]`).focus();
  document.body.dataset.view = view.key;
}

function navigate() {
  if (current && current.teardown) current.teardown();
  current = route();
  lastJson = "";
  const section = current.key.split(/[?/]/)[0];
  for (const a of document.querySelectorAll("nav a")) {
    a.classList.toggle("active", a.dataset.nav === section || (section === "job" && a.dataset.nav === "jobs"));
  }
  document.getElementById("app").replaceChildren(h("p", { class: "muted" }, "Loading…"));
  if (current.start) current.start();
  refresh(true);
}

document.getElementById("sign-out").addEventListener("click", async () => {
  try { await api("POST", "/admin/logout"); } catch (_) { /* signed out anyway */ }
  window.location.assign("/admin/login");
});

window.addEventListener("hashchange", navigate);
setInterval(() => { if (!document.hidden) refresh(false); }, REFRESH_MS);
navigate();
