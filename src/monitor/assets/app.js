// The xvs monitor's console: live figures by server-sent events, charts of
// the last 15 minutes, and (for admins) changes through /api/change, which
// runs them as xvsadm commands. Plain DOM code, no framework.
"use strict";

const HISTORY = 900; // points: 15 minutes at one per second
const SHARE_BUCKET_MS = 10000; // new connections summed per share bar

let me = null; // {user, role, csrf, schedulers}
let hist = []; // points, oldest first
let last = null; // the latest frame
let shape = ""; // services and real servers the DOM was built for
const svcDom = new Map(); // service id -> {root, rows: Map(dest id -> row), charts}

// ---- small helpers ----------------------------------------------------------

function h(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const k in attrs || {}) {
    if (k === "class") e.className = attrs[k];
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), attrs[k]);
    else e.setAttribute(k, attrs[k]);
  }
  for (const c of kids) if (c !== null && c !== undefined) e.append(c);
  return e;
}

const si = (v) => Charts.si(v);
const bits = (bytesPerSec) => si(bytesPerSec * 8) + "bit/s";
const isAdmin = () => me && me.role === "admin";
const FWD = { dr: "Route (DR)", tun: "Tunnel", nat: "Masq (NAT)", fullnat: "FullNAT" };

function ns(v) {
  if (v === null || v === undefined) return "–";
  if (v >= 1e6) return (v / 1e6).toFixed(2) + " ms";
  if (v >= 1e3) return (v / 1e3).toFixed(1) + " µs";
  return v + " ns";
}

function time(ms) {
  const d = new Date(ms);
  return d.toLocaleTimeString([], { hour12: false });
}

function setText(el, text) {
  if (el.textContent !== text) el.textContent = text;
}

function fillTable(tbody, rows) {
  tbody.textContent = "";
  for (const r of rows) tbody.append(h("tr", {}, ...r.map((c) => h("td", {}, String(c)))));
}

function banner(text, kind) {
  const b = document.getElementById("banner");
  document.getElementById("banner-text").textContent = text;
  b.className = "banner " + kind;
  b.hidden = false;
}

// ---- changes ----------------------------------------------------------------

async function change(body) {
  let r, j;
  try {
    r = await fetch("/api/change", {
      method: "POST",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": me.csrf },
      body: JSON.stringify(body),
      credentials: "same-origin",
    });
    j = await r.json().catch(() => ({}));
  } catch (e) {
    banner("the monitor did not answer: " + e, "error");
    return false;
  }
  if (r.status === 401) {
    location.href = "/login";
    return false;
  }
  if (r.ok) banner("done: " + j.command, "ok");
  else banner(j.error || "HTTP " + r.status, "error");
  if (!document.getElementById("tab-audit").hidden) loadAudit();
  return r.ok;
}

// ---- the overview -------------------------------------------------------------

function destKey(svc, dest) {
  return svc + " " + dest;
}

function buildDestRow(s, d) {
  const cells = {};
  const td = (name) => (cells[name] = h("td", { class: name }));
  const tr = h("tr", { "data-dest": d.id },
    h("td", { class: "addr" }, d.id), td("fwd"), td("weight"), td("health"), td("check"),
    td("active"), td("inactive"), td("conns"), td("cps"), td("inpps"), td("outpps"), td("inbps"), td("outbps"));
  if (isAdmin()) {
    const w = h("input", { type: "number", min: "0", max: "65535", class: "w-input", value: String(d.weight), "aria-label": "weight of " + d.id });
    const set = h("button", { type: "button", class: "act-set", onclick: () => change({ op: "weight", service: s.id, dest: d.id, weight: w.value }) }, "Set weight");
    const drain = h("button", { type: "button", class: "act-drain", onclick: () => change({ op: d.weight === 0 ? "restore" : "drain", service: s.id, dest: d.id }) });
    const rm = h("button", { type: "button", class: "act-remove danger" }, "Remove");
    rm.addEventListener("click", () => {
      if (rm.dataset.armed) change({ op: "remove", service: s.id, dest: d.id });
      else {
        rm.dataset.armed = "1";
        rm.textContent = "Confirm removal";
        setTimeout(() => { delete rm.dataset.armed; rm.textContent = "Remove"; }, 4000);
      }
    });
    tr.append(h("td", { class: "actions admin" }, w, set, drain, rm));
    cells.w = w;
    cells.drain = drain;
  }
  return { tr, cells };
}

