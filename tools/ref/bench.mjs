#!/usr/bin/env node
// Speed peer: face-api.js on tfjs-backend-wasm in node, the numbers lethe's
// C engine is measured against. Prints one JSON line. Times are ms; the
// startup times count from node process start (performance.now() origin).
import os from 'node:os';
import {
  parseArgs, setup, loadImageTensor, emit, faceapi, tf, die, progress, DEFAULT_MODELS,
} from './lib.mjs';

const USAGE = `
usage: node bench.mjs --mode describe [--n 256] [--warmup 3] CHIP...
       node bench.mjs --mode ssd      [--n 20]  [--warmup 2] PHOTO...
       node bench.mjs --mode pipeline [--detector ssd|tiny] [--n N] (--list FILE | PHOTO...)
   common: [--models DIR] [--size WxH] [--list FILE]

describe  faceRecognitionNet.computeFaceDescriptor(tensor), batch of 1 as
          face-api's pipeline does, over N chips (inputs cycled); images are
          decoded to tensors before the clock starts. Reports desc_per_s and
          ms_per_desc in steady state (after --warmup calls), and separately
          node start -> modules loaded, backend init, model load, first call.
ssd       faceapi.detectAllFaces(tensor, SsdMobilenetv1Options()) (net + NMS),
          --warmup passes over the photos, then N timed detections (photos
          cycled): ms_per_photo (mean, median, min).
pipeline  detectAllFaces().withFaceLandmarks().withFaceDescriptors() on each
          photo of --list (first N if --n): photos_per_s including JPEG decode
          and excluding it (decode timed separately), faces found.

Output: one JSON line with the numbers plus backend, wasm_file, simd,
threads, thread_count, versions, cpu model and core count. cpu_ms_* /
*_per_cpu_s use the process's CPU time (user+system); the peer is
single-threaded, so on an idle machine they equal the wall-time numbers.
`;

const { opts, files } = parseArgs(process.argv.slice(2), {
  mode: 'string', n: 'number', warmup: 'number', detector: 'string',
  models: 'string', size: 'string', list: 'string',
}, USAGE);
const mode = opts.mode;
if (!['describe', 'ssd', 'pipeline'].includes(mode)) die(`--mode must be describe, ssd or pipeline\n\n${USAGE.trim()}`);
if (!files.length) die('no input files');

const tModules = performance.now();
const nets = { describe: ['recognition'], ssd: ['ssd'], pipeline: [opts.detector || 'ssd', 'landmarks', 'recognition'] }[mode];
const info = await setup({ models: opts.models, nets });

// CPU time of this process (user+system, ms): excludes time the process was
// descheduled, but not the slowdown from other load on the sibling core.
const cpuMs = () => { const u = process.cpuUsage(); return (u.user + u.system) / 1000; };
const stats = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  const mean = xs.reduce((a, b) => a + b, 0) / xs.length;
  return { mean, median: s[Math.floor(s.length / 2)], min: s[0], max: s[s.length - 1] };
};
const result = {
  mode,
  backend: info.backend,
  wasm_file: info.wasm_file,
  simd: info.simd,
  threads: info.threads,
  thread_count: info.thread_count,
  versions: info.versions,
  cpu: os.cpus()[0]?.model,
  cores: os.cpus().length,
  startup_ms: { node_to_modules: tModules, backend_init: info.backend_init_ms, model_load: info.model_load_ms },
};

