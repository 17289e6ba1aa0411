#!/usr/bin/env node
// Decode images exactly as the tools/ref scripts do and write raw RGB files,
// so lethe (C) can be fed the very same pixels as face-api.js.
import fs from 'node:fs';
import path from 'node:path';
import { parseArgs, decodeImage } from './lib.mjs';

const USAGE = `
usage: node to-rgb.mjs OUTDIR [--list FILE] FILE...

For each .png/.jpg writes OUTDIR/<basename>.<W>x<H>.rgb (W*H*3 bytes, RGB,
row-major, no header; PNG alpha dropped, JPEG decoded with jpeg-js) and prints
{"image", "rgb", "width", "height"} as one JSON line per input on stdout.
`;

const { opts, files } = parseArgs(process.argv.slice(2), { list: 'string' }, USAGE);
if (files.length < 1 || (files.length < 2 && !opts.list)) { process.stderr.write(USAGE.trim() + '\n'); process.exit(2); }
const outDir = files[0];
fs.mkdirSync(outDir, { recursive: true });
for (const file of files.slice(1)) {
  try {
    const { data, width, height } = decodeImage(file);
    const out = path.join(outDir, `${path.basename(file).replace(/\.[^.]+$/, '')}.${width}x${height}.rgb`);
    fs.writeFileSync(out, data);
    process.stdout.write(JSON.stringify({ image: file, rgb: out, width, height }) + '\n');
  } catch (e) {
    process.stdout.write(JSON.stringify({ image: file, error: String(e && e.message ? e.message : e) }) + '\n');
  }
}
