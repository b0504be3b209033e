// pix2pixHD editor page: plain JS over the server's JSON API (see pix2pixhd_jax/serve.py).
"use strict";

const $ = (id) => document.getElementById(id);
const state = { info: null, session: null, width: 0, height: 0, cls: 7, selected: null, busy: 0, edits: 0 };
window.editorState = state; // read by the end-to-end test

function setBusy(delta) {
  state.busy += delta;
  document.body.dataset.busy = state.busy > 0 ? "1" : "0";
}

function showError(message) {
  const box = $("error");
  box.textContent = message || "";
  box.hidden = !message;
}

async function api(op, body) {
  setBusy(1);
  try {
    const res = await fetch("/api/" + op, {
      method: op === "info" ? "GET" : "POST",
      headers: { "Content-Type": "application/json" },
      body: op === "info" ? undefined : JSON.stringify(body),
    });
    const json = await res.json().catch(() => ({ error: `HTTP ${res.status}` }));
    if (!res.ok) throw new Error(json.error || `HTTP ${res.status}`);
    showError("");
    return json;
  } catch (e) {
    showError(e.message);
    throw e;
  } finally {
    setBusy(-1);
  }
}

// ----- drawing ----------------------------------------------------------------------------------
function sizeViews() {
  // Small scenes are shown enlarged (pixelated), large ones shrunk to fit two side by side.
  const avail = Math.max(200, (window.innerWidth - 520) / 2);
  const scale = Math.min(4, avail / state.width);
  for (const id of ["labels", "photo"]) {
    const img = $(id);
    img.style.width = `${Math.round(state.width * scale)}px`;
    img.style.height = `${Math.round(state.height * scale)}px`;
    const canvas = $(id + "-overlay");
    canvas.width = state.width;
    canvas.height = state.height;
  }
}

function overlays() {
  return [$("labels-overlay"), $("photo-overlay")].map((c) => c.getContext("2d"));
}

let maskImage = null;
function drawSelection() {
  for (const ctx of overlays()) {
    ctx.clearRect(0, 0, state.width, state.height);
    if (!state.selected || !maskImage) continue;
    // The object's mask, tinted, plus its bounding box.
    ctx.globalAlpha = 0.35;
    ctx.drawImage(maskImage, 0, 0);
    ctx.globalAlpha = 1;
    ctx.strokeStyle = "#ff6f00";
    ctx.lineWidth = Math.max(1, state.width / 400);
    const [x0, y0, x1, y1] = state.selected.bbox;
    ctx.strokeRect(x0 - 0.5, y0 - 0.5, x1 - x0 + 2, y1 - y0 + 2);
  }
}

function classColour(id) {
  const c = state.info.classes[id];
  return c ? c.color : "#fff";
}

// ----- state from the server ------------------------------------------------------------------
function applyState(s) {
  const resized = s.width !== state.width || s.height !== state.height;
  Object.assign(state, { session: s.session, width: s.width, height: s.height, edits: s.edits });
  $("labels").src = s.labels;
  $("photo").src = s.photo;
  if (resized) sizeViews();
  $("undo").disabled = !s.can_undo;
  for (const what of ["label", "inst", "colors", "photo"]) {
    const a = $("dl-" + what);
    a.href = `/api/download/${what}.png?session=${encodeURIComponent(s.session)}`;
    a.classList.remove("off");
  }
  setSelected(s.selected);
  const t = s.timing_ms;
  const scaled = s.scaled_from ? ` (scaled from ${s.scaled_from[0]}x${s.scaled_from[1]}, the model's test size)` : "";
  $("status").textContent = `${s.name}: ${s.width}x${s.height}${scaled}, ${s.edits} edit(s); ` +
    `edit + synthesis ${t.edit_and_synthesis} ms, with PNGs ${t.total} ms on the server`;
}

