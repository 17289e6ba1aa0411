#!/usr/bin/env node
// 68-point landmarks of face crops with face-api.js faceLandmark68Net.
import {
  parseArgs, setup, loadImageTensor, emit, arr, pointsArray, faceapi, tf, DEFAULT_MODELS,
} from './lib.mjs';

const USAGE = `
usage: node landmarks.mjs [--models DIR] [--size WxH] [--no-raw] [--list FILE] FILE...

Runs faceapi.nets.faceLandmark68Net.detectLandmarks(tensor) on each whole
image as given (normally a face crop) and prints one line per input:
  {"image", "width", "height",
   "landmarks": [[x,y] x 68],   positions in the input image's pixels
   "raw": [136 floats]}         the net's output before postProcess
                                (runNet: x0,y0,x1,y1,... relative to the
                                112x112 padded square input)
or {"image", "error"}.

face-api's postProcess: p = (raw*112 - pad) / (s*W, s*H) * (W, H) where
s = 112/max(W,H) and pad = |sW - sH|/2 on the short side.

  --models DIR  model folder (default ${DEFAULT_MODELS})
  --size WxH    size of raw .rgb inputs whose name does not carry it
  --no-raw      skip the raw output (saves a second forward pass)
  --list FILE   read more input paths from FILE, one per line
`;

const { opts, files } = parseArgs(process.argv.slice(2),
  { models: 'string', size: 'string', 'no-raw': 'bool', list: 'string' }, USAGE);
if (!files.length) { process.stderr.write(USAGE.trim() + '\n'); process.exit(2); }
await setup({ models: opts.models, nets: ['landmarks'] });
const net = faceapi.nets.faceLandmark68Net;

for (const file of files) {
  let tensor;
  try {
    const img = loadImageTensor(file, opts);
    tensor = img.tensor;
    const lm = await net.detectLandmarks(tensor);
    const out = { image: file, width: img.width, height: img.height, landmarks: pointsArray(lm.positions) };
    if (!opts['no-raw']) {
      const netInput = await faceapi.toNetInput(tensor);
      const raw = net.runNet(netInput);
      out.raw = arr(raw.dataSync());
      raw.dispose();
    }
    emit(out);
  } catch (e) {
    emit({ image: file, error: String(e && e.message ? e.message : e) });
  } finally {
    if (tensor) tensor.dispose();
  }
}
if (tf.memory().numTensors > 1000) process.stderr.write(`landmarks: tensor leak? ${JSON.stringify(tf.memory())}\n`);
