// The review page: cameras (live snapshot, state, light, processed frames/s, zones and lines)
// and events (filtered, paged, newest first; opening one shows its snapshot and plays its clip).
// It polls the daemon's JSON endpoints; nothing is fetched from anywhere else.
"use strict";

const POLL_MS = 2000;
const PAGE_SIZE = 20;
const EVENT_TYPES = ["appeared", "entered", "exited", "crossed", "loitered", "gone"];
const $ = (id) => document.getElementById(id);
// Absolute URLs: a page opened as http://user:password@host/ resolves relative ones with the
// credentials in them, which browsers refuse to fetch; the login itself is kept by the browser.
const at = (path) => location.origin + path;

const state = {
  offset: 0, total: 0, events: [], seen: new Set(), first: true,
  cameras: {}, rates: {}, open: -1, picture: "enhanced",
};

async function getJSON(url) {
  const r = await fetch(at(url), { cache: "no-store" });
  if (r.status === 401) { $("login").hidden = false; throw new Error("authentication required"); }
  if (!r.ok) throw new Error(`${url}: HTTP ${r.status}`);
  return r.json();
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v; else if (k === "text") node.textContent = v;
    else node.setAttribute(k, v);
  }
  node.append(...children);
  return node;
}

function svgEl(tag, attrs) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  return node;
}

// -- cameras -------------------------------------------------------------------------------------
function processedRate(name, cam) {
  const now = performance.now(), prev = state.rates[name];
  state.rates[name] = { t: now, n: cam.frames_processed, fps: prev ? prev.fps : null };
  if (prev && now > prev.t) state.rates[name].fps = (cam.frames_processed - prev.n) * 1000 / (now - prev.t);
  return state.rates[name].fps;
}

function shapesSvg(cam) {
  const w = cam.width || 1280, h = cam.height || 720;
  const svg = svgEl("svg", { viewBox: `0 0 ${w} ${h}`, preserveAspectRatio: "xMidYMid meet" });
  const pts = (s) => s.points.map(([x, y]) => s.coords === "pixels" ? [x, y] : [x * w, y * h]);
  for (const z of cam.zones || []) {
    const p = pts(z);
    svg.append(svgEl("polygon", { points: p.map((q) => q.join(",")).join(" ") }));
    // the name in the zone's lower left corner: the upper left of the frame holds the snapshot's caption
    const xs = p.map((q) => q[0]), ys = p.map((q) => q[1]);
    const label = svgEl("text", { x: Math.min(...xs) + h / 60, y: Math.max(...ys) - h / 40, "font-size": h / 18 });
    label.textContent = z.name;
    svg.append(label);
  }
  for (const ln of cam.lines || []) {
    const p = pts(ln);
    svg.append(svgEl("polyline", { points: p.map((q) => q.join(",")).join(" ") }));
    const label = svgEl("text", { x: p[0][0] + h / 60, y: p[0][1] - h / 60, "font-size": h / 18 });
    label.textContent = ln.name;
    svg.append(label);
  }
  return svg;
}

function cameraCard(name) {
  const img = el("img", { alt: `live snapshot of ${name}` });
  const nofeed = el("div", { class: "nofeed", text: "no processed frame yet" });
  const card = el("article", { class: "camera", "data-camera": name },
    el("div", { class: "frame" }, img, nofeed), el("div", { class: "facts" }));
  img.addEventListener("load", () => { nofeed.hidden = true; img.hidden = false; });
  img.addEventListener("error", () => { nofeed.hidden = false; img.hidden = true; });
  return card;
}

