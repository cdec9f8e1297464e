// The DBOS dashboard: one page, plain DOM, no libraries.
// Everything recorded (IDs, names, inputs, outputs) is user data: it reaches
// the page only as text nodes (textContent), never as HTML.
"use strict";

const BASE = location.pathname.replace(/\/(index\.html)?$/, "");
const STATUSES = ["PENDING", "ENQUEUED", "DELAYED", "SUCCESS", "ERROR", "CANCELLED",
  "MAX_RECOVERY_ATTEMPTS_EXCEEDED"];
const REFRESH_MS = 2000;
let refreshTimer = null;

// ---------------------------------------------------------------- helpers

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "on") { for (const [ev, fn] of Object.entries(value)) node.addEventListener(ev, fn); }
    else if (key === "data") { Object.assign(node.dataset, value); }
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function svg(tag, attrs) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, String(value));
  return node;
}

// An admin server with an admin_token answers the API only with it: asked
// once, kept for this tab only (never in the address, where history keeps it).
const TOKEN_KEY = "dbos-admin-token";

async function api(method, path, body) {
  const options = { method, headers: {} };
  if (method === "POST") {
    options.headers["Content-Type"] = "application/json";
    options.headers["X-DBOS-Request"] = "1";
    options.body = JSON.stringify(body || {});
  }
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (token) options.headers["Authorization"] = "Bearer " + token;
  const response = await fetch(BASE + "/api" + path, options);
  if (response.status === 401) {
    const given = window.prompt("This admin server needs its token (the admin_token of its configuration):");
    if (given) {
      sessionStorage.setItem(TOKEN_KEY, given.trim());
      return api(method, path, body);
    }
  }
  const data = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(data.error || response.statusText);
  return data;
}

function notice(text, kind) {
  const box = document.getElementById("notice");
  box.textContent = text || "";
  box.className = text ? kind || "info" : "";
}

function time(ms) { return ms === null || ms === undefined ? "" : new Date(ms).toLocaleString(); }

function duration(ms) {
  if (ms === null || ms === undefined || ms < 0) return "";
  if (ms < 1000) return ms + " ms";
  if (ms < 60000) return (ms / 1000).toFixed(1) + " s";
  if (ms < 3600000) return (ms / 60000).toFixed(1) + " min";
  return (ms / 3600000).toFixed(1) + " h";
}

function statusCell(status) { return el("span", { class: "status status-" + status }, status); }
function workflowLink(id) { return el("a", { href: "#/workflow/" + encodeURIComponent(id), class: "mono" }, id); }

function table(headings, rows, attrs) {
  return el("table", attrs || {}, el("thead", {}, el("tr", {}, headings.map((h) => el("th", {}, h)))),
    el("tbody", {}, rows));
}

function every(fn) {
  clearInterval(refreshTimer);
  refreshTimer = setInterval(() => { if (document.getElementById("live").checked) fn().catch(showError); }, REFRESH_MS);
}

function showError(err) { notice(err.message || String(err), "error"); }

async function act(what, fn) {
  try { notice(""); const result = await fn(); notice(what + " done"); return result; }
  catch (err) { showError(err); return null; }
}

// ---------------------------------------------------------------- workflows

const listState = { filters: {}, cursors: [null], page: 0 };

function filterForm() {
  const text = (key, label) => el("label", {}, label, el("input", { id: "filter-" + key, name: key, value: listState.filters[key] || "" }));
  const when = (key, label) => el("label", {}, label, el("input", { id: "filter-" + key, name: key, type: "datetime-local" }));
  const status = el("select", { id: "filter-status", name: "status" }, el("option", { value: "" }, "any"),
    STATUSES.map((s) => el("option", { value: s, selected: listState.filters.status === s }, s)));
  const form = el("form", { class: "filters", id: "filters" }, el("label", {}, "status", status),
    text("name", "name"), text("queue", "queue"), text("executor", "executor"), text("app_version", "version"),
    text("id_prefix", "ID prefix"), text("parent", "parent ID"), when("created_after", "created after"),
    when("created_before", "created before"), el("button", { id: "apply", type: "submit" }, "Apply"));
  form.addEventListener("submit", (event) => { event.preventDefault(); readFilters(form); loadList().catch(showError); });
  return form;
}

