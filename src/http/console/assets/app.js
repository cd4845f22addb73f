// falco-api console. Plain DOM, no framework, no build step. Every text that comes from the
// server is put in the page as text (never as HTML): alert outputs are attacker-controlled.
"use strict";

const API = "/console/api";
const MAX_ROWS = 3000;
const PRIORITIES = ["Emergency", "Alert", "Critical", "Error", "Warning", "Notice", "Informational", "Debug"];
const COLORS = ["#7a0010", "#9c0015", "#b3001b", "#c2410c", "#d59b00", "#1d4ed8", "#2f8f2f", "#8a94a3"];

const $ = (sel) => document.querySelector(sel);
let session = null;

/** An element with attributes and children (strings become text nodes). */
function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") e.className = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else if (k === "dataset") Object.assign(e.dataset, v);
    else e.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

function fill(tbody, rows) {
  tbody.replaceChildren(...rows);
}

async function api(path, options) {
  const opts = Object.assign({ credentials: "same-origin", headers: {} }, options || {});
  if (opts.body !== undefined && typeof opts.body !== "string") {
    opts.body = JSON.stringify(opts.body);
    opts.headers["Content-Type"] = "application/json";
  }
  if (opts.method && opts.method !== "GET" && session) opts.headers["X-CSRF-Token"] = session.csrf;
  // A keep-alive connection the server closed just as it was reused fails without an answer:
  // reads and checks that change nothing are sent once more.
  const again = !opts.method || opts.method === "GET" || path === "/rules/validate";
  const r = await fetch(API + path, opts).catch((e) => { if (again) return fetch(API + path, opts); throw e; });
  let body = {};
  try { body = await r.json(); } catch (_) { /* empty body */ }
  if (r.status === 401 && path !== "/login") { showLogin(); throw new Error(body.error || "sign in"); }
  if (!r.ok) { const e = new Error(body.error || r.statusText); e.status = r.status; e.body = body; throw e; }
  return body;
}

// ---- navigation: the URL holds the page, the filters and the alerts cursor ----

function params() { return new URLSearchParams(location.search); }

function setParams(p, replace) {
  const url = "?" + p.toString();
  if (replace) history.replaceState(null, "", url); else history.pushState(null, "", url);
}

function currentPage() { return params().get("page") || "alerts"; }

function show(page) {
  for (const s of document.querySelectorAll("section.page")) s.hidden = s.id !== "page-" + page;
  $("#login").hidden = true;
  for (const a of document.querySelectorAll("nav a")) {
    if (a.dataset.page === page) a.setAttribute("aria-current", "page"); else a.removeAttribute("aria-current");
  }
  if (page !== "alerts") stopStream();
  const open = { alerts: openAlerts, overview: loadOverview, rules: loadRules, config: loadConfig, drops: loadDrops }[page];
  if (open) open().catch(report);
}

function report(e) {
  const s = $("#status");
  if (s && currentPage() === "alerts") { s.textContent = e.message; s.className = "down"; }
  console.error(e);
}

function showLogin() {
  stopStream();
  for (const s of document.querySelectorAll("section.page")) s.hidden = true;
  $("#login").hidden = false;
  $("#logout").hidden = true;
  $("#who").textContent = "";
  $("#token").focus();
}

// ---- alerts ----

const alerts = {
  source: null,
  paused: false,
  pending: [],
  queue: [],
  newest: 0,
  oldest: 0,
  received: 0,
  seen: new Set(),
  scheduled: false,
  cursorTimer: null,
  selected: null,
};
window.consoleStats = alerts; // read by the browser tests

function filterParams() {
  const out = new URLSearchParams();
  const p = params();
  for (const k of ["priority", "rule", "tag", "source", "hostname", "q"]) if (p.get(k)) out.set(k, p.get(k));
  // The time picker holds local time; the server takes RFC 3339.
  const since = p.get("since") && new Date(p.get("since"));
  if (since && !isNaN(since)) out.set("since", since.toISOString());
  return out;
}

function alertRow(a) {
  const tr = el("tr", { class: "p" + a.priority_num, tabindex: 0, dataset: { seq: a.seq } },
    el("td", {}, a.seq),
    el("td", {}, a.time.replace("T", " ").replace("Z", "")),
    el("td", { class: "prio" }, a.priority),
    el("td", {}, a.rule),
    el("td", {}, a.hostname),
    el("td", { class: "out" }, a.output));
  tr.alert = a;
  return tr;
}

