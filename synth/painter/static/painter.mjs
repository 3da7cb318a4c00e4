// The painter page's logic as pure functions (no DOM): label maps of class ids, the tools that change them,
// undo/redo, the palette, rendering to RGBA and the wire format. app.mjs wires them to the page; node --test
// runs them (tests/js/).
//
// A label map is {width, height, ids}: ids a Uint16Array of class ids, row by row. It is the page's truth: the
// canvas only shows it (never read back), so no antialiased colour can ever become a class.

export function createLabelMap(width, height, fill = 0) {
  if (!Number.isInteger(width) || !Number.isInteger(height) || width < 1 || height < 1) {
    throw new RangeError(`a label map needs a positive integer size, got ${width}x${height}`);
  }
  const ids = new Uint16Array(width * height);
  ids.fill(fill);
  return { width, height, ids };
}

export function cloneLabelMap(map) {
  return { width: map.width, height: map.height, ids: map.ids.slice() };
}

// -- where a tool paints: pixel indices (Int32Array), each once

function inside(map, x, y) {
  return x >= 0 && y >= 0 && x < map.width && y < map.height;
}

// The pixels a brush of diameter `size` covers along the segment from (x0, y0) to (x1, y1), in the map's
// continuous coordinates (pixel (i, j) spans [i, i+1) x [j, j+1)): every pixel whose centre lies within size/2 of
// the segment, plus the pixels the segment passes through, so a stroke is unbroken at any size and always marks the
// pixel under the pointer. A click is a segment of length zero.
export function brushIndices(map, x0, y0, x1, y1, size) {
  const r = Math.max(size, 1) / 2;
  const out = new Set();
  const xmin = Math.max(0, Math.floor(Math.min(x0, x1) - r));
  const xmax = Math.min(map.width - 1, Math.ceil(Math.max(x0, x1) + r));
  const ymin = Math.max(0, Math.floor(Math.min(y0, y1) - r));
  const ymax = Math.min(map.height - 1, Math.ceil(Math.max(y0, y1) + r));
  const dx = x1 - x0;
  const dy = y1 - y0;
  const len2 = dx * dx + dy * dy;
  const r2 = r * r;
  for (let y = ymin; y <= ymax; y++) {
    for (let x = xmin; x <= xmax; x++) {
      const cx = x + 0.5;
      const cy = y + 0.5;
      const t = len2 > 0 ? Math.min(1, Math.max(0, ((cx - x0) * dx + (cy - y0) * dy) / len2)) : 0;
      const ex = cx - (x0 + t * dx);
      const ey = cy - (y0 + t * dy);
      if (ex * ex + ey * ey <= r2) out.add(y * map.width + x);
    }
  }
  for (const i of lineIndices(map, x0, y0, x1, y1)) out.add(i);
  return Int32Array.from(out);
}

// The pixels a segment passes through, from the pixel of its start to the pixel of its end (grid traversal).
export function lineIndices(map, x0, y0, x1, y1) {
  let x = Math.floor(x0);
  let y = Math.floor(y0);
  const xe = Math.floor(x1);
  const ye = Math.floor(y1);
  const out = [];
  const dx = x1 - x0;
  const dy = y1 - y0;
  const sx = Math.sign(dx);
  const sy = Math.sign(dy);
  const tdx = sx !== 0 ? Math.abs(1 / dx) : Infinity;
  const tdy = sy !== 0 ? Math.abs(1 / dy) : Infinity;
  let tx = sx > 0 ? (x + 1 - x0) * tdx : sx < 0 ? (x0 - x) * tdx : Infinity;
  let ty = sy > 0 ? (y + 1 - y0) * tdy : sy < 0 ? (y0 - y) * tdy : Infinity;
  const steps = Math.abs(xe - x) + Math.abs(ye - y);
  for (let n = 0; n <= steps; n++) {
    if (inside(map, x, y)) out.push(y * map.width + x);
    if (x === xe && y === ye) break;
    if (tx < ty) {
      x += sx;
      tx += tdx;
    } else {
      y += sy;
      ty += tdy;
    }
  }
  return out;
}

