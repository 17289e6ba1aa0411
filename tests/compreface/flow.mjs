// flow.mjs: drives lethe serve's CompreFace-compatible API with CompreFace's
// own JavaScript SDK (@exadel/compreface-js-sdk 1.0.0, unmodified), as an
// existing CompreFace client would: examples of two subjects, recognition,
// verification against an example and between two photos, detection, a
// subject deleted, recognition again, an example deleted. Prints "ok NAME"
// or "not ok NAME" a check (tests/cli/test_compreface.sh counts them) and
// the deleted subject's image ids into $CF_OUT/deleted_ids.
//
// Environment: CF_PORT, CF_INGEST, CF_SEARCH, CF_ERASURE (keys), CF_IMAGES
// (LFW's images folder), CF_A, CF_B (two people: 4 photos each at least),
// CF_OUT (a folder for what the shell script checks after).
//
// The SDK's quirks, worked with: photos are given as paths starting with
// "./" (its test for a file path), so the script works in CF_IMAGES; a
// face collection or subjects object keeps the URL it last used, so each
// call takes a new one.
import { CompreFace } from '@exadel/compreface-js-sdk';
import fs from 'fs';

const env = process.env;
let failed = 0;
function check(name, cond, detail) {
    if (cond) {
        console.log(`ok ${name}`);
    } else {
        failed++;
        console.log(`not ok ${name}`);
        console.log(`  FAIL: ${detail === undefined ? '' : JSON.stringify(detail).slice(0, 400)}`);
    }
}
// The status and body of a rejected SDK call (axios error), or of a success.
async function outcome(promise) {
    try {
        return { status: 200, body: await promise };
    } catch (e) {
        return { status: e.response ? e.response.status : -1, body: e.response ? e.response.data : String(e) };
    }
}

process.chdir(env.CF_IMAGES);
const photo = (who, n) => `./${who}/${who}_${String(n).padStart(4, '0')}.jpg`;
const cf = new CompreFace('http://127.0.0.1', Number(env.CF_PORT));
const ingest = cf.initFaceRecognitionService(env.CF_INGEST);
const search = cf.initFaceRecognitionService(env.CF_SEARCH);
const erasure = cf.initFaceRecognitionService(env.CF_ERASURE);
const A = env.CF_A, B = env.CF_B;
const ids = { [A]: [], [B]: [] };

// Examples: three photos each (one with det_prob_threshold, which the SDK
// sends after a second '?').
for (const who of [A, B]) {
    for (let n = 1; n <= 3; n++) {
        const opts = n === 2 ? { det_prob_threshold: 0.8 } : {};
        const r = await outcome(ingest.getFaceCollection().add(photo(who, n), who, opts));
        check(`add example ${who} ${n}`, r.status === 200 && r.body.subject === who &&
              /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/.test(r.body.image_id), r);
        if (r.status === 200)
            ids[who].push(r.body.image_id);
    }
}

// Recognition: the right subject first, for a photo not enrolled.
for (const who of [A, B]) {
    const r = await outcome(search.recognize(photo(who, 4), { limit: 0, prediction_count: 2 }));
    const subjects = r.status === 200 && r.body.result && r.body.result[0] ? r.body.result[0].subjects : [];
    check(`recognize ${who}: the right subject first`, subjects.length >= 1 && subjects[0].subject === who, r);
    check(`recognize ${who}: similarity in 0..1, best first`, subjects.length >= 1 &&
          subjects.every((s, i) => s.similarity > 0 && s.similarity <= 1 &&
                         (i === 0 || s.similarity <= subjects[i - 1].similarity)), subjects);
    const box = r.status === 200 && r.body.result[0] ? r.body.result[0].box : {};
    check(`recognize ${who}: a box`, box.x_max > box.x_min && box.y_max > box.y_min && box.probability > 0.5, box);
}

// Verification against an example: the same person scores above another.
const same = await outcome(search.getFaceCollection().verify(photo(A, 4), ids[A][0], {}));
const other = await outcome(search.getFaceCollection().verify(photo(B, 4), ids[A][0], {}));
const simSame = same.status === 200 ? same.body.result[0].similarity : -1;
const simOther = other.status === 200 ? other.body.result[0].similarity : -1;
check('verify against an example: same person above 0.5', simSame > 0.5, same);
check('verify against an example: another person below the same', simOther >= 0 && simOther < simSame, other);

// The verification service: two photos, no store.
const vs = cf.initFaceVerificationService(env.CF_SEARCH);
const v = await outcome(vs.verify(photo(A, 4), photo(A, 1), {}));
check('verification service: same person above 0.5', v.status === 200 &&
      v.body.result[0].face_matches[0].similarity > 0.5 && v.body.result[0].source_image_face.box, v);
const vo = await outcome(vs.verify(photo(A, 4), photo(B, 1), {}));
check('verification service: another person below 0.5', vo.status === 200 &&
      vo.body.result[0].face_matches[0].similarity < 0.5, vo);

// Detection, with a key of another role (any role may detect).
const det = cf.initFaceDetectionService(env.CF_ERASURE);
const d = await outcome(det.detect(photo(B, 1), { limit: 1, det_prob_threshold: 0.5 }));
check('detect: one face with its box', d.status === 200 && d.body.result.length === 1 &&
      d.body.result[0].box.probability >= 0.5, d);

// Subjects: listed examples, then A deleted, a real erasure with a receipt.
const listB = await outcome(search.getFaceCollection().list());
check('list without a subject is refused clearly', listB.status === 400 && listB.body.code === 33, listB);
const del = await outcome(erasure.getSubjects().delete(A));
check(`delete subject ${A}`, del.status === 200 && del.body.subject === A && del.body.receipt &&
      del.body.receipt.kind === 'forget' && del.body.receipt.erased.photos === 3, del);
fs.writeFileSync(`${env.CF_OUT}/deleted_ids`, ids[A].join('\n') + '\n');
const again = await outcome(erasure.getSubjects().delete(A));
check(`delete subject ${A} again: 404, code 42`, again.status === 404 && again.body.code === 42, again);

// Recognition again: A is no longer returned.
const r2 = await outcome(search.recognize(photo(A, 4), { limit: 0, prediction_count: 5 }));
const subjects2 = r2.status === 200 ? r2.body.result[0].subjects : null;
check(`recognize after deleting ${A}: not returned`, subjects2 && !subjects2.some(s => s.subject === A), r2);
const gone = await outcome(search.getFaceCollection().verify(photo(A, 4), ids[A][0], {}));
check('verify against a deleted example: 404, code 11', gone.status === 404 && gone.body.code === 11, gone);

// One example of B deleted by id; again, 404.
const d1 = await outcome(erasure.getFaceCollection().delete(ids[B][0]));
check('delete an example by id', d1.status === 200 && d1.body.image_id === ids[B][0] &&
      d1.body.subject === B && d1.body.receipt, d1);
const d2 = await outcome(erasure.getFaceCollection().delete(ids[B][0]));
check('delete it again: 404, code 11', d2.status === 404 && d2.body.code === 11, d2);
const r3 = await outcome(search.recognize(photo(B, 4), {}));
check(`recognize ${B} with two examples left`, r3.status === 200 && r3.body.result[0].subjects[0].subject === B, r3);

process.exit(failed ? 1 : 0);