function stopStream() {
  if (alerts.source) { alerts.source.close(); alerts.source = null; }
}

async function openAlerts() {
  stopStream();
  const p = params();
  const f = $("#filters");
  for (const k of ["priority", "rule", "tag", "source", "hostname", "q", "since"]) f.elements[k].value = p.get(k) || "";
  Object.assign(alerts, { newest: 0, oldest: 0, received: 0, pending: [], queue: [] });
  alerts.seen = new Set();
  $("#alerts").replaceChildren();
  $("#notice").hidden = true;
  const cursor = p.get("cursor");
  const q = filterParams();
  if (cursor) q.set("before", String(Number(cursor) + 1));
  q.set("limit", "300");
  const page = await api("/alerts?" + q.toString());
  const body = $("#alerts");
  for (const a of page.alerts) { alerts.seen.add(a.seq); body.append(alertRow(a)); }
  alerts.oldest = page.alerts.length ? page.alerts[page.alerts.length - 1].seq : page.head + 1;
  alerts.newest = cursor ? Number(cursor) : page.head;
  updateShown();
  connect();
}

function connect() {
  const q = filterParams();
  q.set("after", String(alerts.newest));
  const es = new EventSource(API + "/alerts/stream?" + q.toString());
  alerts.source = es;
  const status = $("#status");
  es.onopen = () => { status.textContent = alerts.paused ? "paused" : "live"; status.className = "live"; };
  es.onerror = () => {
    if (es.readyState === EventSource.CLOSED) {
      // The server refused the stream (signed out, bad filter): ask why, then retry.
      status.textContent = "disconnected"; status.className = "down";
      api("/session").then(() => setTimeout(() => { if (alerts.source === es) connect(); }, 1000)).catch(() => {});
    } else {
      status.textContent = "reconnecting…"; status.className = "down";
    }
  };
  es.addEventListener("alert", (m) => {
    const a = JSON.parse(m.data);
    if (alerts.seen.has(a.seq)) return; // never twice
    alerts.seen.add(a.seq);
    alerts.received += 1;
    alerts.newest = Math.max(alerts.newest, a.seq);
    alerts.lastAt = Date.now();
    if (alerts.paused) alerts.pending.push(a); else alerts.queue.push(a);
    schedule();
    saveCursor();
  });
  es.addEventListener("lost", (m) => {
    const d = JSON.parse(m.data);
    const n = $("#notice");
    n.textContent = d.count + " alerts were trimmed from the log while you were away (the log keeps the newest only); showing from seq " + d.next_seq + ".";
    n.hidden = false;
    alerts.newest = Math.max(alerts.newest, d.next_seq - 1);
  });
}

function schedule() {
  if (alerts.scheduled) return;
  alerts.scheduled = true;
  requestAnimationFrame(flush);
}

/** Puts what arrived since the last frame at the top, in one DOM change; keeps the table bounded. */
function flush() {
  alerts.scheduled = false;
  if (!alerts.queue.length) return;
  const frag = document.createDocumentFragment();
  for (let i = alerts.queue.length - 1; i >= 0; i--) frag.append(alertRow(alerts.queue[i]));
  alerts.queue = [];
  const body = $("#alerts");
  body.prepend(frag);
  while (body.rows.length > MAX_ROWS) {
    const last = body.lastElementChild;
    alerts.seen.delete(Number(last.dataset.seq));
    last.remove();
  }
  const lastRow = body.lastElementChild;
  if (lastRow) alerts.oldest = Number(lastRow.dataset.seq);
  updateShown();
}

function updateShown() {
  const n = $("#alerts").rows.length;
  $("#shown").textContent = n + " shown, newest seq " + alerts.newest + (alerts.pending.length ? ", " + alerts.pending.length + " waiting" : "");
}

function saveCursor() {
  if (alerts.cursorTimer) return;
  alerts.cursorTimer = setTimeout(() => {
    alerts.cursorTimer = null;
    const p = params();
    if ((p.get("page") || "alerts") !== "alerts") return;
    p.set("cursor", String(alerts.newest));
    setParams(p, true);
  }, 300);
}

