#!/usr/bin/env node
// Build tests/data/ref/detect.json from face-api.js (tools/ref/detect.mjs):
// for each case, a sample of the raw SSD and tiny outputs and the final
// detections. Called by make.sh with one argument per case:
//   NAME:SOURCE:RGBFILE:TINY_INPUT_SIZE
// (SOURCE is what tests/test_detect.c decodes: "collage" or a path under the
// shared data folder; RGBFILE holds the pixels face-api.js is fed.)
import fs from 'node:fs';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const harness = path.join(root, 'tools/ref/detect.mjs');
const models = process.env.LETHE_MODELS || path.join(root, 'models');
const MIN_SCORE = 0.5;

function run(args) {
  const out = execFileSync('node', [harness, '--models', models, ...args], { maxBuffer: 1 << 28 });
  const rec = JSON.parse(out.toString().split('\n')[0]);
  if (rec.error) throw new Error(`${args.join(' ')}: ${rec.error}`);
  return rec;
}

function fnv1a64(buf) {
  let h = 0xcbf29ce484222325n;
  for (const b of buf) { h ^= BigInt(b); h = (h * 0x100000001b3n) & 0xffffffffffffffffn; }
  return h.toString(16).padStart(16, '0');
}

const topBy = (n, count, key) => [...Array(n).keys()].sort((a, b) => key(b) - key(a) || a - b).slice(0, count);

const cases = [];
for (const arg of process.argv.slice(2)) {
  const [name, source, rgb, tinySize] = arg.split(':');
  const ssdRaw = run(['--raw', rgb]);
  const tinyRaw = run(['--raw', '--detector', 'tiny', '--input-size', tinySize, rgb]);
  const ssd = run(['--min-score', String(MIN_SCORE), rgb]);
  const tiny = run(['--detector', 'tiny', '--input-size', tinySize, '--min-score', String(MIN_SCORE), rgb]);

  // SSD: the 50 best anchors, every 199th, and the last head's six.
  const n = ssdRaw.scores.length;
  const pick = new Set(topBy(n, 50, (i) => ssdRaw.scores[i]));
  for (let i = 0; i < n; i += 199) pick.add(i);
  for (let i = n - 6; i < n; i++) pick.add(i);
  const ssdAnchors = [...pick].sort((a, b) => a - b).map((i) => [i, ssdRaw.scores[i], ...ssdRaw.boxes[i]]);

  // tiny: all five values of the 20 best-scoring anchors, and every 97th value.
  const out = tinyRaw.output;
  const cells = tinyRaw.shape[1];
  const nAnchors = out.length / 5;
  const tpick = new Set();
  for (const a of topBy(nAnchors, 20, (k) => out[k * 5 + 4])) for (let j = 0; j < 5; j++) tpick.add(a * 5 + j);
  for (let i = 0; i < out.length; i += 97) tpick.add(i);
  const tinyValues = [...tpick].sort((a, b) => a - b).map((i) => [i, out[i]]);

  const pixels = fs.readFileSync(rgb);
  cases.push({
    name, source, width: ssdRaw.width, height: ssdRaw.height, fnv1a64: fnv1a64(pixels),
    min_score: MIN_SCORE,
    ssd_reshaped: ssdRaw.reshaped,
    ssd_anchors: ssdAnchors,
    ssd_faces: ssd.faces.map((f) => [...f.box, f.score]),
    tiny_input_size: Number(tinySize),
    tiny_cells: cells,
    tiny_values: tinyValues,
    tiny_faces: tiny.faces.map((f) => [...f.box, f.score]),
  });
  process.stderr.write(`${name}: ${ssd.faces.length} ssd faces, ${tiny.faces.length} tiny faces\n`);
}

const pkg = JSON.parse(fs.readFileSync(path.join(root, 'tools/ref/node_modules/@vladmandic/face-api/package.json')));
const doc = {
  about: 'face-api.js reference outputs for tests/test_detect.c; regenerate with tests/data/ref/make.sh',
  face_api: pkg.version,
  backend: 'tfjs-backend-wasm',
  ssd_anchors: '[index, score, top, left, bottom, right] (relative to the 512 input)',
  tiny_values: '[index into the NHWC output, value]',
  faces: '[x, y, width, height, score] in image pixels',
  cases,
};
// one case member per line keeps diffs readable
process.stdout.write(JSON.stringify(doc, null, 1).replace(/\[\n\s+([^\[\]{}]*?)\n\s+\]/g, (m, body) => `[${body.replace(/\n\s+/g, ' ')}]`) + '\n');