function readFilters(form) {
  const filters = {};
  for (const input of form.querySelectorAll("input, select")) {
    if (!input.value) continue;
    filters[input.name] = input.type === "datetime-local" ? new Date(input.value).getTime() : input.value.trim();
  }
  listState.filters = filters;
  listState.cursors = [null];
  listState.page = 0;
}

async function showWorkflows(main) {
  const charts = el("div", { class: "charts", id: "charts" });
  const bulk = el("div", { class: "actions" },
    el("button", { id: "bulk-cancel", on: { click: () => bulkAction("cancel") } }, "Cancel all matching"),
    el("button", { id: "bulk-resume", on: { click: () => bulkAction("resume") } }, "Resume all matching"));
  const pager = el("div", { class: "pager" },
    el("button", { id: "newer", on: { click: () => turn(-1) } }, "◀ Newer"),
    el("span", { id: "page" }), el("button", { id: "older", on: { click: () => turn(1) } }, "Older ▶"));
  main.append(el("h2", {}, "Workflows"), charts, filterForm(), bulk, el("div", { id: "list" }), pager);
  await Promise.all([loadList(), loadRates()]);
  every(() => Promise.all([loadList(), loadRates()]));
}

async function loadList() {
  const after = listState.cursors[listState.page];
  const data = await api("POST", "/workflows", { filters: listState.filters, after, limit: 50 });
  listState.cursors[listState.page + 1] = data.after;
  const rows = data.workflows.map((w) => el("tr", { class: "workflow-row", data: { id: w.workflow_id } },
    el("td", { class: "id" }, workflowLink(w.workflow_id)), el("td", {}, w.name), el("td", {}, statusCell(w.status)),
    el("td", {}, w.queue_name || ""), el("td", { class: "mono" }, w.executor_id || ""), el("td", {}, w.app_version || ""),
    el("td", {}, time(w.created_at)),
    el("td", {}, w.completed_at ? duration(w.completed_at - w.created_at) : "")));
  const list = document.getElementById("list");
  if (!list) return;
  list.replaceChildren(table(["ID", "name", "status", "queue", "executor", "version", "created", "took"], rows,
    { id: "workflow-table" }));
  if (!rows.length) list.append(el("p", { class: "muted", id: "empty" }, "No workflows match."));
  document.getElementById("page").textContent = "page " + (listState.page + 1);
  document.getElementById("older").disabled = !data.after;
  document.getElementById("newer").disabled = listState.page === 0;
}

function turn(step) {
  listState.page = Math.max(0, listState.page + step);
  loadList().catch(showError);
}

async function bulkAction(action) {
  if (!confirm("Really " + action + " every workflow matching these filters?")) return;
  const result = await act(action, () => api("POST", "/bulk", { action, filters: listState.filters }));
  if (result) notice(action + ": " + result.workflow_ids.length + " workflow(s)");
  await loadList();
}

async function loadRates() {
  const data = await api("GET", "/rates");
  const box = document.getElementById("charts");
  if (!box) return;
  const nowMinute = Math.floor(data.now / 60000);
  const series = { SUCCESS: "completed", ERROR: "failed", CANCELLED: "cancelled" };
  box.replaceChildren(...Object.entries(series).map(([status, label]) => {
    const counts = new Array(60).fill(0);
    for (const m of data.minutes) {
      const index = 59 - (nowMinute - m.minute);
      if (m.status === status && index >= 0 && index < 60) counts[index] += m.workflows;
    }
    return chart(label + " per minute, last hour", counts, status === "ERROR" ? "#f87171" : status === "SUCCESS" ? "#34d399" : "#9ca3af");
  }));
}

function chart(title, counts, color) {
  const width = 240, height = 48, most = Math.max(1, ...counts);
  const picture = svg("svg", { width, height, viewBox: `0 0 ${width} ${height}`, role: "img" });
  counts.forEach((count, i) => {
    const h = Math.round((count / most) * (height - 2));
    picture.append(svg("rect", { x: i * 4, y: height - h, width: 3, height: h, fill: color }));
  });
  const total = counts.reduce((a, b) => a + b, 0);
  return el("div", { class: "chart" }, el("div", { class: "title" }, title + " (" + total + ", peak " + Math.max(...counts) + ")"), picture);
}

// ---------------------------------------------------------------- one workflow

