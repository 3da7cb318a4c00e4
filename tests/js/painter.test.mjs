// The painter page's logic (synth/painter/static/painter.mjs) under `node --test tests/js/`.

import assert from "node:assert/strict";
import { test } from "node:test";

import * as P from "../../synth/painter/static/painter.mjs";

// A map from rows of digits ("0012"), and back: small layouts stay readable.
function mapOf(rows) {
  const map = P.createLabelMap(rows[0].length, rows.length);
  rows.forEach((row, y) => [...row].forEach((c, x) => { map.ids[y * map.width + x] = Number(c); }));
  return map;
}

function rowsOf(map) {
  const rows = [];
  for (let y = 0; y < map.height; y++) rows.push([...map.ids.subarray(y * map.width, (y + 1) * map.width)].join(""));
  return rows;
}

function painted(map, indices, id = 1) {
  const copy = P.cloneLabelMap(map);
  P.applyPaint(copy, indices, id);
  return rowsOf(copy);
}

test("label maps: size checked, filled, cloned independently", () => {
  const map = P.createLabelMap(3, 2, 7);
  assert.deepEqual([...map.ids], [7, 7, 7, 7, 7, 7]);
  assert.throws(() => P.createLabelMap(0, 2), /positive integer size/);
  assert.throws(() => P.createLabelMap(2.5, 2), /positive integer size/);
  const copy = P.cloneLabelMap(map);
  copy.ids[0] = 1;
  assert.equal(map.ids[0], 7);
});

test("brush: a click of size 1 marks exactly the pixel under the pointer", () => {
  const map = P.createLabelMap(5, 4);
  assert.deepEqual(painted(map, P.brushIndices(map, 2.9, 1.1, 2.9, 1.1, 1)), ["00000", "00100", "00000", "00000"]);
  // on a pixel corner too (the centre distance is 0.71 > 0.5: the pixel under the pointer still counts)
  assert.deepEqual(painted(map, P.brushIndices(map, 3, 2, 3, 2, 1)), ["00000", "00000", "00010", "00000"]);
});

test("brush: a disc of the given diameter around the pointer", () => {
  const map = P.createLabelMap(7, 7);
  assert.deepEqual(painted(map, P.brushIndices(map, 3.5, 3.5, 3.5, 3.5, 3)),
    ["0000000", "0000000", "0011100", "0011100", "0011100", "0000000", "0000000"]);
  assert.deepEqual(painted(map, P.brushIndices(map, 3.5, 3.5, 3.5, 3.5, 5)),
    ["0000000", "0011100", "0111110", "0111110", "0111110", "0011100", "0000000"]);
});

test("brush: a stroke is unbroken, even thin and diagonal, and clipped at the border", () => {
  const map = P.createLabelMap(8, 5);
  assert.deepEqual(painted(map, P.brushIndices(map, 0.5, 2.5, 7.5, 2.5, 1)),
    ["00000000", "00000000", "11111111", "00000000", "00000000"]);
  const diag = painted(map, P.brushIndices(map, 0.2, 0.3, 7.8, 4.6, 1));
  // every column is reached and consecutive painted pixels touch (4- or 8-connected)
  const cells = [];
  diag.forEach((row, y) => [...row].forEach((c, x) => { if (c === "1") cells.push([x, y]); }));
  for (let x = 0; x < 8; x++) assert.ok(cells.some(([cx]) => cx === x), `column ${x} painted`);
  assert.equal(diag[0][0], "1");
  assert.equal(diag[4][7], "1");
  for (const [x, y] of cells) {
    const near = cells.filter(([a, b]) => (a !== x || b !== y) && Math.abs(a - x) <= 1 && Math.abs(b - y) <= 1);
    assert.ok(near.length >= 1, `pixel ${x},${y} is connected`);
  }
  const edge = P.brushIndices(map, -3, -3, 0.5, 0.5, 4);
  assert.ok(edge.length > 0 && [...edge].every((i) => i >= 0 && i < 40));
  assert.equal(new Set(edge).size, edge.length, "each pixel once");
});

test("line: the pixels a segment passes through", () => {
  const map = P.createLabelMap(4, 4);
  assert.deepEqual(P.lineIndices(map, 0.5, 0.5, 3.5, 0.5), [0, 1, 2, 3]);
  assert.deepEqual(P.lineIndices(map, 0.5, 0.5, 0.5, 3.5), [0, 4, 8, 12]);
  assert.deepEqual(P.lineIndices(map, 3.5, 3.5, 3.5, 3.5), [15]);
  assert.equal(P.lineIndices(map, 0.1, 0.2, 3.9, 3.7).length, 7); // a staircase: 3 steps right, 3 down
});

