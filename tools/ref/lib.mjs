// Shared setup for the face-api.js reference harness.
//
// Loads tfjs + the WASM backend + @vladmandic/face-api's node-wasm build from
// tools/ref/node_modules, loads the model weights from a models folder, and
// decodes images (.png via pngjs, .jpg via jpeg-js, raw .rgb) into int32 RGB
// tf.Tensor3D [H, W, 3] so that lethe (C) can be fed exactly the same pixels.
//
// stdout is reserved for JSON Lines: anything the libraries print with
// console.log/info/warn goes to stderr instead.

import fs from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

const require = createRequire(import.meta.url);
export const HERE = path.dirname(fileURLToPath(import.meta.url));
export const DEFAULT_MODELS = path.resolve(HERE, '../../models');
const WASM_DIR = path.join(path.dirname(require.resolve('@tensorflow/tfjs-backend-wasm/package.json')), 'dist') + path.sep;

// keep stdout clean for JSON Lines
console.log = console.error;
console.info = console.error;
console.warn = console.error;

// Record which .wasm binaries emscripten actually reads from disk, so the
// flavour we report is observed, not inferred.
const wasmFilesRead = [];
for (const name of ['readFileSync', 'readFile']) {
  const orig = fs[name];
  fs[name] = function patched(p, ...rest) {
    if (typeof p === 'string' && p.endsWith('.wasm')) wasmFilesRead.push(path.basename(p));
    return orig.call(this, p, ...rest);
  };
}
const origPromisesReadFile = fs.promises.readFile;
fs.promises.readFile = function patched(p, ...rest) {
  if (typeof p === 'string' && p.endsWith('.wasm')) wasmFilesRead.push(path.basename(p));
  return origPromisesReadFile.call(this, p, ...rest);
};

const tfjs = require('@tensorflow/tfjs');
const tfwasm = require('@tensorflow/tfjs-backend-wasm');
export const faceapi = require('@vladmandic/face-api/dist/face-api.node-wasm.js');
// face-api re-exports the very same tfjs module instance; use it everywhere so
// `instanceof tf.Tensor` checks inside face-api hold.
export const tf = faceapi.tf;
if (tf.Tensor !== tfjs.Tensor) throw new Error('face-api and tools/ref resolved two different tfjs copies');

export const VERSIONS = {
  'face-api': faceapi.version,
  tfjs: tf.version_core,
  'tfjs-backend-wasm': tfwasm.version_wasm,
  node: process.version,
};

/** Write one JSON Lines record to stdout (full float precision). */
export function emit(obj) {
  process.stdout.write(JSON.stringify(obj) + '\n');
}

/** Float32Array / array -> plain JS numbers (exact float32 values as doubles). */
export const arr = (a) => Array.from(a);

// ---------------------------------------------------------------- arguments

/**
 * Minimal argv parser. spec: { name: 'string'|'number'|'bool' }.
 * Returns { opts, files }. Unknown --options are an error.
 */
export function parseArgs(argv, spec, usage) {
  const opts = {};
  const files = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--help' || a === '-h') { process.stdout.write(usage.trim() + '\n'); process.exit(0); }
    if (a === '--') { files.push(...argv.slice(i + 1)); break; }
    if (a.startsWith('--')) {
      let [k, v] = a.slice(2).split(/=(.*)/s, 2);
      if (!(k in spec)) die(`unknown option --${k}\n\n${usage.trim()}`);
      if (spec[k] === 'bool') { opts[k] = true; continue; }
      if (v === undefined) {
        if (i + 1 >= argv.length) die(`option --${k} needs a value`);
        v = argv[++i];
      }
      if (spec[k] === 'number') {
        const n = Number(v);
        if (!Number.isFinite(n)) die(`option --${k}: not a number: ${v}`);
        opts[k] = n;
      } else opts[k] = v;
      continue;
    }
    files.push(a);
  }
  if (opts.list) files.push(...readList(opts.list));
  return { opts, files };
}

export function die(msg) {
  process.stderr.write(`${path.basename(process.argv[1] || 'ref')}: ${msg}\n`);
  process.exit(2);
}

/** One path per line; blank lines and lines starting with # are skipped. */
export function readList(file) {
  return fs.readFileSync(file, 'utf8').split(/\r?\n/).map((s) => s.trim()).filter((s) => s && !s.startsWith('#'));
}

// ---------------------------------------------------------------- backend

let backendInfo = null;

/**
 * Initialise the tfjs WASM backend from the local node_modules .wasm files
 * (works offline). Returns { backend, wasm_file, simd, threads, ... }.
 * tfjs 4.22 hard-codes WASM_HAS_MULTITHREAD_SUPPORT=false under node; forcing
 * it true fails (emscripten hands node's Worker a blob: URL, ERR_WORKER_PATH)
 * and tfjs silently falls back to 'cpu', so there is no threads option here.
 */