if (mode === 'describe') {
  const n = opts.n || 256;
  const warmup = opts.warmup ?? 3;
  const tensors = files.map((f) => loadImageTensor(f, opts).tensor);
  const net = faceapi.nets.faceRecognitionNet;
  let t = performance.now();
  await net.computeFaceDescriptor(tensors[0]);
  result.first_call_ms = performance.now() - t;
  for (let i = 1; i < warmup; i++) await net.computeFaceDescriptor(tensors[i % tensors.length]);
  const times = [];
  const c0 = cpuMs();
  const t0 = performance.now();
  for (let i = 0; i < n; i++) {
    t = performance.now();
    await net.computeFaceDescriptor(tensors[i % tensors.length]);
    times.push(performance.now() - t);
  }
  const wall = performance.now() - t0;
  Object.assign(result, {
    n, distinct_inputs: tensors.length, warmup,
    steady_wall_ms: wall, desc_per_s: (n * 1000) / wall, ms_per_desc: stats(times),
    cpu_ms_per_desc: (cpuMs() - c0) / n, desc_per_cpu_s: (n * 1000) / (cpuMs() - c0),
    wall_incl_startup_ms: performance.now(),
  });
  tensors.forEach((x) => x.dispose());
} else if (mode === 'ssd') {
  const n = opts.n || 20;
  const warmup = opts.warmup ?? 2;
  const imgs = files.map((f) => loadImageTensor(f, opts));
  const options = new faceapi.SsdMobilenetv1Options();
  let t = performance.now();
  await faceapi.detectAllFaces(imgs[0].tensor, options);
  result.first_call_ms = performance.now() - t;
  for (let w = 0; w < warmup; w++) for (const im of imgs) await faceapi.detectAllFaces(im.tensor, options);
  const times = [];
  let faces = 0;
  const c0 = cpuMs();
  const t0 = performance.now();
  for (let i = 0; i < n; i++) {
    t = performance.now();
    faces += (await faceapi.detectAllFaces(imgs[i % imgs.length].tensor, options)).length;
    times.push(performance.now() - t);
  }
  const wall = performance.now() - t0;
  Object.assign(result, {
    n, warmup, photos: imgs.map((im, i) => ({ image: files[i], width: im.width, height: im.height })),
    faces_found: faces, steady_wall_ms: wall, ms_per_photo: stats(times), photos_per_s: (n * 1000) / wall,
    cpu_ms_per_photo: (cpuMs() - c0) / n,
    wall_incl_startup_ms: performance.now(),
  });
  imgs.forEach((im) => im.tensor.dispose());
} else {
  const list = opts.n ? files.slice(0, opts.n) : files;
  const detector = opts.detector || 'ssd';
  const options = detector === 'ssd' ? new faceapi.SsdMobilenetv1Options() : new faceapi.TinyFaceDetectorOptions();
  // one untimed warm-up call so wasm kernel setup is not in the rate
  { const w = loadImageTensor(list[0], opts); await faceapi.detectAllFaces(w.tensor, options).withFaceLandmarks().withFaceDescriptors(); w.tensor.dispose(); }
  let decodeMs = 0;
  let faces = 0;
  let errors = 0;
  const c0 = cpuMs();
  const t0 = performance.now();
  for (let i = 0; i < list.length; i++) {
    let tensor;
    try {
      const td = performance.now();
      tensor = loadImageTensor(list[i], opts).tensor;
      decodeMs += performance.now() - td;
      faces += (await faceapi.detectAllFaces(tensor, options).withFaceLandmarks().withFaceDescriptors()).length;
    } catch (e) {
      errors++;
    } finally {
      if (tensor) tensor.dispose();
    }
    if ((i + 1) % 100 === 0) progress(`bench pipeline: ${i + 1}/${list.length} ${(((i + 1) * 1000) / (performance.now() - t0)).toFixed(2)} photos/s tensors=${tf.memory().numTensors}`);
  }
  const wall = performance.now() - t0;
  Object.assign(result, {
    detector, photos: list.length, faces_found: faces, errors,
    wall_ms: wall, decode_ms: decodeMs,
    photos_per_s: (list.length * 1000) / wall,
    photos_per_s_excl_decode: (list.length * 1000) / (wall - decodeMs),
    photos_per_cpu_s: (list.length * 1000) / (cpuMs() - c0),
    wall_incl_startup_ms: performance.now(),
  });
}
result.tf_memory = tf.memory();
emit(result);