function buildService(s) {
  const root = h("article", { class: "svc", "data-svc": s.id });
  const head = h("div", { class: "svc-head" });
  const title = h("h2", {}, s.name);
  const sched = h("span", { class: "sched" });
  const figs = h("span", { class: "figs muted" });
  head.append(title, sched, figs);
  if (isAdmin()) {
    const sel = h("select", { class: "sched-select", "aria-label": "scheduler of " + s.name });
    for (const n of me.schedulers || []) sel.append(h("option", { value: n }, n));
    sel.value = s.sched;
    const btn = h("button", { type: "button", class: "act-sched", onclick: () => change({ op: "scheduler", service: s.id, sched: sel.value }) }, "Change scheduler");
    head.append(h("span", { class: "admin" }, sel, btn));
  }
  const table = h("table", { class: "dests" });
  const cols = ["Real server", "Mode", "Weight (conf / eff)", "Health", "Last check", "Active", "Inactive", "Conns", "CPS", "In pkt/s", "Out pkt/s", "In", "Out"];
  if (isAdmin()) cols.push("Actions");
  table.append(h("thead", {}, h("tr", {}, ...cols.map((c) => h("th", {}, c)))));
  const tbody = h("tbody");
  table.append(tbody);
  const rows = new Map();
  for (const d of s.dests) {
    const r = buildDestRow(s, d);
    rows.set(d.id, r);
    tbody.append(r.tr);
  }
  root.append(head, table);
  if (isAdmin()) {
    const addr = h("input", { class: "add-addr", placeholder: "address:port", size: "22" });
    const fwd = h("select", { class: "add-fwd" }, ...Object.keys(FWD).map((k) => h("option", { value: k }, FWD[k])));
    fwd.value = s.dests.length ? s.dests[0].fwd : "dr";
    const w = h("input", { type: "number", class: "add-weight", value: "1", min: "0", max: "65535" });
    const add = h("button", { type: "button", class: "act-add", onclick: () => change({ op: "add", service: s.id, dest: addr.value.trim(), fwd: fwd.value, weight: w.value }) }, "Add real server");
    root.append(h("div", { class: "add admin" }, "New real server: ", addr, " mode ", fwd, " weight ", w, " ", add));
  }
  const chart = (title, cls) => {
    const svg = Charts.svg("chart " + cls);
    const legend = h("div", { class: "legend" });
    return { box: h("figure", { class: cls }, h("figcaption", {}, title), svg, legend), svg, legend };
  };
  const charts = {
    cps: chart("New connections per second, by real server", "c-cps"),
    share: chart("Share of new connections (last 15 min)", "c-share"),
    pps: chart("Packets per second (in, out)", "c-pps"),
  };
  root.append(h("div", { class: "charts" }, charts.cps.box, charts.share.box, charts.pps.box));
  return { root, rows, charts, title, sched, figs };
}

function updateService(dom, s) {
  setText(dom.sched, "scheduler " + s.sched + (s.flags.length ? " (" + s.flags.join(",") + ")" : "") +
    (s.persistence ? ` · persistent ${s.persistence.timeout} s /${s.persistence.netmask}` : ""));
  setText(dom.figs, `${s.rate.cps} conn/s · ${s.active} active · ${s.inactive} inactive · ${si(s.totals.conns)} conns · in ${si(s.rate.inpps)} pkt/s ${bits(s.rate.inbps)} · out ${si(s.rate.outpps)} pkt/s ${bits(s.rate.outbps)}`);
  for (const d of s.dests) {
    const r = dom.rows.get(d.id);
    if (!r) continue;
    const c = r.cells;
    setText(c.fwd, (FWD[d.fwd] || d.fwd) + (d.proxy_protocol ? " + PROXY " + d.proxy_protocol : ""));
    const eff = d.eff_weight === null ? "removed" : String(d.eff_weight);
    setText(c.weight, `${d.weight} / ${eff}`);
    c.weight.classList.toggle("quiesced", d.eff_weight === 0 || d.eff_weight === null);
    if (!d.health) {
      setText(c.health, "not checked");
      c.health.className = "health none";
      setText(c.check, "–");
    } else {
      setText(c.health, d.health.up ? "up" : "down");
      c.health.className = "health " + (d.health.up ? "up" : "down");
      c.health.title = d.health.reason;
      const checks = d.health.checks.map((k) => `${k.name}: ${k.last_ok === null ? "not run yet" : k.last_ok ? "passed" : "failed (" + k.last_failure + ")"}`);
      setText(c.check, checks.join("; ") + (d.health.reason ? " — " + d.health.reason : ""));
    }
    setText(c.active, String(d.active));
    setText(c.inactive, String(d.inactive));
    setText(c.conns, String(d.totals.conns));
    setText(c.cps, String(d.rate.cps));
    setText(c.inpps, si(d.rate.inpps));
    setText(c.outpps, si(d.rate.outpps));
    setText(c.inbps, bits(d.rate.inbps));
    setText(c.outbps, bits(d.rate.outbps));
    if (c.drain) {
      setText(c.drain, d.weight === 0 ? "Restore" : "Drain");
      c.drain.onclick = () => change({ op: d.weight === 0 ? "restore" : "drain", service: s.id, dest: d.id });
      if (document.activeElement !== c.w && c.w.dataset.shown !== String(d.weight)) {
        c.w.value = String(d.weight);
        c.w.dataset.shown = String(d.weight);
      }
    }
  }
  drawCharts(dom, s);
}

