// twin's review page: search, look at duplicate groups, say "duplicate" / "not duplicate",
// and learn tau from those verdicts. A client of the JSON routes only. Every text from the
// index goes into the page through textContent, never as HTML.
"use strict";

const state = { stats: null, query: null, groupsOffset: 0, groupsPage: 20, choice: null };

// -- small helpers -------------------------------------------------------------------------
function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key.startsWith("aria-") || key === "role") node.setAttribute(key, value);
    else node[key] = value;
  }
  for (const child of children) if (child) node.append(child);
  return node;
}

function say(id, text, isError = false) {
  const node = document.getElementById(id);
  node.textContent = text;
  node.classList.toggle("error", isError);
}

function headers(write) {
  const out = { "Content-Type": "application/json" };
  const key = document.getElementById("api-key").value.trim();
  if (write && key) out.Authorization = `Bearer ${key}`;
  return out;
}

// fetch JSON; an answer that is not 2xx becomes an Error with the server's detail.
async function call(method, path, body, write = false) {
  const options = { method, headers: headers(write) };
  if (body !== undefined) options.body = JSON.stringify(body);
  const response = await fetch(path, options);
  const data = await response.json().catch(() => ({}));
  if (!response.ok) {
    let detail = data.detail ?? response.statusText;
    if (Array.isArray(detail)) detail = detail.map((d) => `${d.loc.join(".")}: ${d.msg}`).join("; ");
    const error = new Error(String(detail));
    error.status = response.status;
    throw error;
  }
  return data;
}

const fmt = (x) => (x === null || x === undefined || Number.isNaN(x) ? "–" : Number(x).toFixed(4));

// -- the index's facts ---------------------------------------------------------------------
async function loadStats() {
  const stats = await call("GET", "/stats");
  state.stats = stats;
  const name = stats.model.name || "model";
  document.getElementById("facts").textContent =
    `${stats.count.toLocaleString()} ${stats.modality}s · ${stats.built_kind} · ${name} · tau ${fmt(stats.tau)}` +
    (stats.read_only ? " · read-only" : "");
  document.getElementById("key-box").hidden = !stats.writes_need_key;
  const images = stats.modality === "image";
  document.getElementById("text-query").hidden = images;
  document.getElementById("image-query").hidden = !images;
  document.getElementById("query").required = !images;
  document.getElementById("query-image").required = images;
}

// -- one stored item shown against a query: score bar, verdict buttons ----------------------
function scoreBar(score, tau) {
  const clip = (x) => Math.max(0, Math.min(1, x)) * 100;
  const bar = el("div", { class: "score-bar", role: "img",
    "aria-label": `cosine ${fmt(score)}; tau ${fmt(tau)}` });
  bar.append(el("span", { class: "fill" }), el("span", { class: "tau", title: `tau ${fmt(tau)}` }));
  bar.firstChild.style.width = `${clip(score)}%`;
  bar.lastChild.style.left = `${clip(tau)}%`;
  return bar;
}

function verdictButtons(pair, itemId, known) {
  const box = el("div", { class: "verdict", role: "group", "aria-label": `Your verdict on ${itemId}` });
  const note = el("span", { class: "said", "aria-live": "polite" });
  const buttons = [[true, "Duplicate"], [false, "Not duplicate"]].map(([duplicate, label]) => {
    const button = el("button", { type: "button", text: label, class: duplicate ? "yes" : "no" });
    button.dataset.duplicate = String(duplicate);
    button.setAttribute("aria-pressed", String(known === duplicate));
    button.addEventListener("click", () => judge(pair, itemId, duplicate, box, note));
    return button;
  });
  if (state.stats && state.stats.read_only) {
    for (const b of buttons) b.disabled = true;
    note.textContent = "read-only server: verdicts go to the index's writer";
  } else if (known !== undefined) {
    note.textContent = `saved: ${known ? "duplicate" : "not duplicate"}`;
  }
  box.append(...buttons, note);
  return box;
}

// True when a write can go: the server needs no key, or one is entered; else the page asks for it.
function keyReady(show) {
  const key = document.getElementById("api-key");
  if (!state.stats.writes_need_key || key.value.trim()) return true;
  show("this server needs its API key for writes: enter it above");
  document.getElementById("key-box").hidden = false;
  key.focus();
  return false;
}

async function judge(pair, itemId, duplicate, box, note) {
  note.classList.remove("error");
  if (!keyReady((message) => { note.textContent = message; note.classList.add("error"); })) return;
  note.textContent = "saving…";
  try {
    const verdict = await call("POST", "/feedback", { ...pair, id: itemId, duplicate }, true);
    for (const b of box.querySelectorAll("button")) {
      b.setAttribute("aria-pressed", String(b.dataset.duplicate === String(verdict.duplicate)));
    }
    note.textContent = `saved: ${verdict.duplicate ? "duplicate" : "not duplicate"} (cosine ${fmt(verdict.score)})`;
  } catch (error) {
    note.textContent = error.message;
    note.classList.add("error");
    if (error.status === 401) {
      document.getElementById("key-box").hidden = false;
      document.getElementById("api-key").focus();
    }
  }
}