function renderCamera(card, name, cam) {
  const frame = card.querySelector(".frame");
  if (cam.width && cam.height) frame.style.aspectRatio = `${cam.width} / ${cam.height}`;
  frame.querySelector("svg")?.remove();
  frame.append(shapesSvg(cam));
  frame.querySelector("img").src = at(`/snapshot/${encodeURIComponent(name)}.jpg?t=${Date.now()}`);
  const fps = processedRate(name, cam);
  const st = cam.state || "unknown";
  card.querySelector(".facts").replaceChildren(
    el("strong", { text: name }),
    el("span", { class: `badge ${st}`, text: st.replace("_", " ") }),
    el("span", { class: `badge ${cam.lowlight ? "night" : "day"}`,
                 text: cam.lowlight ? "low light" : "daylight" }),
    el("span", { class: "fps", text: fps === null ? "… frames/s" : `${fps.toFixed(1)} frames/s processed` }));
}

async function pollCameras() {
  const data = await getJSON("/cameras");
  const box = $("cameras"), names = Object.keys(data.cameras).sort();
  for (const card of [...box.children]) if (!names.includes(card.dataset.camera)) card.remove();
  for (const name of names) {
    let card = box.querySelector(`[data-camera="${CSS.escape(name)}"]`);
    if (!card) { card = cameraCard(name); box.append(card); }
    renderCamera(card, name, data.cameras[name]);
  }
  const select = document.querySelector("#filters [name=camera]");
  for (const name of names) {
    if (![...select.options].some((o) => o.value === name)) select.append(el("option", { value: name, text: name }));
  }
  const up = names.filter((n) => data.cameras[n].state === "streaming").length;
  $("status").textContent = `${up}/${names.length} cameras streaming · updated ${new Date().toLocaleTimeString()}`;
}

// -- events --------------------------------------------------------------------------------------
function filterQuery() {
  const form = new FormData($("filters")), q = new URLSearchParams();
  for (const key of ["camera", "type", "class"]) if (form.get(key)) q.set(key, form.get(key).trim());
  for (const key of ["since", "until"]) {
    const v = form.get(key);
    if (v) q.set(key, String(new Date(v).getTime() / 1000));
  }
  q.set("offset", String(state.offset));
  q.set("limit", String(PAGE_SIZE));
  return q;
}

function where(ev) {
  if (ev.zone) return `zone ${ev.zone}`;
  if (ev.line) return `line ${ev.line}${ev.direction ? " " + ev.direction : ""}`;
  return "";
}

function eventRow(ev, index) {
  const pending = () => el("div", { class: "thumb-missing", text: "no picture",
                                    title: "its snapshot is not written (yet, or the writer was behind)" });
  const thumb = ev.snapshot_url ? el("img", { src: at(ev.snapshot_url), alt: "", loading: "lazy" }) : pending();
  if (ev.snapshot_url) thumb.addEventListener("error", () => thumb.replaceWith(pending()));
  const row = el("li", { class: "event", tabindex: "0", "data-id": ev.id },
    thumb,
    el("div", {},
      el("div", { class: "what", text: `${ev.type} · ${ev.class} #${ev.track_id}` }),
      el("div", { class: "muted", text: `${new Date(ev.epoch * 1000).toLocaleString()} · ${ev.camera}` +
                                         (where(ev) ? ` · ${where(ev)}` : "") })));
  if (!state.first && !state.seen.has(ev.id)) row.classList.add("new");
  row.addEventListener("click", () => openEvent(index));
  row.addEventListener("keydown", (e) => { if (e.key === "Enter") openEvent(index); });
  return row;
}

async function pollEvents() {
  const data = await getJSON(`/events?${filterQuery()}`);
  state.events = data.events;
  state.total = data.total;
  $("events").replaceChildren(...data.events.map(eventRow));
  for (const ev of data.events) state.seen.add(ev.id);
  state.first = false;
  const classes = $("classes");
  for (const ev of data.events) {
    if (![...classes.options].some((o) => o.value === ev.class)) classes.append(el("option", { value: ev.class }));
  }
  const last = Math.min(state.offset + PAGE_SIZE, state.total);
  $("event-count").textContent = `(${state.total})`;
  $("page").textContent = state.total ? `${state.offset + 1}–${last} of ${state.total}` : "no events";
  $("newer").disabled = state.offset === 0;
  $("older").disabled = last >= state.total;
}