function drawCharts(dom, s) {
  const ts = hist.map((p) => p.t);
  const dests = s.dests.map((d) => d.id);
  const series = (f) => dests.map((id) => ({ name: id, values: hist.map((p) => f(p.dest[destKey(s.id, id)])) }));
  Charts.timeSeries(dom.charts.cps.svg, ts, series((x) => (x ? x.cps : 0)), { stacked: true });
  // Share: new connections summed over 10-second buckets (aligned on the
  // clock, so bars stay put), so each bar is a proportion of several
  // connections rather than of one or two.
  const spans = [], shareVals = dests.map(() => []);
  for (const p of hist) {
    const b = Math.floor(p.t / SHARE_BUCKET_MS) * SHARE_BUCKET_MS;
    if (!spans.length || spans[spans.length - 1][0] !== b) {
      spans.push([b, b + SHARE_BUCKET_MS]);
      shareVals.forEach((v) => v.push(0));
    }
    const last = spans.length - 1;
    dests.forEach((id, k) => (shareVals[k][last] += (p.dest[destKey(s.id, id)] || {}).new || 0));
  }
  Charts.shareBars(dom.charts.share.svg, spans, dests.map((id, k) => ({ name: id, values: shareVals[k] })));
  const svcPts = hist.map((p) => p.svc[s.id] || {});
  Charts.timeSeries(dom.charts.pps.svg, ts, [
    { name: "in", values: svcPts.map((p) => p.inpps || 0) },
    { name: "out", values: svcPts.map((p) => p.outpps || 0), dashed: true },
  ], {});
  // Legends: colours, and each real server's share of all new connections
  // in the window.
  const totals = shareVals.map((v) => v.reduce((a, b) => a + b, 0));
  const all = totals.reduce((a, b) => a + b, 0);
  const legend = (box, withShare) => {
    box.textContent = "";
    dests.forEach((id, k) => {
      const item = h("span", { class: withShare ? "share" : "key", "data-dest": id },
        h("i", {}), withShare ? `${id} ${all ? (100 * totals[k] / all).toFixed(1) : "0.0"}%` : id);
      item.firstChild.className = "swatch c" + (k % 8);
      if (withShare) item.dataset.count = String(totals[k]);
      box.append(item);
    });
  };
  legend(dom.charts.cps.legend, false);
  legend(dom.charts.share.legend, true);
  dom.charts.pps.legend.textContent = "";
  ["in", "out"].forEach((n, k) => dom.charts.pps.legend.append(h("span", { class: "key" }, h("i", { class: "swatch c" + k }), n)));
}