async function loadOlder() {
  const q = filterParams();
  q.set("before", String(alerts.oldest));
  q.set("limit", "300");
  const page = await api("/alerts?" + q.toString());
  const body = $("#alerts");
  for (const a of page.alerts) {
    if (alerts.seen.has(a.seq)) continue;
    alerts.seen.add(a.seq);
    body.append(alertRow(a));
  }
  if (page.alerts.length) alerts.oldest = page.alerts[page.alerts.length - 1].seq;
  $("#older").disabled = page.alerts.length === 0;
  updateShown();
}

function showDetail(tr) {
  const a = tr.alert;
  if (alerts.selected) alerts.selected.classList.remove("selected");
  alerts.selected = tr;
  tr.classList.add("selected");
  renderDetail(a);
  // The table holds a list view of long alerts; the panel shows the whole one.
  if (a.truncated) api("/alert?seq=" + a.seq).then((full) => { if (alerts.selected === tr) renderDetail(full); }).catch(report);
}

function renderDetail(a) {
  $("#detail-title").textContent = a.rule;
  const meta = [["Seq", a.seq], ["Time", a.time], ["Priority", a.priority], ["Host", a.hostname], ["Source", a.source],
    ["Tags", a.tags.join(", ") || "none"], ["Rules revision", a.rules_revision || "unknown"], ["Origin", a.origin], ["Output", a.output]];
  $("#detail-meta").replaceChildren(...meta.flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, v)]));
  fill($("#detail-fields tbody"), Object.entries(a.fields).map(([k, v]) => el("tr", {}, el("td", {}, k), el("td", {}, v))));
  $("#detail-cmd").value = "falco-api tail --after " + (a.seq - 1);
  $("#detail").hidden = false;
  if (tuning.seq !== a.seq) { $("#tune-form").hidden = true; tuning.seq = a.seq; tuning.alert = a; }
}

// ---- "Tune this rule…": an exception from the alert in the detail panel (admin only) ----

const tuning = { seq: 0, alert: null };

async function openTune() {
  const a = tuning.alert;
  const r = await api("/rules/tune", { method: "POST", body: { seq: a.seq, dry_run: true } });
  fill($("#tune-fields"), r.offered_fields.map((f) => el("label", { class: "tune-field" },
    el("input", { type: "checkbox", value: f }), " " + f + " = " + (a.fields[f] ?? ""))));
  $("#tune-result").replaceChildren(r.offered_fields.length ? "" : "This alert carries no fields of " + r.source + " to key on.");
  $("#tune-entry").textContent = "";
  $("#tune-save").disabled = true;
  $("#tune-form").hidden = false;
}

function tuneBody(dryRun) {
  const fields = [...document.querySelectorAll("#tune-fields input:checked")].map((i) => i.value);
  return { seq: tuning.seq, fields, comps: [$("#tune-comp").value], comment: $("#tune-comment").value, dry_run: dryRun };
}

function showTune(r) {
  const p = r.preview;
  const counts = (c) => `${c.examined} alerts: ${c.suppressed} suppressed, ${c.alerting} still alerting` +
    (c.uncounted ? `, ${c.uncounted} not counted` : "");
  const what = (r.reused ? "Adds values to the rule's exception " : "A new exception ") + r.exception + " on " + r.rule;
  const example = (kind) => (e) => el("li", { class: kind }, `${kind === "suppressed" ? "suppressed" : "still alerting"} #${e.seq} ${e.hostname}: ${e.output}`);
  const summary = el("p", { id: "tune-summary" }, r.revision ? `Saved as revision ${r.revision}. ${what}.` : what + ".");
  $("#tune-entry").textContent = r.entry;
  if (!p) { $("#tune-result").replaceChildren(summary, el("p", {}, "No preview: the log could not be read.")); return; }
  $("#tune-result").replaceChildren(
    summary,
    el("p", { id: "tune-counts" }, `Stored alerts of the rule (back to ${p.reaches || "-"}): ${counts(p.all)}. Since ${p.recent_since}: ${counts(p.recent)}.`),
    p.missing_fields.length ? el("p", {}, "Not counted: some of the rule's alerts do not carry " + p.missing_fields.join(", ") + ".") : "",
    el("ul", { id: "tune-examples" }, p.suppressed.map(example("suppressed")), p.alerting.map(example("alerting"))));
}

async function tuneNow(dryRun) {
  try {
    const r = await api("/rules/tune", { method: "POST", body: tuneBody(dryRun) });
    showTune(r);
    $("#tune-save").disabled = !dryRun;
  } catch (e) {
    $("#tune-result").replaceChildren(el("p", { class: "error", role: "alert" }, e.message));
    $("#tune-save").disabled = true;
  }
}

