// The painter page: wires painter.mjs's pure logic to the DOM and the server (server.py's endpoints).

import * as P from "./painter.mjs";

const $ = (id) => document.getElementById(id);
const AUTO_DELAY_MS = 250;
const VIEW_BOX = 400; // px: the longer side of the label map and image frames

const state = {
  info: null,
  map: null,
  history: P.createHistory(),
  entries: [],
  lut: null,
  current: 0,
  tool: "brush",
  style: null, // base64 of the style image file
  regionStyle: null,
  queue: P.createQueue(),
  autoTimer: null,
  images: [], // data URLs of the newest answer
  shown: 0, // which of them is the main result
  sent: null, // the request behind the newest answer: {labels, seed, samples}
};

// -- errors and notes, visible on the page

// `source` says what the error is about ("generate", "label", "style"): an answer clears its own kind only, so a
// generated image never hides a refused upload's message.
let errorSource = null;

function showError(message, source) {
  errorSource = source;
  $("error-text").textContent = message;
  $("error").hidden = false;
}

function clearError(source) {
  if (source === undefined || source === errorSource) $("error").hidden = true;
}

function showNote(message) {
  $("note").textContent = message || "";
  $("note").hidden = !message;
}

async function answer(response) {
  const kind = response.headers.get("Content-Type") || "";
  if (!response.ok) {
    const body = kind.includes("json") ? await response.json() : { error: await response.text() };
    throw new Error(body.error || `${response.status} ${response.statusText}`);
  }
  return kind.includes("json") ? response.json() : response.blob();
}

async function post(path, body, headers = { "Content-Type": "application/json" }) {
  const response = await fetch(path, { method: "POST", headers, body });
  return answer(response);
}

// -- drawing the label map

let frame = 0;
function redraw() {
  if (frame) return;
  frame = requestAnimationFrame(() => {
    frame = 0;
    const canvas = $("labels");
    const ctx = canvas.getContext("2d");
    const image = ctx.createImageData(state.map.width, state.map.height);
    P.renderRGBA(state.map, state.lut, image.data);
    ctx.putImageData(image, 0, 0);
    $("undo").disabled = !state.history.undo.length;
    $("redo").disabled = !state.history.redo.length;
  });
}

function changed(edit) {
  if (!edit) return;
  P.record(state.history, edit);
  redraw();
  scheduleAuto();
}

function sizeCanvases() {
  for (const id of ["labels", "overlay"]) {
    $(id).width = state.map.width;
    $(id).height = state.map.height;
  }
  sizeViews();
}

function sizeViews() {
  const { width, height } = state.map;
  // Two frames side by side in the stage, each at most VIEW_BOX; whole pixels per label where the map is small.
  const box = Math.max(128, Math.min(VIEW_BOX, ($("stage").clientWidth - 16) / 2));
  const fit = Math.min(box / width, box / height);
  const scale = fit >= 1 ? Math.floor(fit) : fit;
  document.documentElement.style.setProperty("--view-w", `${Math.round(width * scale)}px`);
  document.documentElement.style.setProperty("--view-h", `${Math.round(height * scale)}px`);
}

// -- the palette

function selectClass(id) {
  state.current = id;
  const entry = state.entries.find((e) => e.id === id);
  $("current-class").replaceChildren(swatch(entry), document.createTextNode(` ${entry.name} (${entry.id})`));
  for (const li of $("palette").children) li.setAttribute("aria-selected", String(Number(li.dataset.id) === id));
}

function swatch(entry) {
  const s = document.createElement("span");
  s.className = "swatch";
  s.style.backgroundColor = entry.hex;
  return s;
}

function showPalette() {
  const items = P.filterPalette(state.entries, $("palette-search").value).map((entry) => {
    const li = document.createElement("li");
    li.dataset.id = String(entry.id);
    li.setAttribute("role", "option");
    li.setAttribute("aria-selected", String(entry.id === state.current));
    li.title = `class ${entry.id}`;
    li.append(swatch(entry), document.createTextNode(entry.name));
    li.addEventListener("click", () => selectClass(entry.id));
    return li;
  });
  $("palette").replaceChildren(...items);
}

// -- tools on the canvas

function pointerAt(event) {
  const rect = $("labels").getBoundingClientRect();
  const x = ((event.clientX - rect.left) / rect.width) * state.map.width;
  const y = ((event.clientY - rect.top) / rect.height) * state.map.height;
  const clamp = (v, n) => Math.min(Math.max(v, 0), n - 1e-3);
  return { x: clamp(x, state.map.width), y: clamp(y, state.map.height) };
}