async function showWorkflow(main, id) {
  main.append(el("div", { id: "workflow" }));
  await loadWorkflow(id);
  every(() => loadWorkflow(id));
}

async function loadWorkflow(id) {
  const data = await api("GET", "/workflows/" + encodeURIComponent(id));
  const box = document.getElementById("workflow");
  if (!box) return;
  const selected = document.getElementById("fork-step");
  const keepStep = selected ? selected.value : null;
  const w = data.workflow;
  box.replaceChildren(el("h2", {}, "Workflow ", el("span", { class: "mono", id: "wf-id" }, w.workflow_id)),
    actions(w, data.steps), fields(w), outcome(w), stepsTimeline(w, data.steps), tree(w, data.descendants),
    events(data), messages(data), streams(data));
  if (keepStep) document.getElementById("fork-step").value = keepStep;
}

function actions(w, steps) {
  const id = w.workflow_id;
  const post = (what, body) => act(what, () => api("POST", "/workflows/" + encodeURIComponent(id) + "/" + what, body || {}));
  const fork = async () => {
    const step = Number(document.getElementById("fork-step").value);
    const result = await post("fork", { start_step: step });
    if (result) location.hash = "#/workflow/" + encodeURIComponent(result.workflow_id);
  };
  const restart = async () => {
    const result = await post("restart");
    if (result) location.hash = "#/workflow/" + encodeURIComponent(result.workflow_id);
  };
  const remove = async () => {
    if (!confirm("Delete workflow " + id + " and everything it recorded? This cannot be undone.")) return;
    if (await post("delete")) location.hash = "#/workflows";
  };
  const choices = steps.length ? steps.map((s) => s.function_id) : [1];
  return el("div", { class: "actions" },
    el("button", { id: "btn-cancel", on: { click: () => post("cancel").then(() => loadWorkflow(id)) } }, "Cancel"),
    el("button", { id: "btn-resume", on: { click: () => post("resume").then(() => loadWorkflow(id)) } }, "Resume"),
    el("button", { id: "btn-restart", on: { click: restart } }, "Restart"),
    el("label", {}, "fork from step ", el("select", { id: "fork-step" },
      choices.map((n) => el("option", { value: n }, String(n))))),
    el("button", { id: "btn-fork", on: { click: fork } }, "Fork"),
    el("button", { id: "btn-delete", class: "danger", on: { click: remove } }, "Delete"));
}

function fields(w) {
  const rows = [["status", statusCell(w.status)], ["name", w.name], ["class", w.class_name], ["queue", w.queue_name],
    ["executor", w.executor_id], ["application version", w.app_version], ["created", time(w.created_at)],
    ["dequeued", time(w.dequeued_at)], ["completed", time(w.completed_at)],
    ["took", w.completed_at ? duration(w.completed_at - w.created_at) : ""],
    ["parent", w.parent_workflow_id ? workflowLink(w.parent_workflow_id) : ""],
    ["forked from", w.forked_from ? workflowLink(w.forked_from) : ""], ["recovery attempts", w.recovery_attempts],
    ["user", w.authenticated_user], ["schedule", w.schedule_name], ["attributes", w.attributes]];
  return el("dl", { class: "fields", id: "wf-fields" }, rows.filter(([, v]) => v !== null && v !== undefined && v !== "")
    .flatMap(([k, v]) => [el("dt", {}, k), el("dd", { id: k === "status" ? "wf-status" : null }, v)]));
}

function outcome(w) {
  return el("div", {}, el("h3", {}, "Input"), el("pre", { id: "wf-input" }, w.input || ""),
    w.error ? [el("h3", {}, "Error"), el("pre", { id: "wf-error" }, w.error)]
      : [el("h3", {}, "Output"), el("pre", { id: "wf-output" }, w.output === null ? "" : w.output)]);
}