function renderOverview(f) {
  const sig = (isAdmin() ? "a|" : "v|") + f.services.map((s) => s.id + ":" + s.dests.map((d) => d.id).join(",")).join("|");
  const box = document.getElementById("services");
  if (sig !== shape) {
    shape = sig;
    svcDom.clear();
    box.textContent = "";
    for (const s of f.services) {
      const dom = buildService(s);
      svcDom.set(s.id, dom);
      box.append(dom.root);
    }
    if (!f.services.length) box.append(h("p", { class: "muted" }, "No virtual service is configured."));
  }
  for (const s of f.services) updateService(svcDom.get(s.id), s);
  // Summary cards.
  let cps = 0, inpps = 0, outpps = 0, active = 0, inactive = 0;
  for (const s of f.services) {
    cps += s.rate.cps; inpps += s.rate.inpps; outpps += s.rate.outpps; active += s.active; inactive += s.inactive;
  }
  const drops = f.drops.reduce((a, d) => a + d[1], 0);
  const card = (label, value, cls) => h("div", { class: "card " + (cls || "") }, h("b", {}, value), h("span", {}, label));
  const sum = document.getElementById("summary");
  sum.textContent = "";
  sum.append(
    card("services", String(f.services.length)),
    card("real servers down", `${f.health.down} of ${f.health.checked} checked`, f.health.down ? "bad" : ""),
    card("new conn/s", String(cps)),
    card("active / inactive", `${active} / ${inactive}`),
    card("pkt/s in / out", `${si(inpps)} / ${si(outpps)}`),
    card("workers", String(f.workers.length)),
    card("dropped frames", si(drops), drops ? "warn" : ""),
  );
  // Connection sync between directors (when a daemon runs or ran): the
  // roles, in sync or not, the peers heard.
  if (f.sync && (f.sync.roles.length || f.sync.peers.length)) {
    const y = f.sync;
    const peers = y.peers.map((p) => `${p.addr} ${(p.heard_ms / 1000).toFixed(1)} s ago`).join(", ");
    const label = y.roles.length ? `sync: ${y.in_sync ? "in sync" : "NOT in sync"}` + (peers ? ` · peer ${peers}` : "") : "sync";
    const c = card(label, y.roles.length ? y.roles.join(" + ") : "no daemon",
      y.roles.length && !y.in_sync ? "bad" : (y.events_dropped || y.ignored ? "warn" : ""),
    );
    c.id = "sync";
    c.title = [...y.daemons, y.note, `sent ${y.sent}, received ${y.received} connections; ${y.events_dropped} events dropped; ${y.refused} refused; ${y.ignored} ignored`]
      .concat(y.last_error ? ["last error: " + y.last_error] : []).join("\n");
    sum.append(c);
  }
}

// ---- the other tabs ---------------------------------------------------------

function renderHealth(f) {
  const checks = new Map();
  for (const s of f.services) for (const d of s.dests) if (d.health) for (const c of d.health.checks) {
    const e = checks.get(c.name) || { c, users: [] };
    e.users.push(d.id);
    checks.set(c.name, e);
  }
  fillTable(document.querySelector("#checks tbody"), [...checks.values()].map(({ c, users }) => [
    c.name, c.up ? "up" : "down", c.last_ok === null ? "not run yet" : c.last_ok ? "passed" : "failed", c.runs, c.failures, c.last_failure || "–", users.join(", "),
  ]));
  fillTable(document.querySelector("#events tbody"), f.events.slice().reverse().map((e) => [time(e.t), e.kind, e.text]));
}

function renderWorkers(f) {
  fillTable(document.querySelector("#workers tbody"), f.workers.map((w) => [
    w.worker, w.queue, w.core === null ? "–" : w.core, w.generation, si(w.rx), si(w.tx), w.drops, w.handoffs, w.conns, w.new_conns, w.tx_full,
    ns(w.burst_p50), ns(w.burst_p99), ns(w.burst_max),
  ]));
  fillTable(document.querySelector("#drops tbody"), f.drops.length ? f.drops : [["none", 0]]);
  fillTable(document.querySelector("#passes tbody"), f.passes.length ? f.passes : [["none", 0]]);
  fillTable(document.querySelector("#counters tbody"), f.counters.filter((c) => c[1] > 0));
  const box = document.getElementById("burst");
  let svg = box.querySelector("svg");
  if (!svg) box.append((svg = Charts.svg("chart")));
  const short = (v) => (v < 1e3 ? v + "n" : v < 1e6 ? Math.round(v / 1e3) + "µ" : Math.round(v / 1e6) + "m");
  Charts.bars(svg, f.burst.buckets.map(([ub, n]) => ({ label: short(ub), value: n })));
  setText(document.getElementById("burst-text"), f.burst.count
    ? `${si(f.burst.count)} bursts: p50 ${ns(f.burst.p50)}, p90 ${ns(f.burst.p90)}, p99 ${ns(f.burst.p99)}, p99.9 ${ns(f.burst.p999)}, max ${ns(f.burst.max)}`
    : "no burst yet");
}