let drag = null; // {action, last, start} while a pointer is down

function paintId() {
  return state.tool === "eraser" ? state.info.ignore_id : state.current;
}

function onPointerDown(event) {
  if (event.button !== 0 || !state.map) return;
  event.preventDefault();
  $("overlay").setPointerCapture(event.pointerId);
  const p = pointerAt(event);
  if (state.tool === "fill") {
    changed(P.applyPaint(state.map, P.fillIndices(state.map, Math.floor(p.x), Math.floor(p.y)), paintId()));
    return;
  }
  drag = { action: P.beginAction(state.map), last: p, start: p };
  if (state.tool !== "rect") {
    P.paint(drag.action, P.brushIndices(state.map, p.x, p.y, p.x, p.y, brushSize()), paintId());
    redraw();
  }
}

function onPointerMove(event) {
  const p = pointerAt(event);
  showCursor(p);
  if (!drag) return;
  if (state.tool === "rect") {
    showRect(drag.start, p);
  } else {
    P.paint(drag.action, P.brushIndices(state.map, drag.last.x, drag.last.y, p.x, p.y, brushSize()), paintId());
    redraw();
  }
  drag.last = p;
}

function onPointerUp(event) {
  if (!drag) return;
  const p = pointerAt(event);
  if (state.tool === "rect") {
    const f = Math.floor;
    P.paint(drag.action, P.rectIndices(state.map, f(drag.start.x), f(drag.start.y), f(p.x), f(p.y)), paintId());
  }
  const edit = P.endAction(drag.action);
  drag = null;
  clearOverlay();
  changed(edit);
}

function brushSize() {
  return Number($("brush-size").value);
}

function clearOverlay() {
  const c = $("overlay");
  c.getContext("2d").clearRect(0, 0, c.width, c.height);
}

function showCursor(p) {
  if (drag && state.tool === "rect") return;
  clearOverlay();
  if (state.tool !== "brush" && state.tool !== "eraser") return;
  const ctx = $("overlay").getContext("2d");
  ctx.strokeStyle = "rgba(255,255,255,0.9)";
  ctx.lineWidth = 0.5;
  ctx.beginPath();
  ctx.arc(p.x, p.y, brushSize() / 2, 0, 2 * Math.PI);
  ctx.stroke();
}

function showRect(a, b) {
  clearOverlay();
  const ctx = $("overlay").getContext("2d");
  const x0 = Math.floor(Math.min(a.x, b.x));
  const y0 = Math.floor(Math.min(a.y, b.y));
  const x1 = Math.floor(Math.max(a.x, b.x)) + 1;
  const y1 = Math.floor(Math.max(a.y, b.y)) + 1;
  const entry = state.entries.find((e) => e.id === paintId());
  ctx.fillStyle = entry ? entry.hex : "#ff00ff";
  ctx.globalAlpha = 0.7;
  ctx.fillRect(x0, y0, x1 - x0, y1 - y0);
  ctx.globalAlpha = 1;
}

function setTool(tool) {
  state.tool = tool;
  for (const input of document.querySelectorAll('input[name="tool"]')) input.checked = input.value === tool;
  clearOverlay();
}

// -- undo, redo, clear, files

function doUndo() {
  if (P.undo(state.history, state.map)) {
    redraw();
    scheduleAuto();
  }
}

function doRedo() {
  if (P.redo(state.history, state.map)) {
    redraw();
    scheduleAuto();
  }
}

function doClear() {
  const action = P.beginAction(state.map);
  P.replaceAll(action, new Uint16Array(state.map.ids.length).fill(state.current));
  changed(P.endAction(action));
}

async function loadLabelFile(file) {
  clearError("label");
  try {
    const result = await post("/api/label/decode", file, {
      "Content-Type": "application/octet-stream",
      "X-Filename": encodeURIComponent(file.name),
    });
    const loaded = P.decodeIds(result.ids, result.width, result.height);
    const action = P.beginAction(state.map);
    P.replaceAll(action, loaded.ids);
    changed(P.endAction(action));
    showNote(result.note || `${file.name}: ${result.encoding} label loaded.`);
  } catch (e) {
    showError(`Cannot load ${file.name}: ${e.message}`, "label");
  }
}

function download(href, name) {
  const a = document.createElement("a");
  a.href = href;
  a.download = name;
  document.body.append(a);
  a.click();
  a.remove();
}