function stepsTimeline(w, steps) {
  const starts = steps.map((s) => s.started_at_epoch_ms).filter((t) => t !== null);
  const ends = steps.map((s) => s.completed_at_epoch_ms).filter((t) => t !== null);
  const first = Math.min(w.created_at, ...starts);
  const last = Math.max(first + 1, w.completed_at || 0, ...ends, ...starts);
  const rows = steps.map((s) => {
    const start = s.started_at_epoch_ms, end = s.completed_at_epoch_ms;
    const bar = el("div", { class: "bar" });
    if (start !== null) {
      const left = ((start - first) / (last - first)) * 100;
      const width = (((end || last) - start) / (last - first)) * 100;
      bar.append(el("span", { class: s.error ? "failed" : null, style: `left:${left.toFixed(2)}%;width:${width.toFixed(2)}%` }));
    }
    return el("tr", { class: "step-row", data: { step: s.function_id } }, el("td", {}, s.function_id),
      el("td", {}, s.function_name), el("td", {}, s.child_workflow_id ? workflowLink(s.child_workflow_id) : ""),
      el("td", {}, start !== null && end !== null ? duration(end - start) : ""), el("td", { class: "bar-cell" }, bar),
      el("td", {}, el("pre", {}, s.error || s.output || "")));
  });
  return el("div", {}, el("h3", {}, "Steps (" + steps.length + ")"),
    table(["#", "step", "child", "took", "timeline", "output or error"], rows, { id: "steps" }));
}

function tree(w, descendants) {
  const byParent = {};
  for (const d of descendants) (byParent[d.parent_workflow_id] = byParent[d.parent_workflow_id] || []).push(d);
  const branch = (id, depth) => el("ul", { class: "tree" }, (byParent[id] || []).map((d) =>
    el("li", {}, workflowLink(d.workflow_id), " ", d.name, " ", statusCell(d.status), depth < 20 ? branch(d.workflow_id, depth + 1) : null)));
  return el("div", { id: "children" }, el("h3", {}, "Child workflows (" + descendants.length + ")"),
    descendants.length ? branch(w.workflow_id, 0) : el("p", { class: "muted" }, "none"));
}

function events(data) {
  return el("div", {}, el("h3", {}, "Events"), table(["key", "value"],
    data.events.map((e) => el("tr", {}, el("td", { class: "mono" }, e.key), el("td", {}, el("pre", {}, e.value)))), { id: "events" }));
}

function messages(data) {
  return el("div", {}, el("h3", {}, "Messages received"), table(["topic", "sent", "read", "value"],
    data.messages.map((m) => el("tr", {}, el("td", { class: "mono" }, m.topic || ""), el("td", {}, time(m.created_at_epoch_ms)),
      el("td", {}, m.consumed ? "yes" : "no"), el("td", {}, el("pre", {}, m.value)))), { id: "messages" }));
}

function streams(data) {
  return el("div", {}, el("h3", {}, "Streams"), table(["key", "offset", "value"],
    data.streams.map((s) => el("tr", {}, el("td", { class: "mono" }, s.key), el("td", {}, s.offset),
      el("td", {}, el("pre", {}, s.value)))), { id: "streams" }));
}

// ---------------------------------------------------------------- queues

async function showQueues(main) {
  main.append(el("h2", {}, "Queues"), el("div", { id: "queues" }));
  await loadQueues();
  every(loadQueues);
}

async function loadQueues() {
  const data = await api("GET", "/queues");
  const limit = (q) => q.limits ? Object.entries(q.limits).filter(([, v]) => v !== null && v !== false)
    .map(([k, v]) => k + "=" + v).join(", ") : "declared in code";
  const rows = data.queues.map((q) => el("tr", { class: "queue-row", data: { name: q.name } },
    el("td", { class: "mono" }, q.name), el("td", {}, limit(q)),
    ...["ENQUEUED", "PENDING", "DELAYED"].map((s) => el("td", {}, q.depth[s] || 0)),
    el("td", {}, Object.entries(q.in_flight).map(([e, n]) => (e || "(none)") + ": " + n).join(", ")),
    el("td", {}, q.oldest_enqueued_at ? duration(data.now - q.oldest_enqueued_at) : "")));
  const box = document.getElementById("queues");
  if (box) box.replaceChildren(table(["queue", "limits", "enqueued", "pending", "delayed", "running per executor",
    "oldest enqueued"], rows, { id: "queue-table" }));
}

// ---------------------------------------------------------------- schedules

async function showSchedules(main) {
  const backfill = el("div", { class: "actions" }, "Backfill from ",
    el("input", { type: "datetime-local", id: "backfill-start" }), " to ", el("input", { type: "datetime-local", id: "backfill-end" }));
  main.append(el("h2", {}, "Schedules"), backfill, el("div", { id: "schedules" }));
  await loadSchedules();
  every(loadSchedules);
}