test("rectangle: any corner order, inclusive, clipped", () => {
  const map = P.createLabelMap(5, 4);
  assert.deepEqual(painted(map, P.rectIndices(map, 3, 2, 1, 1)), ["00000", "01110", "01110", "00000"]);
  assert.deepEqual(painted(map, P.rectIndices(map, -5, -5, 0, 9)), ["10000", "10000", "10000", "10000"]);
  assert.equal(P.rectIndices(map, 7, 7, 9, 9).length, 0);
});

test("fill: the 4-connected region of the clicked class only", () => {
  const map = mapOf([
    "00200",
    "02020",
    "20002",
    "02220",
  ]);
  assert.deepEqual(painted(map, P.fillIndices(map, 2, 2), 5), [
    "00200",
    "02520",
    "25552",
    "02220",
  ]);
  // diagonal neighbours do not connect: the corner regions stay apart
  assert.deepEqual(painted(map, P.fillIndices(map, 0, 0), 5), [
    "55200",
    "52020",
    "20002",
    "02220",
  ]);
  assert.equal(P.fillIndices(map, 9, 9).length, 0);
});

test("fill: a large concave region (no recursion limit), each pixel once", () => {
  const w = 300;
  const h = 200;
  const map = P.createLabelMap(w, h);
  for (let y = 0; y < h - 1; y++) map.ids[y * w + 150] = 1; // a wall with a gap at the bottom
  const region = P.fillIndices(map, 0, 0);
  assert.equal(region.length, w * h - (h - 1));
  assert.equal(new Set(region).size, region.length);
});

test("fill on the map's own class changes nothing and records no edit", () => {
  const map = mapOf(["11", "11"]);
  assert.equal(P.applyPaint(map, P.fillIndices(map, 0, 0), 1), null);
  const history = P.createHistory();
  P.record(history, null);
  assert.equal(history.undo.length, 0);
});

test("an action (a stroke) is one edit of the pixels it changed, with what they were", () => {
  const map = mapOf(["0000", "0220"]);
  const action = P.beginAction(map);
  P.paint(action, [0, 1, 5], 3);
  P.paint(action, [1, 2, 5, 6], 3); // overlapping segments of one stroke
  P.paint(action, [7], 0); // painted with its own class: no change
  const edit = P.endAction(action);
  assert.deepEqual([...edit.idx], [0, 1, 2, 5, 6]);
  assert.deepEqual([...edit.before], [0, 0, 0, 2, 2]);
  assert.deepEqual([...edit.after], [3, 3, 3, 3, 3]);
  assert.deepEqual(rowsOf(map), ["3330", "0330"]);
});

test("undo and redo walk the edits back and forth; a new edit clears redo", () => {
  const map = P.createLabelMap(4, 1);
  const history = P.createHistory();
  P.record(history, P.applyPaint(map, [0, 1], 1));
  P.record(history, P.applyPaint(map, [1, 2], 2));
  assert.deepEqual(rowsOf(map), ["1220"]);
  assert.ok(P.undo(history, map));
  assert.deepEqual(rowsOf(map), ["1100"]);
  assert.ok(P.undo(history, map));
  assert.deepEqual(rowsOf(map), ["0000"]);
  assert.equal(P.undo(history, map), null);
  assert.ok(P.redo(history, map));
  assert.deepEqual(rowsOf(map), ["1100"]);
  P.record(history, P.applyPaint(map, [3], 3));
  assert.equal(P.redo(history, map), null, "a new edit drops the redo stack");
  assert.deepEqual(rowsOf(map), ["1103"]);
});

test("history keeps at most `limit` edits", () => {
  const map = P.createLabelMap(10, 1);
  const history = P.createHistory(3);
  for (let i = 0; i < 10; i++) P.record(history, P.applyPaint(map, [i], 1));
  let n = 0;
  while (P.undo(history, map)) n++;
  assert.equal(n, 3);
  assert.deepEqual(rowsOf(map), ["1111111000"]);
});