function setupAlerts() {
  $("#filters").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const p = new URLSearchParams();
    p.set("page", "alerts");
    const f = ev.target.elements;
    for (const k of ["priority", "rule", "tag", "source", "hostname", "q", "since"]) if (f[k].value.trim()) p.set(k, f[k].value.trim());
    setParams(p, false);
    openAlerts().catch(report);
  });
  $("#clear-filters").addEventListener("click", () => {
    setParams(new URLSearchParams({ page: "alerts" }), false);
    openAlerts().catch(report);
  });
  $("#pause").addEventListener("click", (ev) => {
    alerts.paused = !alerts.paused;
    ev.target.textContent = alerts.paused ? "Resume" : "Pause";
    ev.target.setAttribute("aria-pressed", String(alerts.paused));
    $("#status").textContent = alerts.paused ? "paused" : "live";
    if (!alerts.paused) { alerts.queue.push(...alerts.pending); alerts.pending = []; schedule(); }
    updateShown();
  });
  $("#older").addEventListener("click", () => loadOlder().catch(report));
  const scroll = $("#alerts-scroll");
  scroll.addEventListener("scroll", () => {
    if (scroll.scrollTop + scroll.clientHeight >= scroll.scrollHeight - 40 && !alerts.loadingOlder) {
      alerts.loadingOlder = true;
      loadOlder().catch(report).finally(() => { alerts.loadingOlder = false; });
    }
  });
  const body = $("#alerts");
  body.addEventListener("click", (ev) => { const tr = ev.target.closest("tr"); if (tr) showDetail(tr); });
  body.addEventListener("keydown", (ev) => {
    const tr = ev.target.closest("tr");
    if (!tr) return;
    if (ev.key === "Enter" || ev.key === " ") { ev.preventDefault(); showDetail(tr); }
    if (ev.key === "ArrowDown" && tr.nextElementSibling) { ev.preventDefault(); tr.nextElementSibling.focus(); }
    if (ev.key === "ArrowUp" && tr.previousElementSibling) { ev.preventDefault(); tr.previousElementSibling.focus(); }
  });
  $("#close-detail").addEventListener("click", () => { $("#detail").hidden = true; if (alerts.selected) alerts.selected.focus(); });
  $("#tune-open").addEventListener("click", () => openTune().catch(report));
  $("#tune-preview").addEventListener("click", () => tuneNow(true));
  $("#tune-form").addEventListener("submit", (ev) => { ev.preventDefault(); tuneNow(false); });
  $("#tune-fields").addEventListener("change", () => { $("#tune-save").disabled = true; });
  $("#tune-comp").addEventListener("change", () => { $("#tune-save").disabled = true; });
  $("#copy-cmd").addEventListener("click", () => {
    const input = $("#detail-cmd");
    input.select();
    if (navigator.clipboard) navigator.clipboard.writeText(input.value).catch(() => document.execCommand("copy"));
    else document.execCommand("copy");
  });
}

// ---- overview ----

function chart(target, buckets, label) {
  const w = 600, h = 120;
  const max = Math.max(1, ...buckets.map((b) => b.reduce((x, y) => x + y, 0)));
  const bw = w / buckets.length;
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", `0 0 ${w} ${h}`);
  svg.setAttribute("preserveAspectRatio", "none");
  svg.setAttribute("role", "img");
  const total = buckets.reduce((s, b) => s + b.reduce((x, y) => x + y, 0), 0);
  svg.setAttribute("aria-label", `${label}: ${total} alerts, at most ${max} in one bar`);
  buckets.forEach((b, i) => {
    let y = h;
    b.forEach((n, p) => {
      if (!n) return;
      const bh = (n / max) * (h - 4);
      y -= bh;
      const r = document.createElementNS(ns, "rect");
      r.setAttribute("x", String(i * bw + 0.5));
      r.setAttribute("y", String(y));
      r.setAttribute("width", String(Math.max(1, bw - 1)));
      r.setAttribute("height", String(bh));
      r.setAttribute("fill", COLORS[p]);
      const t = document.createElementNS(ns, "title");
      t.textContent = `${PRIORITIES[p]}: ${n}`;
      r.append(t);
      svg.append(r);
    });
  });
  target.replaceChildren(svg);
}

