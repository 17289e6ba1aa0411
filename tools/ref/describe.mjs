#!/usr/bin/env node
// Face descriptors of face chips with face-api.js (the oracle for lethe's
// 128-D ResNet). One JSON line per input file on stdout.
import {
  parseArgs, setup, loadImageTensor, emit, arr, faceapi, DEFAULT_MODELS,
} from './lib.mjs';

const USAGE = `
usage: node describe.mjs [--models DIR] [--size WxH] [--list FILE] FILE...

For each image (a face chip: .png, .jpg or raw NAME.WxH.rgb) prints
  {"image": PATH, "width": W, "height": H, "descriptor": [128 floats]}
or {"image": PATH, "error": MSG}, computed with
faceapi.nets.faceRecognitionNet.computeFaceDescriptor(tensor) on the whole
image as given (face-api pads a non-square input to a square with zeros,
centred, then resizes it bilinearly to 150x150; a 150x150 chip is used as is).
Floats are printed with full float32 precision.

  --models DIR  model folder (default ${DEFAULT_MODELS})
  --size WxH    size of raw .rgb inputs whose name does not carry it
  --list FILE   read more input paths from FILE, one per line
`;

const { opts, files } = parseArgs(process.argv.slice(2), { models: 'string', size: 'string', list: 'string' }, USAGE);
if (!files.length) { process.stderr.write(USAGE.trim() + '\n'); process.exit(2); }
await setup({ models: opts.models, nets: ['recognition'] });

for (const file of files) {
  let tensor;
  try {
    const img = loadImageTensor(file, opts);
    tensor = img.tensor;
    const d = await faceapi.nets.faceRecognitionNet.computeFaceDescriptor(tensor);
    emit({ image: file, width: img.width, height: img.height, descriptor: arr(d) });
  } catch (e) {
    emit({ image: file, error: String(e && e.message ? e.message : e) });
  } finally {
    if (tensor) tensor.dispose();
  }
}