test("replaceAll (a loaded file, clear) is one undoable edit of the differing pixels", () => {
  const map = mapOf(["0123"]);
  const history = P.createHistory();
  const action = P.beginAction(map);
  P.replaceAll(action, Uint16Array.from([0, 5, 5, 3]));
  const edit = P.endAction(action);
  assert.deepEqual([...edit.idx], [1, 2]);
  P.record(history, edit);
  P.undo(history, map);
  assert.deepEqual(rowsOf(map), ["0123"]);
  assert.throws(() => P.replaceAll(P.beginAction(map), new Uint16Array(3)), /3 ids for a 4x1 map/);
});

const INFO = {
  classes: [
    { id: 0, name: "sky", colour: [70, 130, 180] },
    { id: 1, name: "lane_marking", colour: [255, 255, 255] },
    { id: 2, name: "road", colour: [128, 64, 128] },
    { id: 3, name: "Traffic Light", colour: [250, 170, 30] },
  ],
  ignore_id: 255,
};

test("palette: the model's classes with their colours, then the ignore id for the eraser", () => {
  const entries = P.paletteEntries(INFO);
  assert.deepEqual(entries.map((e) => e.id), [0, 1, 2, 3, 255]);
  assert.equal(entries[0].hex, "#4682b4");
  assert.equal(entries[1].hex, "#ffffff");
  assert.equal(entries[4].name, "unlabelled");
  assert.ok(entries[4].ignore);
  assert.equal(P.hexColour([0, 10, 255]), "#000aff");
});

test("palette search: case, underscores and spaces alike; by id; empty shows all", () => {
  const entries = P.paletteEntries(INFO);
  const names = (q) => P.filterPalette(entries, q).map((e) => e.name);
  assert.deepEqual(names("lane marking"), ["lane_marking"]);
  assert.deepEqual(names("LANE_"), ["lane_marking"]);
  assert.deepEqual(names("traffic_light"), ["Traffic Light"]);
  assert.deepEqual(names("2"), ["road"]);
  assert.deepEqual(names("  "), ["sky", "lane_marking", "road", "Traffic Light", "unlabelled"]);
  assert.deepEqual(names("nothing"), []);
});

test("rendering: each id in its class colour, the ignore id black, opaque", () => {
  const entries = P.paletteEntries(INFO);
  const lut = P.buildLut(entries);
  const map = mapOf(["02"]);
  map.ids[1] = 255;
  assert.deepEqual([...P.renderRGBA(map, lut)], [70, 130, 180, 255, 0, 0, 0, 255]);
});

test("class counts: present classes, most pixels first", () => {
  assert.deepEqual(P.classCounts(mapOf(["0112", "2222"])), [
    { id: 2, pixels: 5 }, { id: 1, pixels: 2 }, { id: 0, pixels: 1 }]);
});

test("wire format: ids as little-endian uint16 in base64, both ways, length checked", () => {
  const map = P.createLabelMap(3, 2);
  map.ids.set([0, 1, 255, 256, 1000, 65535]);
  const b64 = P.encodeIds(map);
  const bytes = Buffer.from(b64, "base64");
  assert.deepEqual([...bytes], [0, 0, 1, 0, 255, 0, 0, 1, 232, 3, 255, 255]);
  assert.deepEqual([...P.decodeIds(b64, 3, 2).ids], [...map.ids]);
  assert.throws(() => P.decodeIds(b64, 2, 2), /12 bytes of ids for 2x2/);
  assert.deepEqual(P.labelsPayload(map), { width: 3, height: 2, ids: b64 });
  const big = P.createLabelMap(512, 256, 7); // larger than one String.fromCharCode chunk
  assert.deepEqual([...P.decodeIds(P.encodeIds(big), 512, 256).ids.slice(0, 3)], [7, 7, 7]);
});

test("queue: one request in flight, the newest layout next, older answers stale", () => {
  const q = P.createQueue();
  const first = P.requestRun(q);
  assert.equal(first, 1);
  assert.equal(P.requestRun(q), null, "in flight: waits");
  assert.equal(P.requestRun(q), null, "several changes: still one waiting");
  const second = P.runFinished(q);
  assert.equal(second, 2);
  assert.equal(P.isCurrent(q, first), false);
  assert.equal(P.isCurrent(q, second), true);
  assert.equal(P.runFinished(q), null);
  assert.equal(P.requestRun(q), 3);
});

test("dice: seeds within 0 .. 2^32 - 1", () => {
  assert.equal(P.randomSeed(() => 0), 0);
  assert.equal(P.randomSeed(() => 0.9999999999), 4294967295);
  for (let i = 0; i < 100; i++) {
    const s = P.randomSeed();
    assert.ok(Number.isInteger(s) && s >= 0 && s < 2 ** 32);
  }
});
