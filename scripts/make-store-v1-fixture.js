#!/usr/bin/env node
// Writes test/fixtures/store-v1/: a small store (tiny BERT, layer 1, fp32) whose index
// was written by better-sqlite3, the index's library up to commit aa4f436, and
// digests.json with the SHA-256 of every record as that version read it back. Run it
// from a checkout of that commit (npm run build first); test/store/compat.test.ts
// opens the result with the current code.
'use strict';
const crypto = require('crypto');
const fs = require('fs');
const path = require('path');
const root = path.resolve(__dirname, '..');
const { Encoder } = require(path.join(root, 'lib', 'model', 'encoder'));
const { ActivationStore } = require(path.join(root, 'lib', 'store', 'store'));

const texts = [
  'The patient was treated with cisplatin.',
  'Mutations in BRCA1 increase the risk of breast cancer.',
  'Café au lait spots are seen in neurofibromatosis — naïve résumé.',
  '蛋白质 and 🧬 appear together here.',
  'A longer sentence that will be split into more than one window because it keeps going on and on about proteins, ligands, binding sites and inhibitors for quite a while.',
  'Short.',
];

(async () => {
  const out = path.join(process.argv[2] || path.join(root, 'test', 'fixtures', 'store-v1'));
  fs.rmSync(out, { recursive: true, force: true });
  const enc = await Encoder.load(path.join(root, 'test', 'fixtures', 'tiny-bert'));
  const store = await ActivationStore.create(out, enc, { layer: 1, dtype: 'fp32', maxLength: 16, stride: 4 });
  await store.encode(texts.map((text, i) => ({ id: `doc-${i}`, text })), { batchSize: 4 });
  store.close();
  const ro = await ActivationStore.open(out);
  const digests = {};
  for (let i = 0; i < texts.length; i++) {
    digests[`doc-${i}`] = ro.document(`doc-${i}`).map((ref) => {
      const t = ro.read(ref);
      return crypto.createHash('sha256').update(Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength)).digest('hex');
    });
  }
  ro.close();
  enc.close();
  // the model path is the generating checkout's; the test opens the store without a model
  const m = JSON.parse(fs.readFileSync(path.join(out, 'manifest.json'), 'utf8'));
  m.modelDir = 'test/fixtures/tiny-bert';
  fs.writeFileSync(path.join(out, 'manifest.json'), JSON.stringify(m, null, 2) + '\n');
  fs.writeFileSync(path.join(out, 'digests.json'), JSON.stringify({ texts, digests }, null, 2) + '\n');
  // a read-only open leaves an empty WAL and its shared-memory file: the index file holds everything
  const wal = path.join(out, 'index.sqlite-wal');
  if (fs.existsSync(wal) && fs.statSync(wal).size !== 0) throw new Error('the WAL is not empty: the index was not checkpointed');
  for (const f of ['index.sqlite-wal', 'index.sqlite-shm', 'LOCK']) fs.rmSync(path.join(out, f), { force: true });
  console.log(`wrote ${out}`);
})().catch((e) => { console.error(e); process.exit(1); });