async function downloadLabel() {
  clearError("label");
  try {
    const blob = await post("/api/label/encode", JSON.stringify({ labels: P.labelsPayload(state.map) }));
    const url = URL.createObjectURL(blob);
    download(url, `label-${state.info.dataset}.png`);
    setTimeout(() => URL.revokeObjectURL(url), 10000);
  } catch (e) {
    showError(`Cannot save the label: ${e.message}`, "label");
  }
}

function downloadImage() {
  if (state.images.length) {
    download(state.images[state.shown], `synth-${state.sent ? state.sent.seed : 0}-${state.shown}.png`);
  }
}

function readAsBase64(file) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(String(reader.result));
    reader.onerror = () => reject(reader.error);
    reader.readAsDataURL(file);
  });
}

async function setStyle(which, file) {
  const key = which === "style" ? "style" : "regionStyle";
  if (!file) {
    state[key] = null;
  } else {
    const limit = state.info.max_body_bytes;
    if (file.size * 1.4 > limit) {
      showError(`${file.name} is ${file.size} bytes; the painter takes requests of up to ${limit} bytes.`, "style");
      return;
    }
    const image = await readAsBase64(file);
    // A per-region style photo keeps the layout it was uploaded with (its own layout: load the photo's label
    // first), so each class keeps the photo's style for that class while the canvas is edited.
    state[key] = which === "style" ? image : { image, labels: P.labelsPayload(state.map) };
  }
  const prefix = which === "style" ? "style" : "region-style";
  const src = state[key] && (which === "style" ? state[key] : state[key].image);
  $(`${prefix}-preview`).hidden = !src;
  $(`${prefix}-clear`).hidden = !src;
  if (src) $(`${prefix}-preview`).src = src;
  else $(`${prefix}-file`).value = "";
  generateNow();
}

// -- generating

function scheduleAuto() {
  if (!$("auto").checked) return;
  clearTimeout(state.autoTimer);
  state.autoTimer = setTimeout(generateNow, AUTO_DELAY_MS);
}

function currentRequest() {
  const caps = state.info.controls;
  const styled = Boolean(state.style || state.regionStyle);
  const request = {
    labels: P.labelsPayload(state.map),
    seed: caps.seed ? Number($("seed").value) || 0 : 0,
    samples: caps.samples > 1 && $("grid-toggle").checked && !styled ? caps.samples : 1,
  };
  if (state.style) request.style = state.style;
  if (state.regionStyle) request.region_style = state.regionStyle;
  return request;
}

function generateNow() {
  clearTimeout(state.autoTimer);
  if (state.info.controls.region_style_required && !state.regionStyle) {
    $("status").textContent = "This model renders the styles of a photo: upload one (per-region style).";
    return;
  }
  const seq = P.requestRun(state.queue);
  if (seq !== null) send(seq);
}

async function send(seq) {
  const request = currentRequest();
  document.body.dataset.busy = "true";
  $("status").textContent = "generating…";
  try {
    const result = await post("/api/generate", JSON.stringify(request));
    if (P.isCurrent(state.queue, seq)) {
      showResult(result, request);
      clearError("generate");
    }
  } catch (e) {
    showError(`Generation failed: ${e.message}`, "generate");
    $("status").textContent = "";
  } finally {
    const next = P.runFinished(state.queue);
    if (next !== null) send(next);
    else document.body.dataset.busy = "false";
  }
}

function showResult(result, request) {
  state.images = result.images;
  state.shown = 0;
  state.sent = { labels: request.labels, seed: request.seed, samples: request.samples };
  const grid = $("grid");
  if (result.images.length > 1) {
    grid.replaceChildren(...result.images.map((src, i) => {
      const img = document.createElement("img");
      img.src = src;
      img.alt = `sample ${i + 1}`;
      img.addEventListener("click", () => showMain(i));
      return img;
    }));
    grid.hidden = false;
  } else {
    grid.replaceChildren();
    grid.hidden = true;
  }
  showMain(0);
  $("download-image").disabled = false;
  $("status").textContent = `${result.images.length > 1 ? result.images.length + " samples" : "image"} in ` +
    `${Math.round(result.ms)} ms` + (state.info.controls.seed ? ` (seed ${result.seed})` : "");
  document.body.dataset.generated = String(Number(document.body.dataset.generated) + 1);
}

function showMain(i) {
  state.shown = i;
  const img = $("result");
  img.src = state.images[i];
  img.hidden = false;
  $("result-placeholder").hidden = true;
  for (const [k, el] of [...$("grid").children].entries()) el.classList.toggle("chosen", k === i);
}