async function loadOverview() {
  const o = await api("/overview");
  chart($("#chart-hour"), o.hour, "Last hour");
  chart($("#chart-day"), o.day, "Last day");
  $("#legend").replaceChildren(...PRIORITIES.map((p, i) => el("span", {}, el("i", { class: "c" + i }), p)));
  const rows = (list) => list.map((r) => el("tr", {}, el("td", {}, r.name), el("td", {}, r.count)));
  fill($("#top-rules tbody"), rows(o.top_rules));
  fill($("#top-hosts tbody"), rows(o.top_hosts));
  fill($("#overview-drops tbody"), Object.entries(o.drops_last_day).map(([k, v]) => el("tr", {}, el("td", {}, k), el("td", {}, v))));
  fill($("#nodes tbody"), o.nodes.map((n) => el("tr", {}, el("td", {}, n.hostname), el("td", {}, n.last_seen), el("td", {}, n.alerts),
    el("td", {}, n.alert_rate.toFixed(1)), el("td", {}, n.event_rate.toFixed(1)), el("td", {}, n.syscall_drops))));
}

// ---- rules ----

const editor = { name: null, revision: 0, timer: null, seq: 0 };

async function loadRules() {
  const r = await api("/rules");
  $("#rules-revision").textContent = "Revision " + r.revision + "; rules in force built from revision " + r.in_force + ".";
  fill($("#rule-files tbody"), r.files.map((f) => el("tr", {},
    el("td", {}, el("a", { href: "#", dataset: { file: f.name } }, f.name)),
    el("td", {}, f.revision), el("td", {}, f.author || ""), el("td", {}, f.time || ""), el("td", {}, f.comment || ""))));
  fill($("#rules-table tbody"), r.rules.map((rule) => el("tr", {},
    el("td", {}, rule.name), el("td", {}, rule.file), el("td", {}, rule.priority), el("td", {}, rule.source),
    el("td", {}, rule.tags.join(", ")),
    el("td", {}, session.admin
      ? el("label", {}, el("input", { type: "checkbox", checked: rule.enabled, dataset: { rule: rule.name }, "aria-label": "Enable " + rule.name }), rule.enabled ? " enabled" : " disabled")
      : (rule.enabled ? "enabled" : "disabled")))));
  const p = params();
  if (p.get("file")) await openFile(p.get("file"));
}

async function openFile(name) {
  const p = params();
  if (p.get("file") !== name) { p.set("file", name); setParams(p, true); }
  $("#file-panel").hidden = false;
  $("#file-title").textContent = name;
  $("#diff").replaceChildren();
  const h = await api("/rules/history?name=" + encodeURIComponent(name));
  fill($("#file-history tbody"), h.entries.map((e, i) => el("tr", {},
    el("td", {}, el("input", { type: "checkbox", class: "pick", value: e.revision, "aria-label": "Compare revision " + e.revision, checked: i < 2 })),
    el("td", {}, e.revision), el("td", {}, e.time), el("td", {}, e.author), el("td", {}, e.action), el("td", {}, e.comment),
    el("td", { class: "admin-only" }, el("button", { type: "button", class: "rollback", dataset: { revision: e.revision } }, "Roll back to " + e.revision)))));
  editor.name = name;
  try {
    const f = await api("/rules/file?name=" + encodeURIComponent(name));
    editor.revision = f.revision;
    $("#editor").value = f.content;
  } catch (e) {
    if (e.status !== 404) throw e;
    editor.revision = 0;
    $("#editor").value = "";
  }
  $("#editor-name").textContent = name;
  $("#editor-revision").textContent = editor.revision || "new";
  $("#diagnostics").replaceChildren();
  $("#save-result").textContent = "";
  gutter([]);
  if (h.entries.length >= 2) await compare();
}

async function compare() {
  const picked = [...document.querySelectorAll("#file-history .pick:checked")].map((c) => Number(c.value)).sort((a, b) => a - b);
  if (picked.length !== 2) { $("#diff").replaceChildren(el("p", {}, "Choose exactly two revisions.")); return; }
  const d = await api(`/rules/diff?name=${encodeURIComponent(editor.name)}&from=${picked[0]}&to=${picked[1]}`);
  $("#diff").replaceChildren(el("h4", {}, `Revision ${d.from} → ${d.to}`),
    el("table", {}, el("thead", {}, el("tr", {}, el("th", { scope: "col", class: "no" }, "#"), el("th", { scope: "col" }, "Revision " + d.from), el("th", { scope: "col", class: "no" }, "#"), el("th", { scope: "col" }, "Revision " + d.to))),
      el("tbody", {}, d.rows.map((r) => el("tr", { class: r.kind },
        el("td", { class: "no" }, r.left_no ?? ""), el("td", { class: "l" }, r.left),
        el("td", { class: "no" }, r.right_no ?? ""), el("td", { class: "r" }, r.right))))));
}

