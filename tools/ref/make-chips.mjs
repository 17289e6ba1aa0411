#!/usr/bin/env node
// Write 150x150 centre crops of LFW photos as PNG face chips (bench / tests).
import fs from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';
import { parseArgs, decodeImage, HERE } from './lib.mjs';

const require = createRequire(import.meta.url);
const { PNG } = require('pngjs');
const DEFAULT_LFW = path.resolve(HERE, '../../../shared/data/lfw/images');

const USAGE = `
usage: node make-chips.mjs OUTDIR [--n N] [--lfw DIR] [--crop S] [--rgb] [--list FILE] [PHOTO...]

Takes N LFW photos (default 256) spread evenly over the sorted list of
DIR/<Name>/<Name>_NNNN.jpg (default ${DEFAULT_LFW}),
or the photos given as arguments / in --list FILE, decodes them with jpeg-js (as every
tools/ref script does) and writes the centre SxS crop (default 150; for the
250x250 LFW photos that is x, y = 50..199) to OUTDIR/<basename>.png
(RGB, 8 bit). --rgb also writes OUTDIR/<basename>.SxS.rgb (raw RGB bytes).
Prints the written paths, one per line, on stdout (usable as a --list).
`;

const { opts, files } = parseArgs(process.argv.slice(2),
  { n: 'number', lfw: 'string', crop: 'number', rgb: 'bool', list: 'string' }, USAGE);
if (files.length < 1) { process.stderr.write(USAGE.trim() + '\n'); process.exit(2); }
const outDir = files[0];
const S = opts.crop || 150;

let inputs;
if (files.length > 1) {
  inputs = files.slice(1);
} else {
  const lfw = opts.lfw || DEFAULT_LFW;
  const all = [];
  for (const name of fs.readdirSync(lfw).sort()) {
    const d = path.join(lfw, name);
    if (!fs.statSync(d).isDirectory()) continue;
    for (const f of fs.readdirSync(d).sort()) if (/\.jpe?g$/i.test(f)) all.push(path.join(d, f));
  }
  const n = Math.min(opts.n || 256, all.length);
  inputs = Array.from({ length: n }, (_, i) => all[Math.floor((i * all.length) / n)]);
}

fs.mkdirSync(outDir, { recursive: true });
for (const file of inputs) {
  const { data, width, height } = decodeImage(file);
  if (width < S || height < S) throw new Error(`${file}: ${width}x${height} is smaller than ${S}x${S}`);
  const x0 = Math.floor((width - S) / 2);
  const y0 = Math.floor((height - S) / 2);
  const rgb = Buffer.alloc(S * S * 3);
  for (let y = 0; y < S; y++) {
    const src = ((y0 + y) * width + x0) * 3;
    rgb.set(data.subarray(src, src + S * 3), y * S * 3);
  }
  const png = new PNG({ width: S, height: S, colorType: 2, inputColorType: 2, inputHasAlpha: false });
  png.data = rgb;
  const base = path.basename(file).replace(/\.[^.]+$/, '');
  const out = path.join(outDir, `${base}.png`);
  fs.writeFileSync(out, PNG.sync.write(png, { colorType: 2, inputColorType: 2, inputHasAlpha: false }));
  if (opts.rgb) fs.writeFileSync(path.join(outDir, `${base}.${S}x${S}.rgb`), rgb);
  process.stdout.write(out + '\n');
}
process.stderr.write(`make-chips: ${inputs.length} chips ${S}x${S} in ${outDir}\n`);
