// The edged live view: one card per camera, status from api/status every second,
// the image from the camera's MJPEG stream (or, with ?mode=poll or when the daemon has no
// stream slot free, fetched periodically from snapshot.jpg). A camera with regions has them
// outlined on the image with their current label and score (drawn by the daemon), and listed
// under it with their state.
"use strict";

const mode = new URLSearchParams(location.search).get("mode") || "mjpeg";
const cards = new Map();
let streamFps = 5;

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

function cameraUrl(name, file) {
  return "cameras/" + encodeURIComponent(name) + "/" + file;
}

function poll(img, name) {
  img.onerror = null;
  const probe = new Image();
  const next = (ms) => setTimeout(load, ms);
  function load() { probe.src = cameraUrl(name, "snapshot.jpg") + "?t=" + Date.now(); }
  probe.onload = () => { img.src = probe.src; next(1000 / streamFps); };
  probe.onerror = () => next(2000);
  load();
}

function showImage(img, name) {
  if (mode === "poll") { poll(img, name); return; }
  img.onerror = () => poll(img, name);  // e.g. 503: every stream slot taken
  img.src = cameraUrl(name, "stream.mjpg");
}

function makeCard(name) {
  const fig = el("figure", "camera");
  fig.dataset.camera = name;
  const img = el("img");
  img.alt = "camera " + name;
  const cap = el("figcaption");
  const title = el("div", "title");
  title.append(el("span", "name", name), el("span", "badge up-down", "…"));
  const now = el("div", "now");
  now.append(el("span", "label", "—"), el("span", "score", ""));
  const dl = el("dl");
  const fields = {};
  for (const [key, text] of [["state", "state"], ["fps", "fps"], ["age", "frame age"],
                             ["frame", "frame"]]) {
    dl.append(el("dt", null, text));
    fields[key] = el("dd", key);
    dl.append(fields[key]);
  }
  const captures = el("ul", "captures");
  const regions = el("ul", "regions");
  cap.append(title, now, dl, regions, captures);
  fig.append(img, cap);
  document.getElementById("cameras").append(fig);
  showImage(img, name);
  return { fig, fields, label: now.firstChild, score: now.lastChild,
           badge: title.lastChild, captures, regions };
}

function fmt(x, digits) {
  return x === null || x === undefined ? "—" : Number(x).toFixed(digits);
}

// The newest evidence captures: label, score, time, the file under the capture folder.
function showCaptures(list, captures) {
  list.replaceChildren(...captures.map((c) => {
    const li = el("li", null);
    li.title = c.image + " (rule " + c.rule + ")";
    li.append(el("span", "cap-label", c.label),
              el("span", "cap-score", (100 * c.score).toFixed(1) + " %"),
              el("span", "cap-when", new Date(c.ts * 1000).toLocaleTimeString()));
    return li;
  }));
  if (captures.length) list.prepend(el("li", "cap-head", "latest captures"));
}

function update(status) {
  document.getElementById("node").textContent = status.node_id;
  streamFps = status.stream_fps || streamFps;
  for (const cam of status.cameras) {
    let card = cards.get(cam.name);
    if (!card) { card = makeCard(cam.name); cards.set(cam.name, card); }
    card.label.textContent = cam.label ?? "—";
    card.score.textContent = cam.score === null ? "" : (100 * cam.score).toFixed(1) + " %";
    card.badge.textContent = cam.up ? "up" : "down";
    card.badge.className = "badge up-down " + (cam.up ? "up" : "down");
    card.fields.state.textContent = cam.state === null ? "—"
      : cam.state + (cam.state_score === null ? "" : " (" + fmt(cam.state_score, 2) + ")");
    card.fields.fps.textContent = fmt(cam.fps, 1);
    card.fields.age.textContent = cam.frame_age_s === null ? "—" : fmt(cam.frame_age_s, 2) + " s";
    card.fields.frame.textContent = cam.frame ?? "—";
    card.regions.replaceChildren(...(cam.regions || []).map((r) => {
      const li = el("li", "region");
      li.dataset.region = r.name;
      li.append(el("span", "name", r.name), el("span", "label", r.label ?? "—"),
                el("span", "score", r.score === null ? "" : (100 * r.score).toFixed(1) + " %"),
                el("span", "state", r.state === null ? "" : "state " + r.state));
      return li;
    }));
    showCaptures(card.captures, cam.captures || []);
  }
}

async function refresh() {
  const conn = document.getElementById("conn");
  try {
    const r = await fetch("api/status", { cache: "no-store" });
    if (!r.ok) throw new Error("HTTP " + r.status);
    update(await r.json());
    conn.textContent = "live";
    conn.className = "badge up";
  } catch (e) {
    conn.textContent = "daemon unreachable";
    conn.className = "badge down";
  }
  setTimeout(refresh, 1000);
}

refresh();