let connPage = 0;
let connTimer = null;

async function loadConns() {
  const q = new URLSearchParams(new FormData(document.getElementById("conn-filter")));
  q.set("page", String(connPage));
  const r = await fetch("/api/conns?" + q.toString());
  if (r.status === 401) return (location.href = "/login");
  const j = await r.json();
  fillTable(document.querySelector("#conns tbody"), j.entries.map((e) => [
    e.proto, `${String(Math.floor(e.expire / 60)).padStart(2, "0")}:${String(e.expire % 60).padStart(2, "0")}`, e.state, e.client, e.vip, e.dest,
  ]));
  const pages = Math.max(1, Math.ceil(j.total / j.per));
  setText(document.getElementById("conn-page"), `page ${j.page + 1} of ${pages}`);
  setText(document.getElementById("conn-info"), `${j.total} matching of ${j.all} connections (listed ${(j.age_ms / 1000).toFixed(1)} s ago)` + (j.warning ? " — " + j.warning : ""));
  document.getElementById("conn-prev").disabled = j.page === 0;
  document.getElementById("conn-next").disabled = j.page + 1 >= pages;
}

async function loadAudit() {
  const r = await fetch("/api/audit");
  if (!r.ok) return;
  const j = await r.json();
  fillTable(document.querySelector("#audit tbody"), j.entries.map((e) => [new Date(e.t).toLocaleString(), e.user, e.from, e.what, e.result]));
}

// ---- frames, tabs, start ------------------------------------------------------

function render(f) {
  last = f;
  if (f.point && (!hist.length || f.point.t > hist[hist.length - 1].t)) {
    hist.push(f.point);
    if (hist.length > HISTORY) hist.splice(0, hist.length - HISTORY);
  }
  setText(document.getElementById("meta"), `v${f.version} · snapshot ${f.generation} · up ${Math.floor(f.uptime / 60)} min · ${time(f.t)}`);
  renderOverview(f);
  renderHealth(f);
  renderWorkers(f);
}

function showTab() {
  const tab = (location.hash || "#overview").slice(1);
  for (const s of document.querySelectorAll("main > section")) s.hidden = s.id !== "tab-" + tab;
  for (const a of document.querySelectorAll("nav a")) a.classList.toggle("on", a.dataset.tab === tab);
  if (tab === "conns") loadConns();
  if (tab === "audit") loadAudit();
}

function connect() {
  const live = document.getElementById("live");
  const es = new EventSource("/api/events");
  es.addEventListener("frame", (e) => {
    live.className = "live on";
    render(JSON.parse(e.data));
  });
  es.addEventListener("logout", () => (location.href = "/login"));
  es.onerror = async () => {
    live.className = "live off";
    const r = await fetch("/api/session").catch(() => null);
    if (r && r.status === 401) location.href = "/login";
  };
}

async function start() {
  const r = await fetch("/api/session");
  if (r.status === 401) return (location.href = "/login");
  me = await r.json();
  document.body.classList.add("role-" + me.role);
  document.getElementById("who").textContent = `${me.user} (${me.role})`;
  document.getElementById("logout").addEventListener("click", async () => {
    await fetch("/api/logout", { method: "POST", headers: { "X-CSRF-Token": me.csrf } });
    location.href = "/login";
  });
  document.getElementById("banner-close").addEventListener("click", () => (document.getElementById("banner").hidden = true));
  document.getElementById("conn-filter").addEventListener("submit", (e) => { e.preventDefault(); connPage = 0; loadConns(); });
  document.getElementById("conn-prev").addEventListener("click", () => { connPage = Math.max(0, connPage - 1); loadConns(); });
  document.getElementById("conn-next").addEventListener("click", () => { connPage++; loadConns(); });
  document.getElementById("conn-auto").addEventListener("change", (e) => {
    clearInterval(connTimer);
    if (e.target.checked) connTimer = setInterval(loadConns, 5000);
  });
  window.addEventListener("hashchange", showTab);
  showTab();
  const hr = await fetch("/api/history");
  if (hr.ok) hist = (await hr.json()).points;
  const st = await fetch("/api/state");
  if (st.ok) render(await st.json());
  connect();
}

start();