function itemCard(match, tau, pair, known, extra) {
  const head = el("div", { class: "item-head" }, extra, el("code", { class: "item-id", text: match.id }));
  const card = el("li", { class: "item" }, head);
  if (match.score !== null) {  // a group's representative has no score of its own
    const duplicate = match.score > tau;
    head.append(el("span", { class: "score", text: `cosine ${fmt(match.score)}` }),
      el("span", { class: `call ${duplicate ? "dup" : "nodup"}`, text: duplicate ? "duplicate" : "not duplicate" }));
    card.append(scoreBar(match.score, tau));
  }
  if (match.text !== null && match.text !== undefined) card.append(el("p", { class: "text", text: match.text }));
  if (match.payload && Object.keys(match.payload).length) {
    card.append(el("details", {}, el("summary", { text: "payload" }),
      el("pre", { text: JSON.stringify(match.payload, null, 2) })));
  }
  if (pair) card.append(verdictButtons(pair, match.id, known));
  return card;
}

// -- search ----------------------------------------------------------------------------------
function readFile(file) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(String(reader.result).split(",", 2)[1]);
    reader.onerror = () => reject(new Error(`cannot read ${file.name}`));
    reader.readAsDataURL(file);
  });
}

async function search(event) {
  event.preventDefault();
  const k = Number(document.getElementById("k").value);
  const list = document.getElementById("results");
  try {
    let body, pair, label;
    if (state.stats.modality === "image") {
      const file = document.getElementById("query-image").files[0];
      if (!file) throw new Error("choose an image first");
      const image = await readFile(file);
      body = { images: [image], k };
      pair = { query_image: image, query_name: file.name };
      label = file.name;
    } else {
      const text = document.getElementById("query").value;
      body = { texts: [text], k };
      pair = { query: text };
      label = text;
    }
    say("search-status", "searching…");
    const [found, feedback] = await Promise.all([
      call("POST", "/search", body),
      call("GET", `/feedback?${new URLSearchParams({ query: label, limit: "1000" })}`),
    ]);
    const known = new Map(feedback.verdicts.map((v) => [v.b_id, v.duplicate]));
    const matches = found.results[0].matches;
    list.replaceChildren(...matches.map((m, n) =>
      itemCard(m, state.stats.tau, pair, known.get(m.id), el("span", { class: "rank", text: `${n + 1}.` }))));
    const above = matches.filter((m) => m.duplicate).length;
    say("search-status", matches.length
      ? `${matches.length} nearest; ${above} above tau ${fmt(state.stats.tau)}`
      : "the index is empty");
  } catch (error) {
    list.replaceChildren();
    say("search-status", error.message, true);
  }
}

// -- groups ----------------------------------------------------------------------------------
async function showGroups(data) {
  const box = document.getElementById("groups");
  if (!data.source) {
    box.replaceChildren();
    say("groups-status", "No groups loaded: compute them here, or serve a `twin groups` output with --groups FILE.");
  } else {
    const last = Math.min(data.offset + data.groups.length, data.total);
    say("groups-status", `${data.total.toLocaleString()} groups, ${data.source}; showing ` +
      (data.total ? `${data.offset + 1}–${last}` : "none"));
    const verdicts = await Promise.all(data.groups.map((g) =>
      call("GET", `/feedback?${new URLSearchParams({ id: g.representative, limit: "1000" })}`)));
    box.replaceChildren(...data.groups.map((group, n) => groupSection(group, verdicts[n].verdicts)));
  }
  state.groupsOffset = data.offset;
  document.getElementById("groups-prev").disabled = data.offset === 0;
  document.getElementById("groups-next").disabled = data.offset + data.groups.length >= data.total;
}

function groupSection(group, verdicts) {
  const known = new Map();
  for (const v of verdicts) known.set(v.a_id === group.representative ? v.b_id : v.a_id, v.duplicate);
  const tau = state.stats.tau;
  const items = group.members.map((m) => {
    const match = { id: m.id, score: m.score, text: m.stored ? m.text : "(not in the index)", payload: m.payload };
    if (m.representative) {
      return itemCard({ ...match, score: null }, tau, null, undefined,
        el("span", { class: "badge", text: "representative" }));
    }
    const pair = m.stored ? { query_id: group.representative } : null;
    return itemCard(match, tau, pair, known.get(m.id), el("span", { class: m.keep ? "badge" : "badge drop",
      text: m.keep ? "keep" : "drop" }));
  });
  return el("section", { class: "group", "aria-label": `Group ${group.number}` },
    el("h2", { text: `Group ${group.number} · ${group.members.length} items` }),
    el("ol", { class: "pairs" }, ...items));
}