function setView(mode) {
  const views = $("views");
  views.className = mode;
  // Overlaid: the image under the label map in one frame; beside: each in its own.
  if (mode === "overlay") $("layout-view").prepend($("result"));
  else $("result-view").prepend($("result"));
  setAlpha();
}

function setAlpha() {
  const alpha = $("views").className === "overlay" ? Number($("overlay-alpha").value) / 100 : 1;
  $("labels").style.opacity = String(alpha);
}

// -- start

async function start() {
  const info = await answer(await fetch("/api/model"));
  state.info = info;
  state.entries = P.paletteEntries(info);
  state.lut = P.buildLut(state.entries);
  state.map = P.createLabelMap(info.width, info.height, 0);
  const caps = info.controls;
  $("model-info").textContent = `${info.model} on ${info.dataset}, ${info.width}x${info.height}` +
    (info.step >= 0 ? `, step ${info.step}` : ", official weights") + `, ${info.classes.length} classes`;
  $("seed-box").hidden = !caps.seed;
  $("samples-box").hidden = !(caps.samples > 1);
  $("grid-size").textContent = String(caps.samples);
  $("style-box").hidden = !caps.style_image;
  $("region-style-box").hidden = !caps.region_style;
  sizeCanvases();
  showPalette();
  selectClass(0);
  redraw();

  const overlay = $("overlay");
  overlay.addEventListener("pointerdown", onPointerDown);
  overlay.addEventListener("pointermove", onPointerMove);
  overlay.addEventListener("pointerup", onPointerUp);
  overlay.addEventListener("pointercancel", onPointerUp);
  overlay.addEventListener("pointerleave", () => { if (!drag) clearOverlay(); });
  for (const input of document.querySelectorAll('input[name="tool"]')) {
    input.addEventListener("change", () => setTool(input.value));
  }
  for (const input of document.querySelectorAll('input[name="view"]')) {
    input.addEventListener("change", () => setView(input.value));
  }
  $("overlay-alpha").addEventListener("input", setAlpha);
  $("brush-size").addEventListener("input", () => { $("brush-size-value").textContent = $("brush-size").value; });
  $("palette-search").addEventListener("input", showPalette);
  $("palette-search").addEventListener("keydown", (e) => {
    if (e.key !== "Enter") return;
    const first = P.filterPalette(state.entries, $("palette-search").value)[0];
    if (first) selectClass(first.id);
  });
  $("undo").addEventListener("click", doUndo);
  $("redo").addEventListener("click", doRedo);
  $("clear").addEventListener("click", doClear);
  $("generate").addEventListener("click", generateNow);
  $("dice").addEventListener("click", () => {
    $("seed").value = String(P.randomSeed());
    generateNow();
  });
  $("seed").addEventListener("change", generateNow);
  $("grid-toggle").addEventListener("change", generateNow);
  $("label-file").addEventListener("change", (e) => {
    const file = e.target.files[0];
    e.target.value = "";
    if (file) loadLabelFile(file);
  });
  $("download-label").addEventListener("click", downloadLabel);
  $("download-image").addEventListener("click", downloadImage);
  $("style-file").addEventListener("change", (e) => setStyle("style", e.target.files[0]));
  $("style-clear").addEventListener("click", () => setStyle("style", null));
  $("region-style-file").addEventListener("change", (e) => setStyle("region", e.target.files[0]));
  $("region-style-clear").addEventListener("click", () => setStyle("region", null));
  $("error-close").addEventListener("click", () => clearError());
  document.addEventListener("keydown", onKey);
  window.addEventListener("resize", sizeViews);

  // A handle for scripts and tests: the layout as the page holds it, and what the shown image was made from.
  window.painter = {
    labels: () => P.labelsPayload(state.map),
    sent: () => state.sent,
    image: () => state.images[state.shown] || null,
    selectClass,
    setTool,
  };
  document.body.dataset.ready = "true";
  generateNow();
}

function onKey(event) {
  if (event.target instanceof HTMLInputElement && event.target.type !== "radio" &&
      event.target.type !== "checkbox" && event.target.type !== "range") return;
  const mod = event.ctrlKey || event.metaKey;
  const key = event.key.toLowerCase();
  if (mod && key === "z") {
    event.preventDefault();
    if (event.shiftKey) doRedo();
    else doUndo();
  } else if (mod && key === "y") {
    event.preventDefault();
    doRedo();
  } else if (!mod && !event.altKey) {
    const tool = { b: "brush", e: "eraser", f: "fill", r: "rect" }[key];
    if (tool) setTool(tool);
  }
}

start().catch((e) => showError(`The painter could not start: ${e.message}`, "start"));