export async function initBackend() {
  if (backendInfo) return backendInfo;
  tfwasm.setWasmPaths(WASM_DIR);
  const ok = await tf.setBackend('wasm');
  await tf.ready();
  if (!ok || tf.getBackend() !== 'wasm') throw new Error(`could not initialise the tfjs wasm backend (got ${tf.getBackend()})`);
  const simd = await tf.env().getAsync('WASM_HAS_SIMD_SUPPORT');
  const threads = await tf.env().getAsync('WASM_HAS_MULTITHREAD_SUPPORT');
  const be = tf.backend();
  let threadCount = 1;
  try { threadCount = be.wasm.tfjs.getThreadsCount(); } catch { /* older builds */ }
  const expected = simd && threads ? 'tfjs-backend-wasm-threaded-simd.wasm' : simd ? 'tfjs-backend-wasm-simd.wasm' : 'tfjs-backend-wasm.wasm';
  backendInfo = {
    backend: tf.getBackend(),
    wasm_file: wasmFilesRead.length ? wasmFilesRead[wasmFilesRead.length - 1] : expected,
    wasm_file_observed: wasmFilesRead.length > 0,
    simd: !!simd,
    threads: !!threads,
    thread_count: threadCount,
    versions: VERSIONS,
  };
  return backendInfo;
}

// ---------------------------------------------------------------- models

const NETS = {
  ssd: () => faceapi.nets.ssdMobilenetv1,
  tiny: () => faceapi.nets.tinyFaceDetector,
  landmarks: () => faceapi.nets.faceLandmark68Net,
  recognition: () => faceapi.nets.faceRecognitionNet,
};

/** Load the named nets ('ssd','tiny','landmarks','recognition') from dir. */
export async function loadModels(names, dir = DEFAULT_MODELS) {
  const d = path.resolve(dir);
  if (!fs.existsSync(d)) die(`models folder not found: ${d} (run scripts/fetch-models.sh)`);
  for (const n of names) {
    const net = NETS[n]();
    if (!net.isLoaded) await net.loadFromDisk(d);
  }
}

/** initBackend + loadModels, timing both. */
export async function setup({ models = DEFAULT_MODELS, nets = [] } = {}) {
  const t0 = performance.now();
  const info = await initBackend();
  const t1 = performance.now();
  await loadModels(nets, models);
  const t2 = performance.now();
  return { ...info, backend_init_ms: t1 - t0, model_load_ms: t2 - t1 };
}

// ---------------------------------------------------------------- images

const RGB_NAME = /\.(\d+)x(\d+)\.rgb$/i;

/**
 * Decode an image file into { data: Uint8Array (H*W*3, RGB), width, height }.
 *  .png       pngjs (any colour type / bit depth -> 8-bit RGBA), alpha dropped
 *  .jpg/.jpeg jpeg-js (memory / resolution limits relaxed)
 *  .rgb       raw W*H*3 bytes; size from the name (face.150x150.rgb) or from
 *             opts.size = 'WxH'
 */
export function decodeImage(file, opts = {}) {
  const buf = fs.readFileSync(file);
  const ext = path.extname(file).toLowerCase();
  if (ext === '.rgb') {
    let m = RGB_NAME.exec(file);
    if (!m && opts.size) m = /^(\d+)x(\d+)$/.exec(opts.size);
    if (!m) throw new Error(`raw .rgb needs its size in the name (name.WxH.rgb) or --size WxH: ${file}`);
    const width = +m[1];
    const height = +m[2];
    if (buf.length !== width * height * 3) throw new Error(`${file}: ${buf.length} bytes, expected ${width}x${height}x3 = ${width * height * 3}`);
    return { data: new Uint8Array(buf.buffer, buf.byteOffset, buf.length), width, height };
  }
  let rgba;
  let width;
  let height;
  if (ext === '.png') {
    const { PNG } = require('pngjs');
    const png = PNG.sync.read(buf);
    ({ width, height } = png);
    rgba = png.data;
  } else if (ext === '.jpg' || ext === '.jpeg') {
    const jpeg = require('jpeg-js');
    const img = jpeg.decode(buf, { useTArray: true, formatAsRGBA: true, maxMemoryUsageInMB: 4096, maxResolutionInMP: 1000 });
    ({ width, height } = img);
    rgba = img.data;
  } else {
    throw new Error(`unsupported image type ${ext} (want .png, .jpg, .jpeg or .WxH.rgb): ${file}`);
  }
  const n = width * height;
  const data = new Uint8Array(n * 3);
  for (let i = 0, j = 0; i < n; i++, j += 4) {
    data[i * 3] = rgba[j];
    data[i * 3 + 1] = rgba[j + 1];
    data[i * 3 + 2] = rgba[j + 2];
  }
  return { data, width, height };
}

/** Decode an image into an int32 tf.Tensor3D [H, W, 3] (what tf.browser.fromPixels gives). */
export function loadImageTensor(file, opts = {}) {
  const { data, width, height } = decodeImage(file, opts);
  const tensor = tf.tensor3d(Int32Array.from(data), [height, width, 3], 'int32');
  return { tensor, width, height };
}

// ---------------------------------------------------------------- misc

export function boxArray(box) {
  return [box.x, box.y, box.width, box.height];
}

export function pointsArray(points) {
  return points.map((p) => [p.x, p.y]);
}

/** Progress line on stderr. */
export function progress(msg) {
  process.stderr.write(`${msg}\n`);
}