// The pixels of the rectangle spanned by two pixels (inclusive, any corner order), clipped to the map.
export function rectIndices(map, x0, y0, x1, y1) {
  const xa = Math.max(0, Math.min(x0, x1));
  const xb = Math.min(map.width - 1, Math.max(x0, x1));
  const ya = Math.max(0, Math.min(y0, y1));
  const yb = Math.min(map.height - 1, Math.max(y0, y1));
  if (xa > xb || ya > yb) return new Int32Array(0);
  const out = new Int32Array((xb - xa + 1) * (yb - ya + 1));
  let k = 0;
  for (let y = ya; y <= yb; y++) for (let x = xa; x <= xb; x++) out[k++] = y * map.width + x;
  return out;
}

// The 4-connected region of pixel (x, y)'s class: what a fill repaints (scanline fill, no recursion).
export function fillIndices(map, x, y) {
  if (!inside(map, x, y)) return new Int32Array(0);
  const { width, height, ids } = map;
  const target = ids[y * width + x];
  const seen = new Uint8Array(width * height);
  const out = [];
  const stack = [[x, y]];
  while (stack.length) {
    const [sx, sy] = stack.pop();
    let i = sy * width + sx;
    if (seen[i] || ids[i] !== target) continue;
    let left = sx;
    while (left > 0 && !seen[i - 1] && ids[i - 1] === target) {
      left--;
      i--;
    }
    let above = false;
    let below = false;
    for (let cx = left; cx < width; cx++) {
      const j = sy * width + cx;
      if (seen[j] || ids[j] !== target) break;
      seen[j] = 1;
      out.push(j);
      if (sy > 0) {
        const up = j - width;
        const open = !seen[up] && ids[up] === target;
        if (open && !above) stack.push([cx, sy - 1]);
        above = open;
      }
      if (sy < height - 1) {
        const down = j + width;
        const open = !seen[down] && ids[down] === target;
        if (open && !below) stack.push([cx, sy + 1]);
        below = open;
      }
    }
  }
  return Int32Array.from(out);
}

// -- edits: what one action changed, to apply and to undo

// An edit is {idx, before, after}: the changed pixels and their ids before and after (only changed pixels).

// One action (a stroke, a fill, a rectangle, a loaded file): paint as it goes, then `end` it into one edit.
export function beginAction(map) {
  return { map, before: new Map(), after: new Map() };
}

export function paint(action, indices, id) {
  const { ids } = action.map;
  for (const i of indices) {
    if (!action.before.has(i)) action.before.set(i, ids[i]);
    ids[i] = id;
    action.after.set(i, id);
  }
}

// Sets every pixel to the given ids (a loaded label file, a cleared canvas) as part of the action.
export function replaceAll(action, ids) {
  if (ids.length !== action.map.ids.length) {
    throw new RangeError(`${ids.length} ids for a ${action.map.width}x${action.map.height} map`);
  }
  const cur = action.map.ids;
  for (let i = 0; i < ids.length; i++) {
    if (cur[i] === ids[i]) continue;
    if (!action.before.has(i)) action.before.set(i, cur[i]);
    cur[i] = ids[i];
    action.after.set(i, ids[i]);
  }
}

// The action's edit, or null when it changed nothing (painting a class over itself).
export function endAction(action) {
  const idx = [];
  for (const [i, old] of action.before) if (action.after.get(i) !== old) idx.push(i);
  if (!idx.length) return null;
  idx.sort((a, b) => a - b);
  const before = new Uint16Array(idx.length);
  const after = new Uint16Array(idx.length);
  idx.forEach((i, k) => {
    before[k] = action.before.get(i);
    after[k] = action.after.get(i);
  });
  return { idx: Int32Array.from(idx), before, after };
}

// Paints `indices` with `id` as one action: its edit (or null).
export function applyPaint(map, indices, id) {
  const action = beginAction(map);
  paint(action, indices, id);
  return endAction(action);
}

// -- undo / redo

export function createHistory(limit = 200) {
  return { undo: [], redo: [], limit };
}

export function record(history, edit) {
  if (!edit) return;
  history.undo.push(edit);
  if (history.undo.length > history.limit) history.undo.shift();
  history.redo.length = 0;
}

function put(map, idx, values) {
  for (let k = 0; k < idx.length; k++) map.ids[idx[k]] = values[k];
}

// Reverts the newest edit; returns it (null when there is nothing to undo).
export function undo(history, map) {
  const edit = history.undo.pop();
  if (!edit) return null;
  put(map, edit.idx, edit.before);
  history.redo.push(edit);
  return edit;
}

export function redo(history, map) {
  const edit = history.redo.pop();
  if (!edit) return null;
  put(map, edit.idx, edit.after);
  history.undo.push(edit);
  return edit;
}