async function loadSchedules() {
  const data = await api("GET", "/schedules");
  const rows = data.schedules.map((s) => {
    const post = (what, body) => act(what, () => api("POST", "/schedules/" + encodeURIComponent(s.schedule_name) + "/" + what, body || {}))
      .then((r) => { if (r && r.workflow_ids) notice(what + ": started " + r.workflow_ids.length + " workflow(s)"); return loadSchedules(); });
    const backfill = () => {
      const start = document.getElementById("backfill-start").value, end = document.getElementById("backfill-end").value;
      if (!start || !end) { notice("Choose the backfill's start and end first", "error"); return; }
      post("backfill", { start: new Date(start).getTime(), end: new Date(end).getTime() });
    };
    return el("tr", { class: "schedule-row", data: { name: s.schedule_name } },
      el("td", { class: "mono" }, s.schedule_name), el("td", {}, s.workflow_name), el("td", { class: "mono" }, s.schedule),
      el("td", {}, s.cron_timezone || "UTC"), el("td", { class: "status-cell" }, statusCell(s.status)),
      el("td", {}, s.last_fired_at || ""), el("td", {}, s.queue_name || ""),
      el("td", {}, el("button", { class: "pause", on: { click: () => post("pause") } }, "Pause"), " ",
        el("button", { class: "resume", on: { click: () => post("resume") } }, "Resume"), " ",
        el("button", { class: "trigger", on: { click: () => post("trigger") } }, "Trigger now"), " ",
        el("button", { class: "backfill", on: { click: backfill } }, "Backfill")));
  });
  const box = document.getElementById("schedules");
  if (box) box.replaceChildren(table(["schedule", "workflow", "cron", "time zone", "status", "last fired", "queue", ""],
    rows, { id: "schedule-table" }));
}

// ---------------------------------------------------------------- executors and versions

async function showExecutors(main) {
  main.append(el("h2", {}, "Executors and versions"), el("div", { id: "executors" }));
  await loadExecutors();
  every(loadExecutors);
}

async function loadExecutors() {
  const data = await api("GET", "/executors");
  const executors = data.executors.map((e) => el("tr", { class: "executor-row" },
    el("td", { class: "mono" }, e.executor_id), el("td", {}, e.application_name || ""), el("td", {}, e.application_version),
    el("td", {}, e.hostname || ""), el("td", {}, e.pid === null ? "" : e.pid), el("td", {}, time(e.started_at)),
    el("td", {}, duration(e.heartbeat_age_ms) + " ago"), el("td", {}, e.pending)));
  const waiting = (counts) => Object.entries(counts).map(([s, n]) => s + ": " + n).join(", ") || "0";
  const versions = data.versions.map((v) => el("tr", { class: "version-row" },
    el("td", { class: "mono" }, v.version_name), el("td", {}, v.application_name || ""), el("td", {}, time(v.created_at)),
    el("td", {}, v.latest ? "latest" : ""), el("td", {}, waiting(v.waiting))));
  const box = document.getElementById("executors");
  if (box) box.replaceChildren(
    table(["executor", "application", "version", "host", "pid", "started", "heartbeat", "pending"], executors, { id: "executor-table" }),
    el("h3", {}, "Application versions"),
    table(["version", "application", "registered", "", "unfinished workflows"], versions, { id: "version-table" }));
}

// ---------------------------------------------------------------- routing

async function route() {
  clearInterval(refreshTimer);
  notice("");
  const [, view, arg] = (location.hash || "#/workflows").match(/^#\/([a-z]+)\/?(.*)$/) || [null, "workflows", ""];
  for (const link of document.querySelectorAll("header nav a")) {
    link.classList.toggle("current", link.dataset.view === (view === "workflow" ? "workflows" : view));
  }
  const main = document.getElementById("main");
  main.replaceChildren();
  const views = { workflows: showWorkflows, queues: showQueues, schedules: showSchedules, executors: showExecutors };
  try {
    if (view === "workflow") await showWorkflow(main, decodeURIComponent(arg));
    else await (views[view] || showWorkflows)(main);
  } catch (err) { showError(err); }
}

window.addEventListener("hashchange", route);
route();