function setSelected(sel) {
  state.selected = sel;
  $("object-none").hidden = !!sel;
  $("object-info").hidden = !sel;
  maskImage = null;
  if (!sel) { drawSelection(); return; }
  $("object-name").textContent = sel.name;
  $("object-id").textContent = `(instance ${sel.instance})`;
  $("object-pixels").textContent = `${sel.pixels} pixels`;
  const styles = state.info.classes[sel.class].styles;
  const box = $("styles");
  box.replaceChildren();
  styles.forEach((colour, k) => {
    const b = document.createElement("button");
    b.textContent = k;
    b.dataset.style = k;
    b.style.background = colour;
    b.title = `k-means style ${k} (swatch: the cluster centre's features as RGB, not the photo colour)`;
    if (sel.style === k) b.classList.add("on");
    b.addEventListener("click", () => edit("style", { instance: state.selected.instance, style: k }));
    box.appendChild(b);
  });
  const noise = state.info.noise;  // a generator with 3D noise: restyle = the object's own draw
  $("styles-title").textContent = noise
    ? `Style (its own draw of the noise${sel.style === null ? "" : `: draw ${sel.style}`}):`
    : "Style (k-means clusters of its class):";
  $("style-random").textContent = noise ? "New noise" : "Random";
  $("styles-box").hidden = !noise && styles.length === 0;
  $("no-styles").hidden = noise || styles.length > 0;
  $("no-styles").textContent = state.info.styles ? `${sel.name} has no k-means styles.`
    : "This model has no per-object styles (no feature encoder or clusters file).";
  const img = new Image();
  img.onload = () => { maskImage = img; drawSelection(); };
  img.src = sel.mask;
}

async function edit(op, body) {
  if (!state.session) return;
  const s = await api(op, Object.assign({ session: state.session }, body));
  applyState(s);
  return s;
}

// ----- pointer tools --------------------------------------------------------------------------
function tool() {
  return document.querySelector("input[name=tool]:checked").value;
}

function toImage(canvas, e) {
  const r = canvas.getBoundingClientRect();
  const x = Math.floor((e.clientX - r.left) * state.width / r.width);
  const y = Math.floor((e.clientY - r.top) * state.height / r.height);
  return [Math.min(state.width - 1, Math.max(0, x)), Math.min(state.height - 1, Math.max(0, y))];
}

let stroke = null;
function dab(x, y) {
  const radius = Number($("radius").value);
  for (const ctx of overlays()) {
    ctx.fillStyle = classColour(state.cls);
    ctx.globalAlpha = 0.8;
    ctx.beginPath();
    ctx.arc(x + 0.5, y + 0.5, radius, 0, 2 * Math.PI);
    ctx.fill();
    ctx.globalAlpha = 1;
  }
}

function pointerDown(e) {
  if (!state.session || state.busy) return;
  const [x, y] = toImage(e.target, e);
  const t = tool();
  if (t === "brush") {
    stroke = [[x, y]];
    e.target.setPointerCapture(e.pointerId);
    dab(x, y);
  } else if (t === "fill") {
    edit("fill", { class: state.cls, x, y }).catch(() => {});
  } else {
    api("select", { session: state.session, x, y }).then((r) => setSelected(r.selected)).catch(() => {});
  }
}

function pointerMove(e) {
  if (!stroke) return;
  const [x, y] = toImage(e.target, e);
  const last = stroke[stroke.length - 1];
  if (last[0] === x && last[1] === y) return;
  stroke.push([x, y]);
  dab(x, y);
}

function pointerUp() {
  if (!stroke) return;
  let points = stroke;
  stroke = null;
  const cap = state.info.limits.max_points;
  if (points.length > cap) {  // keep the stroke's shape: every k-th point plus the last
    const k = Math.ceil(points.length / (cap - 1));
    points = points.filter((_, i) => i % k === 0).concat([points[points.length - 1]]);
  }
  edit("paint", { class: state.cls, points, radius: Number($("radius").value) })
    .catch(() => drawSelection());
}

