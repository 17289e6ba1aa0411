#!/usr/bin/env node
// Face detection with face-api.js (SSD MobileNet v1 or tiny face detector).
import {
  parseArgs, setup, loadImageTensor, emit, arr, boxArray, faceapi, tf, die, DEFAULT_MODELS,
} from './lib.mjs';

const USAGE = `
usage: node detect.mjs [--detector ssd|tiny] [--min-score S] [--input-size N]
                       [--max-results N] [--raw] [--models DIR] [--size WxH]
                       [--list FILE] FILE...

Default mode: faceapi.detectAllFaces(tensor, options) per image, one line each:
  {"image", "width", "height", "detector",
   "faces": [{"box": [x, y, w, h], "score": s}, ...]}   (image pixels)
or {"image", "error"}.
  ssd : SsdMobilenetv1Options({minConfidence: S (0.5), maxResults: N (100)})
  tiny: TinyFaceDetectorOptions({inputSize: N (416), scoreThreshold: S (0.5)})

--raw: the network output before any thresholding / NMS, for parity tests:
  ssd : {"image", "width", "height", "detector": "ssd", "input_size": 512,
         "reshaped": [rw, rh],        computeReshapedDimensions(W,H,512)
         "boxes": [[ymin, xmin, ymax, xmax] x 5118],  decoded, relative to the
                                       512x512 input (image padded bottom/right)
         "scores": [5118 floats]}     sigmoid of the face class
  tiny: {"image", "width", "height", "detector": "tiny", "input_size": N,
         "reshaped": [rw, rh], "shape": [1, N/32, N/32, 25],
         "output": [floats]}          last conv output, NHWC, 5 anchors x
                                       (tx, ty, tw, th, score-logit)

  --models DIR  model folder (default ${DEFAULT_MODELS})
  --size WxH    size of raw .rgb inputs whose name does not carry it
  --list FILE   read more input paths from FILE, one per line
`;

const { opts, files } = parseArgs(process.argv.slice(2), {
  detector: 'string', 'min-score': 'number', 'input-size': 'number', 'max-results': 'number',
  raw: 'bool', models: 'string', size: 'string', list: 'string',
}, USAGE);
if (!files.length) { process.stderr.write(USAGE.trim() + '\n'); process.exit(2); }
const detector = opts.detector || 'ssd';
if (detector !== 'ssd' && detector !== 'tiny') die(`--detector must be ssd or tiny, not ${detector}`);
await setup({ models: opts.models, nets: [detector] });

const options = detector === 'ssd'
  ? new faceapi.SsdMobilenetv1Options({ minConfidence: opts['min-score'], maxResults: opts['max-results'] })
  : new faceapi.TinyFaceDetectorOptions({ inputSize: opts['input-size'], scoreThreshold: opts['min-score'] });

async function raw(tensor) {
  const netInput = await faceapi.toNetInput(tensor);
  if (detector === 'ssd') {
    const { boxes, scores } = faceapi.nets.ssdMobilenetv1.forwardInput(netInput);
    const r = netInput.getReshapedInputDimensions(0);
    const out = {
      input_size: netInput.inputSize, reshaped: [r.width, r.height],
      boxes: boxes[0].arraySync(), scores: arr(scores[0].dataSync()),
    };
    boxes.forEach((t) => t.dispose());
    scores.forEach((t) => t.dispose());
    return out;
  }
  const inputSize = options.inputSize;
  const t = faceapi.nets.tinyFaceDetector.forwardInput(netInput, inputSize);
  const r = netInput.getReshapedInputDimensions(0);
  const out = { input_size: inputSize, reshaped: [r.width, r.height], shape: t.shape, output: arr(t.dataSync()) };
  t.dispose();
  return out;
}

for (const file of files) {
  let tensor;
  try {
    const img = loadImageTensor(file, opts);
    tensor = img.tensor;
    const head = { image: file, width: img.width, height: img.height, detector };
    if (opts.raw) {
      emit({ ...head, ...(await raw(tensor)) });
    } else {
      const dets = await faceapi.detectAllFaces(tensor, options);
      emit({ ...head, faces: dets.map((d) => ({ box: boxArray(d.box), score: d.score })) });
    }
  } catch (e) {
    emit({ image: file, error: String(e && e.message ? e.message : e) });
  } finally {
    if (tensor) tensor.dispose();
  }
}
if (tf.memory().numTensors > 1000) process.stderr.write(`detect: tensor leak? ${JSON.stringify(tf.memory())}\n`);
