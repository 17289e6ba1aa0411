// page.mjs: the data-subject page of `lethe serve` in headless Chromium
// (Debian's, through playwright-core), with JavaScript turned off: the
// page must work as plain HTML forms. tests/cli/test_page.sh starts the
// server and runs this with:
//   BASE          the server, e.g. http://127.0.0.1:8080
//   ERASURE_KEY   a key with the erasure role (approves requests)
//   INGEST_KEY    a key with the ingest role (the re-ingest)
//   PHOTO         a photo the store holds, uploaded by "amy"
//   SELFIE        another photo of the same face (the opt-out by face)
//   REINGEST      a third photo of that face (refused after the opt-out)
//   SHOTS         where the screenshots go (docs/page)
//   CHROMIUM      the browser (default /usr/bin/chromium)
// Each step prints "ok NAME" or "not ok NAME" and a reason; the last line
// is "N passed, N failed, 0 skipped" as tests/run.sh reads it.
import { chromium } from 'playwright-core';
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';

const env = (k) => { if (!process.env[k]) throw new Error(`${k} is not set`); return process.env[k]; };
const BASE = env('BASE'), SHOTS = env('SHOTS');
let pass = 0, fail = 0;
const ok = (name) => { pass++; console.log(`ok ${name}`); };
const bad = (name, why) => { fail++; console.log(`not ok ${name}\n  FAIL: ${why}`); };
const check = (name, cond, why) => (cond ? ok(name) : bad(name, why));

mkdirSync(SHOTS, { recursive: true });
const shot = (page, name) => page.screenshot({ path: join(SHOTS, name), fullPage: true });

async function submit(page, button) {
  await Promise.all([page.waitForNavigation(), page.getByRole('button', { name: button, exact: true }).click()]);
}

// The erasure key's side, over the API: approve the one pending request.
async function approvePending(api, by) {
  const list = await (await api.get(`${BASE}/v1/requests?pending=true`)).json();
  const q = list.requests.find((r) => r.by === by);
  if (!q) return null;
  const r = await api.post(`${BASE}/v1/requests/approve`, { data: { number: q.number } });
  return r.ok() ? r.json() : null;
}

async function lookups(page) {
  await page.goto(`${BASE}/`);
  check('the page opens', (await page.title()).includes('what this store holds'), await page.title());
  await shot(page, '01-home.png');
  await page.getByLabel('Look up by', { exact: true }).selectOption('uploader');
  await page.getByLabel('Account, link or id', { exact: true }).first().fill('amy');
  await submit(page, 'Look up');
  const text = await page.textContent('main');
  check('look up by account', text.includes('1 photo held for the account amy'), text.slice(0, 200));
  check('shows consent and the template', text.includes('explicit') && text.includes('a face template exists'), text.slice(0, 400));
  await shot(page, '02-lookup-account.png');
  await page.goto(`${BASE}/`);
  await page.setInputFiles('#look-photo', env('PHOTO'));
  await submit(page, 'Look up this file');
  check('look up by the exact file', (await page.textContent('main')).includes('1 photo held for the file'), await page.textContent('main'));
  await shot(page, '03-lookup-file.png');
}

// File an erasure by the exact file; returns the request id.
async function fileErasure(page) {
  await page.goto(`${BASE}/`);
  await page.check('#req-erase');
  await page.getByLabel('Select by', { exact: true }).selectOption('file');
  await page.setInputFiles('#req-photo', env('PHOTO'));
  await submit(page, 'File the request');
  const id = (await page.textContent('#request-id')).trim();
  check('the request gets an id', /^rq_[A-Za-z0-9_-]{43}$/.test(id), id);
  check('and waits for a decision', (await page.textContent('main')).includes('pending'), await page.textContent('main'));
  await shot(page, '04-request-filed.png');
  return id;
}

async function checkStatus(page, id) {
  await page.goto(`${BASE}/`);
  await page.getByLabel('Request id', { exact: true }).fill(id);
  await submit(page, 'Check');
  return page.textContent('main');
}

async function receipt(page, id) {
  const text = await checkStatus(page, id);
  check('the requester sees it done', text.includes('done: erased') && text.includes('1 photos, 1 faces, 1 face templates'), text);
  await shot(page, '06-status-done.png');
  const [download] = await Promise.all([page.waitForEvent('download'),
    page.getByRole('button', { name: 'Download the signed receipt' }).click()]);
  const file = join(tmpdir(), `lethe-receipt-${process.pid}.json`);
  await download.saveAs(file);
  const body = readFileSync(file, 'utf8');
  check('the receipt downloads', download.suggestedFilename() === 'lethe-receipt.json' && body.includes('"lethe_receipt":1'), body.slice(0, 200));
  await page.goto(`${BASE}/`);
  await page.setInputFiles('#verify-file', file);
  await submit(page, 'Verify');
  check('the receipt verifies on the page', (await page.textContent('main')).includes('Valid.'), await page.textContent('main'));
  await shot(page, '07-receipt-verified.png');
  await page.goto(`${BASE}/`);
  await page.getByLabel('Or paste it', { exact: true }).fill(body.replace('"photos":1', '"photos":0'));
  await submit(page, 'Verify');
  check('an altered receipt does not', (await page.textContent('main')).includes('Not valid.'), await page.textContent('main'));
}