function gutter(bad) {
  const n = $("#editor").value.split("\n").length;
  const pre = $("#gutter");
  pre.replaceChildren(...Array.from({ length: n }, (_, i) => el("span", { class: bad.includes(i + 1) ? "bad" : null, dataset: { line: i + 1 } }, (i + 1) + "\n")));
}

function diagnosticItem(d, kind) {
  return el("li", { class: kind, dataset: { line: d.line, column: d.column } },
    `${kind === "err" ? "Error" : "Warning"} at line ${d.line}, column ${d.column}: ${d.item ? d.item + ": " : ""}${d.message}`);
}

function showDiagnostics(error, warnings) {
  const items = [];
  if (error) items.push(diagnosticItem(error, "err"));
  for (const w of warnings || []) items.push(diagnosticItem(w, "warn"));
  $("#diagnostics").replaceChildren(...items);
  gutter(error ? [error.line] : []);
}

async function validateNow() {
  const seq = ++editor.seq;
  const r = await api("/rules/validate", { method: "POST", body: { name: editor.name, content: $("#editor").value } });
  if (seq !== editor.seq) return; // a newer edit is being checked
  showDiagnostics(r.ok ? null : r.error, r.warnings);
  $("#diagnostics").dataset.checked = String(seq);
}

function setupRules() {
  $("#rule-files").addEventListener("click", (ev) => {
    const a = ev.target.closest("a[data-file]");
    if (a) { ev.preventDefault(); openFile(a.dataset.file).catch(report); }
  });
  $("#new-file-go").addEventListener("click", () => { const n = $("#new-file").value.trim(); if (n) openFile(n).catch(report); });
  $("#compare").addEventListener("click", () => compare().catch(report));
  $("#file-history").addEventListener("click", async (ev) => {
    const b = ev.target.closest("button.rollback");
    if (!b) return;
    const r = await api("/rules/rollback", { method: "POST", body: { name: editor.name, revision: Number(b.dataset.revision), comment: "rolled back from the console" } })
      .catch((e) => { $("#save-result").textContent = e.message; });
    if (r) { await loadRules(); $("#save-result").textContent = "Rolled back as revision " + r.revision; }
  });
  $("#editor").addEventListener("input", () => {
    gutter([]);
    clearTimeout(editor.timer);
    editor.timer = setTimeout(() => validateNow().catch(report), 250);
  });
  $("#editor").addEventListener("scroll", () => { $("#gutter").scrollTop = $("#editor").scrollTop; });
  $("#save").addEventListener("click", async () => {
    const out = $("#save-result");
    try {
      const r = await api("/rules/file", { method: "PUT", body: { name: editor.name, content: $("#editor").value, expected_revision: editor.revision, comment: $("#save-comment").value } });
      await loadRules();
      out.textContent = "Saved as revision " + r.revision;
    } catch (e) {
      if (e.body && e.body.diagnostic) showDiagnostics(e.body.diagnostic, e.body.warnings);
      out.textContent = e.status === 409 ? "Not saved: " + e.message + ". Reload the file to see the other change." : "Not saved: " + e.message;
    }
  });
  $("#rules-table").addEventListener("change", async (ev) => {
    const c = ev.target.closest("input[data-rule]");
    if (!c) return;
    await api("/rules/toggle", { method: "POST", body: { rules: [c.dataset.rule], enabled: c.checked, comment: "from the console" } }).catch(report);
    await loadRules();
  });
  const tag = (enabled) => async () => {
    const t = $("#tag-name").value.trim();
    if (!t) return;
    await api("/rules/toggle", { method: "POST", body: { tags: [t], enabled, comment: "from the console" } }).catch(report);
    await loadRules();
  };
  $("#tag-enable").addEventListener("click", tag(true));
  $("#tag-disable").addEventListener("click", tag(false));
}

// ---- configuration ----