// ----- controls -------------------------------------------------------------------------------
function buildPalette() {
  const box = $("palette");
  for (const c of state.info.classes) {
    const b = document.createElement("button");
    b.className = "cls" + (c.thing ? " thing" : "");
    b.dataset.class = c.id;
    b.title = `${c.id}: ${c.name}${c.thing ? " (objects)" : ""}${c.styles.length ? `, ${c.styles.length} styles` : ""}`;
    const chip = document.createElement("span");
    chip.className = "chip";
    chip.style.background = c.color;
    b.append(chip, document.createTextNode(c.name));
    b.addEventListener("click", () => pickClass(c.id));
    box.appendChild(b);
  }
  pickClass(state.info.classes.length > 7 ? 7 : 0);
}

function pickClass(id) {
  state.cls = id;
  for (const b of document.querySelectorAll("#palette button")) {
    b.classList.toggle("on", Number(b.dataset.class) === id);
  }
  $("class-name").textContent = `: ${state.info.classes[id].name}`;
  $("relabel-to").textContent = `a ${state.info.classes[id].name}`;
}

function readFile(input) {
  const file = input.files[0];
  if (!file) return Promise.resolve(null);
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(reader.result);
    reader.onerror = () => reject(new Error(`cannot read ${file.name}`));
    reader.readAsDataURL(file);
  });
}

async function openScene(body) {
  const old = state.session;
  const s = await api("open", body);
  applyState(s);
  if (old) api("close", { session: old }).catch(() => {});
}

async function main() {
  for (const what of ["label", "inst", "colors", "photo"]) $("dl-" + what).classList.add("off");
  state.info = await api("info");
  $("status").textContent = `Open a test scene or upload a label map: ${state.info.size}.`;
  buildPalette();
  const select = $("scene-select");
  for (const name of state.info.scenes) select.add(new Option(name, name));
  $("open-scene").disabled = state.info.scenes.length === 0;
  $("open-scene").addEventListener("click", () => openScene({ scene: select.value }).catch(() => {}));
  $("upload").addEventListener("click", async () => {
    const label = await readFile($("upload-label"));
    if (!label) { showError("Choose a label PNG (8-bit label ids) first."); return; }
    const inst = await readFile($("upload-inst"));
    const name = $("upload-label").files[0].name.replace(/\.png$/i, "");
    const old = state.session;
    try {
      applyState(await api("upload", { label, inst, name }));
      if (old) api("close", { session: old }).catch(() => {});
    } catch (e) { /* shown */ }
  });
  $("radius").max = Math.min(64, state.info.limits.max_radius);
  $("radius").addEventListener("input", () => { $("radius-value").textContent = $("radius").value; });
  $("undo").addEventListener("click", () => edit("undo", {}).catch(() => {}));
  $("delete").addEventListener("click", () => edit("delete", { instance: state.selected.instance }).catch(() => {}));
  $("relabel").addEventListener("click",
    () => edit("relabel", { instance: state.selected.instance, class: state.cls }).catch(() => {}));
  $("style-random").addEventListener("click",
    () => edit("style", { instance: state.selected.instance, style: "random" }).catch(() => {}));
  $("style-default").addEventListener("click",
    () => edit("style", { instance: state.selected.instance, style: "default" }).catch(() => {}));
  for (const id of ["labels-overlay", "photo-overlay"]) {
    const c = $(id);
    c.addEventListener("pointerdown", pointerDown);
    c.addEventListener("pointermove", pointerMove);
    c.addEventListener("pointerup", pointerUp);
    c.addEventListener("pointercancel", pointerUp);
  }
  document.addEventListener("keydown", (e) => {
    if ((e.ctrlKey || e.metaKey) && e.key === "z") { e.preventDefault(); edit("undo", {}).catch(() => {}); }
  });
  window.addEventListener("resize", () => { if (state.session) { sizeViews(); drawSelection(); } });
  if (state.info.scenes.length) await openScene({ index: 0 });
  else $("status").textContent = "No test scenes on this server: upload a label map.";
}

main().catch((e) => { $("status").textContent = "Failed: " + e.message; }).finally(() => setBusy(0));