// -- one event -----------------------------------------------------------------------------------
function showPicture(ev) {
  const raw = state.picture === "raw" && (ev.pictures || []).includes("raw");
  $("detail-snapshot").src = ev.snapshot_url ? at(ev.snapshot_url + (raw ? "?picture=raw" : "")) : "";
  for (const b of $("picture-toggle").querySelectorAll("button")) {
    b.setAttribute("aria-pressed", String(b.dataset.picture === (raw ? "raw" : "enhanced")));
  }
}

function openEvent(index) {
  const ev = state.events[index];
  if (!ev) return;
  state.open = index;
  state.openId = ev.id;
  state.openEvent = ev;
  state.picture = "enhanced";
  $("detail-title").textContent = `${ev.type} · ${ev.class} #${ev.track_id} · ${ev.camera}`;
  $("picture-toggle").hidden = !((ev.pictures || []).length > 1);
  showPicture(ev);
  const video = $("detail-clip");
  $("detail-noclip").hidden = Boolean(ev.clip_url);
  video.hidden = !ev.clip_url;
  if (ev.clip_url) { video.src = at(ev.clip_url); video.play().catch(() => {}); } else video.removeAttribute("src");
  const facts = [["time", new Date(ev.epoch * 1000).toLocaleString()], ["camera", ev.camera],
                 ["class", ev.class], ["track id", ev.track_id], ["where", where(ev) || "—"],
                 ["score", ev.best_score], ["enhanced", ev.enhanced ? "yes" : "no"]];
  $("detail-facts").replaceChildren(...facts.flatMap(([k, v]) => [el("dt", { text: k }), el("dd", { text: String(v) })]));
  $("prev").disabled = index === 0 && state.offset === 0;
  $("next").disabled = index === state.events.length - 1 && state.offset + state.events.length >= state.total;
  if (!$("detail").open) $("detail").showModal();
}

async function step(delta) {
  const at = state.events.findIndex((e) => e.id === state.openId);  // the list may have moved
  let index = (at >= 0 ? at : state.open) + delta;
  if (index < 0 || index >= state.events.length) {  // across a page boundary
    state.offset = Math.max(0, state.offset + delta * PAGE_SIZE);
    await pollEvents();
    index = delta > 0 ? 0 : state.events.length - 1;
  }
  openEvent(index);
}

// -- wiring --------------------------------------------------------------------------------------
function loop(fn, ms) {
  const run = async () => {
    try { await fn(); } catch (e) { $("status").textContent = String(e.message || e); }
    setTimeout(run, ms);
  };
  run();
}

function init() {
  const types = document.querySelector("#filters [name=type]");
  for (const t of EVENT_TYPES) types.append(el("option", { value: t, text: t }));
  $("filters").addEventListener("input", () => { state.offset = 0; pollEvents().catch(() => {}); });
  $("filters").addEventListener("reset", () => setTimeout(() => { state.offset = 0; pollEvents().catch(() => {}); }));
  $("newer").addEventListener("click", () => { state.offset = Math.max(0, state.offset - PAGE_SIZE); pollEvents(); });
  $("older").addEventListener("click", () => { state.offset += PAGE_SIZE; pollEvents(); });
  $("prev").addEventListener("click", () => step(-1));
  $("next").addEventListener("click", () => step(1));
  $("close").addEventListener("click", () => $("detail").close());
  $("detail").addEventListener("close", () => { $("detail-clip").pause(); state.open = -1; });
  for (const b of $("picture-toggle").querySelectorAll("button")) {
    b.addEventListener("click", () => { state.picture = b.dataset.picture; showPicture(state.openEvent); });
  }
  loop(pollCameras, POLL_MS);
  loop(pollEvents, POLL_MS);
}

document.addEventListener("DOMContentLoaded", init);