async function loadConfig() {
  const c = await api("/config");
  $("#config-revision").textContent = "Revision " + c.revision;
  const keys = $("#config-key");
  if (!keys.options.length) keys.replaceChildren(...c.entries.map((e) => el("option", { value: e.key }, e.key)));
  fill($("#config-table tbody"), c.entries.map((e) => el("tr", {},
    el("td", { title: e.description }, e.key), el("td", {}, e.value), el("td", {}, e.origin), el("td", {}, e.revision || ""),
    el("td", {}, e.accepts),
    el("td", { class: "admin-only" }, e.origin === "api" ? el("button", { type: "button", class: "unset", dataset: { key: e.key } }, "Unset") : ""))));
  const h = await api("/config/history");
  fill($("#config-history tbody"), h.entries.map((e) => el("tr", {}, el("td", {}, e.revision), el("td", {}, e.time), el("td", {}, e.author),
    el("td", {}, e.action), el("td", {}, e.changes.map((x) => x.target.replace(/^config:/, "")).join(", ")), el("td", {}, e.comment))));
}

function setupConfig() {
  $("#config-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const f = ev.target.elements;
    try {
      const r = await api("/config/set", { method: "POST", body: { key: f.key.value, value: f.value.value, comment: f.comment.value } });
      $("#config-result").textContent = "Set at revision " + r.revision + (r.warnings.length ? " (" + r.warnings.join("; ") + ")" : "");
      await loadConfig();
    } catch (e) { $("#config-result").textContent = e.message; }
  });
  $("#config-table").addEventListener("click", async (ev) => {
    const b = ev.target.closest("button.unset");
    if (!b) return;
    try { await api("/config/unset", { method: "POST", body: { key: b.dataset.key } }); await loadConfig(); }
    catch (e) { $("#config-result").textContent = e.message; }
  });
}

// ---- drops ----

async function loadDrops() {
  const p = params();
  const f = $("#drop-filters").elements;
  f.stage.value = p.get("stage") || "";
  f.source.value = p.get("dsource") || "";
  const q = new URLSearchParams();
  if (p.get("stage")) q.set("stage", p.get("stage"));
  if (p.get("dsource")) q.set("source", p.get("dsource"));
  const d = await api("/drops?" + q.toString());
  fill($("#drop-rates tbody"), Object.entries(d.per_minute_last_hour).map(([k, v]) => el("tr", {}, el("td", {}, k), el("td", {}, v.toFixed(2)))));
  fill($("#drops-table tbody"), d.drops.map((r) => el("tr", {}, el("td", {}, r.seq), el("td", {}, r.time), el("td", {}, r.stage), el("td", {}, r.source),
    el("td", {}, r.client), el("td", {}, r.n_drops), el("td", {}, r.n_evts), el("td", {}, r.message))));
}

function setupDrops() {
  $("#drop-filters").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const p = new URLSearchParams({ page: "drops" });
    const f = ev.target.elements;
    if (f.stage.value.trim()) p.set("stage", f.stage.value.trim());
    if (f.source.value.trim()) p.set("dsource", f.source.value.trim());
    setParams(p, false);
    loadDrops().catch(report);
  });
}

// ---- start ----

async function start() {
  try {
    session = await api("/session");
  } catch (_) {
    showLogin();
    return;
  }
  document.body.classList.toggle("admin", session.admin);
  $("#who").textContent = session.identity + (session.admin ? " (admin)" : " (reader)");
  $("#logout").hidden = false;
  show(currentPage());
}

document.addEventListener("DOMContentLoaded", () => {
  setupAlerts();
  setupRules();
  setupConfig();
  setupDrops();
  $("#login-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    try {
      session = await api("/login", { method: "POST", body: { token: $("#token").value } });
      $("#token").value = "";
      $("#login-error").textContent = "";
      await start();
    } catch (e) {
      $("#login-error").textContent = e.message;
    }
  });
  $("#logout").addEventListener("click", async () => {
    await api("/logout", { method: "POST" }).catch(() => {});
    session = null;
    showLogin();
  });
  for (const a of document.querySelectorAll("nav a")) {
    a.addEventListener("click", (ev) => {
      ev.preventDefault();
      setParams(new URLSearchParams({ page: a.dataset.page }), false);
      show(a.dataset.page);
    });
  }
  window.addEventListener("popstate", () => { if (session) show(currentPage()); });
  start();
});