// -- the palette: the model's class table

export function hexColour([r, g, b]) {
  return "#" + [r, g, b].map((c) => c.toString(16).padStart(2, "0")).join("");
}

// The palette entries of a model's description (GET /api/model): its classes, then "unlabelled" (the ignore id,
// what the eraser paints; drawn black, as the library draws it).
export function paletteEntries(info) {
  const entries = info.classes.map((c) => ({ id: c.id, name: c.name, colour: c.colour, hex: hexColour(c.colour) }));
  entries.push({ id: info.ignore_id, name: "unlabelled", colour: [0, 0, 0], hex: "#000000", ignore: true });
  return entries;
}

function words(text) {
  return String(text).toLowerCase().replace(/[_\-]+/g, " ").trim();
}

// The entries whose name contains the query (case, spaces, underscores and hyphens alike) or whose id it is.
export function filterPalette(entries, query) {
  const q = words(query);
  if (!q) return entries.slice();
  return entries.filter((e) => words(e.name).includes(q) || String(e.id) === q);
}

// -- drawing

// A lookup table id -> RGBA for `renderRGBA`; ids without an entry draw magenta (never expected).
export function buildLut(entries) {
  const size = Math.max(256, ...entries.map((e) => e.id + 1));
  const lut = new Uint8ClampedArray(size * 4);
  for (let i = 0; i < size; i++) lut.set([255, 0, 255, 255], i * 4);
  for (const e of entries) lut.set([...e.colour, 255], e.id * 4);
  return lut;
}

export function renderRGBA(map, lut, out = new Uint8ClampedArray(map.ids.length * 4)) {
  const { ids } = map;
  const n = lut.length / 4;
  for (let i = 0; i < ids.length; i++) {
    const o = (ids[i] < n ? ids[i] : 0) * 4;
    out[4 * i] = lut[o];
    out[4 * i + 1] = lut[o + 1];
    out[4 * i + 2] = lut[o + 2];
    out[4 * i + 3] = lut[o + 3];
  }
  return out;
}

// The classes present in a map, most pixels first: [{id, pixels}].
export function classCounts(map) {
  const counts = new Map();
  for (const id of map.ids) counts.set(id, (counts.get(id) || 0) + 1);
  return [...counts].map(([id, pixels]) => ({ id, pixels })).sort((a, b) => b.pixels - a.pixels || a.id - b.id);
}

// -- the wire format (server.py): ids as little-endian uint16, base64

export function encodeIds(map) {
  const bytes = new Uint8Array(map.ids.length * 2);
  const view = new DataView(bytes.buffer);
  map.ids.forEach((id, i) => view.setUint16(2 * i, id, true));
  let text = "";
  for (let i = 0; i < bytes.length; i += 0x8000) text += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(text);
}

export function decodeIds(b64, width, height) {
  const text = atob(b64);
  if (text.length !== width * height * 2) {
    throw new RangeError(`${text.length} bytes of ids for ${width}x${height} (want ${width * height * 2})`);
  }
  const map = createLabelMap(width, height);
  for (let i = 0; i < map.ids.length; i++) map.ids[i] = text.charCodeAt(2 * i) | (text.charCodeAt(2 * i + 1) << 8);
  return map;
}

export function labelsPayload(map) {
  return { width: map.width, height: map.height, ids: encodeIds(map) };
}

// -- generating while painting: one request in flight, the newest layout next, stale answers dropped

export function createQueue() {
  return { inFlight: false, pending: false, seq: 0 };
}

// A layout changed (or generate was pressed): returns the new request's number to send now, or null when one is
// in flight (the newest layout goes when it is answered).
export function requestRun(queue) {
  if (queue.inFlight) {
    queue.pending = true;
    return null;
  }
  queue.inFlight = true;
  return ++queue.seq;
}

// A request was answered: returns the next request's number when a newer layout waits, else null.
export function runFinished(queue) {
  queue.inFlight = false;
  if (!queue.pending) return null;
  queue.pending = false;
  queue.inFlight = true;
  return ++queue.seq;
}

// Whether an answer to request `seq` is the newest asked for (older ones are not shown).
export function isCurrent(queue, seq) {
  return seq === queue.seq;
}

// A fresh seed for the dice button (what the server accepts: 0 .. 2^32 - 1).
export function randomSeed(random = Math.random) {
  return Math.floor(random() * 0x100000000) >>> 0;
}