async function selfie(page, api) {
  await page.goto(`${BASE}/`);
  check('the opt-out by face is chosen for a selfie', await page.isChecked('#face-optout'), 'not checked');
  await page.setInputFiles('#face-photo', env('SELFIE'));
  await submit(page, 'Opt out by face');
  const text = await page.textContent('main');
  const id = (await page.textContent('#request-id')).trim();
  check('the selfie request gets an id and reveals nothing', /^rq_/.test(id) && !/[0-9a-f]{64}/.test(text) && !text.includes('amy'), text);
  await shot(page, '08-selfie-filed.png');
  const done = await approvePending(api, 'face');
  check('an erasure key approves the opt-out', done && done.status === 'done' && done.erased.faces === 1, JSON.stringify(done));
  const status = await checkStatus(page, id);
  check('the requester sees counts only', status.includes('0 photos, 1 faces, 1 face templates') && !status.includes('amy'), status);
  await shot(page, '09-selfie-done.png');
  const r = await api.post(`${BASE}/v1/ingest?uploader=amy-again&consent=explicit&jurisdiction=US`, {
    headers: { 'x-api-key': env('INGEST_KEY'), 'content-type': 'image/png' }, data: readFileSync(env('REINGEST')) });
  const st = await r.json();
  check('a re-ingest of her face is refused', st.opted_out_faces === 1 && st.templates === 0, JSON.stringify(st));
  await page.goto(`${BASE}/lookup?by=uploader&value=amy-again`);
  const after = await page.textContent('main');
  check('the page shows the new photo without her face', after.includes('1 photo held for the account amy-again') && /Faces found\s*0/.test(after), after);
  await shot(page, '10-reingest-refused.png');
}

// Tab from the top reaches every control in order, with a visible focus.
async function keyboard(page) {
  await page.goto(`${BASE}/`);
  const seen = [];
  for (let i = 0; i < 30; i++) {
    await page.keyboard.press('Tab');
    seen.push(await page.locator(':focus').evaluate((el) => el.id || el.getAttribute('href') || el.textContent.trim()).catch(() => ''));
  }
  check('the skip link comes first', seen[0] === '#main', seen.join(' | '));
  for (const id of ['look-by', 'look-value', 'look-photo', 'req-erase', 'req-by', 'req-value', 'req-photo', 'face-photo', 'check-id'])
    check(`Tab reaches #${id}`, seen.includes(id), seen.join(' | '));
  await page.focus('#look-value');
  const outline = await page.locator('#look-value').evaluate((el) => getComputedStyle(el).outlineStyle);
  check('focus is visible', outline !== 'none', outline);
  await shot(page, '11-keyboard-focus.png');
}

async function main() {
  const browser = await chromium.launch({ executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--no-sandbox'] });
  try {
    // no JavaScript: the page is plain HTML forms
    const ctx = await browser.newContext({ javaScriptEnabled: false, acceptDownloads: true,
      viewport: { width: 900, height: 900 } });
    const page = await ctx.newPage();
    const errors = [];
    page.on('console', (m) => m.type() === 'error' && errors.push(m.text()));
    const office = await browser.newContext({ extraHTTPHeaders: { 'x-api-key': env('ERASURE_KEY') } });
    await lookups(page);
    const id = await fileErasure(page);
    const list = await office.newPage();
    await list.goto(`${BASE}/v1/requests?pending=true`);
    check('the erasure key sees the pending request', (await list.textContent('body')).includes('"by":"file"'), await list.textContent('body'));
    await shot(list, '05-erasure-key-list.png');
    const done = await approvePending(office.request, 'file');
    check('an erasure key approves it', done && done.status === 'done', JSON.stringify(done));
    await receipt(page, id);
    await selfie(page, office.request);
    await keyboard(page);
    check('no console errors (CSP violations, missing files)', errors.length === 0, errors.join('; '));
  } catch (e) {
    bad('the flows ran to the end', e.stack || String(e));
  } finally {
    await browser.close();
  }
  console.log(`${pass} passed, ${fail} failed, 0 skipped`);
  process.exit(fail ? 1 : 0);
}

main();
