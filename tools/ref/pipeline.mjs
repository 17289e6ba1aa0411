#!/usr/bin/env node
// The whole face-api.js pipeline per photo:
//   detectAllFaces(tensor).withFaceLandmarks().withFaceDescriptors()
import {
  parseArgs, setup, loadImageTensor, emit, arr, boxArray, pointsArray, progress, faceapi, tf, die,
  DEFAULT_MODELS,
} from './lib.mjs';

const USAGE = `
usage: node pipeline.mjs [--detector ssd|tiny] [--min-score S] [--input-size N]
                         [--models DIR] [--size WxH] [--list FILE] [FILE...]

Per image, one line on stdout:
  {"image", "width", "height",
   "faces": [{"box": [x,y,w,h], "score",            detection, image pixels
              "landmarks": [[x,y] x 68],            image pixels
              "descriptor": [128 floats],
              "landmark_crop": [x,y,w,h],           crop fed to the landmark net
              "descriptor_crop": [x,y,w,h]}, ...]}  crop fed to the recognition net
or {"image", "error"}.
Progress (count, rate, tf.memory) goes to stderr every 100 images.

landmark_crop  = detection box, clipAtImageBorders + floor (extractFaceTensors)
descriptor_crop = landmarks.align(null, {useDlibAlignment: true}), clipped and
                  floored the same way; both recomputed here with face-api's own
                  Box methods, for parity tests of the C crop logic.

  --detector    ssd (default) or tiny
  --min-score   ssd minConfidence / tiny scoreThreshold (default 0.5)
  --input-size  tiny input size (default 416)
  --models DIR  model folder (default ${DEFAULT_MODELS})
  --size WxH    size of raw .rgb inputs whose name does not carry it
  --list FILE   read input paths from FILE, one per line
`;

const { opts, files } = parseArgs(process.argv.slice(2), {
  detector: 'string', 'min-score': 'number', 'input-size': 'number',
  models: 'string', size: 'string', list: 'string',
}, USAGE);
if (!files.length) { process.stderr.write(USAGE.trim() + '\n'); process.exit(2); }
const detector = opts.detector || 'ssd';
if (detector !== 'ssd' && detector !== 'tiny') die(`--detector must be ssd or tiny, not ${detector}`);
await setup({ models: opts.models, nets: [detector, 'landmarks', 'recognition'] });
const options = detector === 'ssd'
  ? new faceapi.SsdMobilenetv1Options({ minConfidence: opts['min-score'] })
  : new faceapi.TinyFaceDetectorOptions({ inputSize: opts['input-size'], scoreThreshold: opts['min-score'] });

const t0 = performance.now();
let nFaces = 0;
let nErrors = 0;
for (let i = 0; i < files.length; i++) {
  const file = files[i];
  let tensor;
  try {
    const img = loadImageTensor(file, opts);
    tensor = img.tensor;
    const { width: W, height: H } = img;
    const results = await faceapi.detectAllFaces(tensor, options).withFaceLandmarks().withFaceDescriptors();
    const faces = results.map((r) => {
      const lmCrop = r.detection.forSize(W, H).box.clipAtImageBorders(W, H);
      const dCrop = r.landmarks.align(null, { useDlibAlignment: true }).clipAtImageBorders(W, H);
      return {
        box: boxArray(r.detection.box),
        score: r.detection.score,
        landmarks: pointsArray(r.landmarks.positions),
        descriptor: arr(r.descriptor),
        landmark_crop: boxArray(lmCrop),
        descriptor_crop: boxArray(dCrop),
      };
    });
    nFaces += faces.length;
    emit({ image: file, width: W, height: H, faces });
  } catch (e) {
    nErrors++;
    emit({ image: file, error: String(e && e.message ? e.message : e) });
  } finally {
    if (tensor) tensor.dispose();
  }
  if ((i + 1) % 100 === 0 || i + 1 === files.length) {
    const s = (performance.now() - t0) / 1000;
    const m = tf.memory();
    progress(`pipeline: ${i + 1}/${files.length} images, ${nFaces} faces, ${nErrors} errors, `
      + `${((i + 1) / s).toFixed(2)} img/s, tensors=${m.numTensors} bytes=${m.numBytes} rss=${(process.memoryUsage().rss / 1048576).toFixed(0)}MB`);
  }
}