async function loadGroups(offset) {
  try {
    await showGroups(await call("GET", `/groups?offset=${offset}&limit=${state.groupsPage}`));
  } catch (error) {
    say("groups-status", error.message, true);
  }
}

async function computeGroups() {
  const button = document.getElementById("compute-groups");
  button.disabled = true;
  say("groups-status", "computing groups…");
  try {
    await showGroups(await call("POST", "/groups/compute", {}));
  } catch (error) {
    say("groups-status", error.message, true);
  } finally {
    button.disabled = false;
  }
}

// -- tau from verdicts -------------------------------------------------------------------------
async function loadCounts() {
  try {
    const data = await call("GET", "/feedback?limit=1");
    say("verdict-counts", `${data.counts.duplicate} pairs called duplicate and ${data.counts.not_duplicate} ` +
      `not duplicate so far. The index's tau is ${fmt(state.stats.tau)}.`);
  } catch (error) {
    say("verdict-counts", error.message, true);
  }
}

async function calibrate(event) {
  event.preventDefault();
  const result = document.getElementById("tau-result");
  say("tau-status", "choosing tau…");
  try {
    const choice = await call("POST", "/tau/calibrate", { objective: document.getElementById("objective").value });
    state.choice = choice;
    const rows = [["tau", choice.tau_before, choice.tau]].concat(
      ["accuracy", "precision", "recall", "f1"].map((m) => [m, choice.before[m], choice.after[m]]));
    document.getElementById("tau-rows").replaceChildren(...rows.map(([name, now, next]) =>
      el("tr", {}, el("th", { scope: "row", text: name }), el("td", { text: fmt(now) }), el("td", { text: fmt(next) }))));
    document.getElementById("tau-plot").src = `data:image/png;base64,${choice.plot_png}`;
    const apply = document.getElementById("apply-tau");
    apply.textContent = `Write tau ${fmt(choice.tau)} to the index`;
    apply.disabled = Boolean(state.stats.read_only);
    result.hidden = false;
    const v = choice.verdicts;
    say("tau-status", `${choice.objective} ${fmt(choice.objective_value)} at tau ${fmt(choice.tau)} on ` +
      `${v.duplicate + v.not_duplicate} verdicts` + (v.set_aside ? ` (${v.set_aside} by another model set aside)` : ""));
  } catch (error) {
    result.hidden = true;
    say("tau-status", error.message, true);
  }
}

async function applyTau() {
  if (!keyReady((message) => say("tau-status", message, true))) return;
  try {
    const out = await call("PUT", "/tau", { tau: state.choice.tau }, true);
    await loadStats();
    say("tau-status", `tau is now ${fmt(out.tau)} (was ${fmt(out.tau_before)})`);
    loadCounts();
  } catch (error) {
    say("tau-status", error.message, true);
    if (error.status === 401) document.getElementById("key-box").hidden = false;
  }
}

// -- tabs (arrow keys move between them, as in the WAI-ARIA tabs pattern) ----------------------
function showTab(tab) {
  for (const other of document.querySelectorAll('[role="tab"]')) {
    const on = other === tab;
    other.setAttribute("aria-selected", String(on));
    other.tabIndex = on ? 0 : -1;
    document.getElementById(other.getAttribute("aria-controls")).hidden = !on;
  }
  if (tab.id === "tab-groups") loadGroups(state.groupsOffset);
  if (tab.id === "tab-tau") loadCounts();
}

function tabKeys(event) {
  const tabs = [...document.querySelectorAll('[role="tab"]')];
  const step = { ArrowRight: 1, ArrowLeft: -1 }[event.key];
  if (!step) return;
  const next = tabs[(tabs.indexOf(event.target) + step + tabs.length) % tabs.length];
  next.focus();
  showTab(next);
}

async function start() {
  for (const tab of document.querySelectorAll('[role="tab"]')) {
    tab.addEventListener("click", () => showTab(tab));
    tab.addEventListener("keydown", tabKeys);
  }
  document.getElementById("search-form").addEventListener("submit", search);
  document.getElementById("compute-groups").addEventListener("click", computeGroups);
  document.getElementById("groups-prev").addEventListener("click",
    () => loadGroups(Math.max(0, state.groupsOffset - state.groupsPage)));
  document.getElementById("groups-next").addEventListener("click",
    () => loadGroups(state.groupsOffset + state.groupsPage));
  document.getElementById("tau-form").addEventListener("submit", calibrate);
  document.getElementById("apply-tau").addEventListener("click", applyTau);
  const key = document.getElementById("api-key");
  key.value = sessionStorage.getItem("twin-api-key") || "";
  key.addEventListener("change", () => sessionStorage.setItem("twin-api-key", key.value));
  try {
    await loadStats();
  } catch (error) {
    say("facts", `cannot read /stats: ${error.message}`, true);
  }
}

document.addEventListener("DOMContentLoaded", start);
