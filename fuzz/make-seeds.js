#!/usr/bin/env node
// Regenerates the small seed corpora in fuzz/corpus/<target>/ from real inputs:
// the tiny test models in test/fixtures/tiny-*, and a real activation store made with
// tiny-bert by the library itself (the same calls the store tests make).
//   node fuzz/make-seeds.js   (after `npx tsc --outDir build-fuzz/ts`, as scripts/fuzz.sh does)
'use strict';
const fs = require('fs');
const os = require('os');
const path = require('path');

const ROOT = path.resolve(__dirname, '..');
process.env.ER_ADDON_PATH = process.env.ER_ADDON_PATH || path.join(ROOT, 'build', 'Release', 'embedding_recycler.node');
const LIB = process.env.ER_FUZZ_LIB || path.join(ROOT, 'build-fuzz', 'ts');
const { Encoder } = require(path.join(LIB, 'model', 'encoder'));
const { ActivationStore } = require(path.join(LIB, 'store', 'store'));
const CORPUS = path.join(ROOT, 'fuzz', 'corpus');
const FIXTURES = path.join(ROOT, 'test', 'fixtures');

function put(target, name, bytes) {
  fs.mkdirSync(path.join(CORPUS, target), { recursive: true });
  fs.writeFileSync(path.join(CORPUS, target, name), bytes);
}

async function main() {
  // safetensors: [flags u8][data size u32 LE][header JSON] (see fuzz/targets/safetensors.js)
  for (const m of ['tiny-bert', 'tiny-distilbert', 'tiny-roberta']) {
    const b = fs.readFileSync(path.join(FIXTURES, m, 'model.safetensors'));
    const n = Number(b.readBigUInt64LE(0));
    const head = Buffer.alloc(5);
    head.writeUInt32LE(b.length - 8 - n, 1);
    put('safetensors', `${m}.bin`, Buffer.concat([head, b.subarray(8, 8 + n)]));
  }
  {
    // a small one whose data the target writes and loads for real (F32 + I32 + metadata)
    const json = Buffer.from(JSON.stringify({
      __metadata__: { format: 'pt' },
      a: { dtype: 'F32', shape: [2, 3], data_offsets: [0, 24] },
      b: { dtype: 'I32', shape: [2], data_offsets: [24, 32] },
      c: { dtype: 'U8', shape: [0], data_offsets: [32, 32] },
    }));
    const head = Buffer.alloc(5);
    head[0] = 2;
    head.writeUInt32LE(32, 1);
    put('safetensors', 'small-loaded.bin', Buffer.concat([head, json]));
  }

  // tokenizer: [flags u8][file bytes]; flags bit 0: vocab.txt instead of tokenizer.json
  // the tiny models' tokenizer.json with their vocabularies cut to the first 60 tokens
  // (and the BPE merges to those within them), so one load takes microseconds, not milliseconds
  for (const m of ['tiny-bert', 'tiny-roberta']) {
    const tj = JSON.parse(fs.readFileSync(path.join(FIXTURES, m, 'tokenizer.json'), 'utf8'));
    const keep = Object.entries(tj.model.vocab).sort((a, b) => a[1] - b[1]).slice(0, 60);
    tj.model.vocab = Object.fromEntries(keep);
    if (Array.isArray(tj.model.merges)) {
      const has = (t) => Object.prototype.hasOwnProperty.call(tj.model.vocab, t);
      tj.model.merges = tj.model.merges.filter((mg) => {
        const [a, b] = Array.isArray(mg) ? mg : mg.split(' ');
        return has(a) && has(b) && has(a + b);
      });
    }
    tj.added_tokens = tj.added_tokens.filter((t) => t.id < 60);
    put('tokenizer', `${m}.json.bin`, Buffer.concat([Buffer.from([0]), Buffer.from(JSON.stringify(tj))]));
  }
  {
    const tj = JSON.parse(fs.readFileSync(path.join(FIXTURES, 'tiny-bert', 'tokenizer.json'), 'utf8'));
    const vocab = Object.entries(tj.model.vocab).sort((a, b) => a[1] - b[1]).map(([t]) => t);
    put('tokenizer', 'tiny-bert.vocab.bin', Buffer.concat([Buffer.from([1]), Buffer.from(vocab.slice(0, 120).join('\n') + '\n')]));
  }

  // a real store (fp16 and fp32): its segment files seed the native target, its manifest the manifest target
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'er-seeds-'));
  try {
    const encoder = await Encoder.load(path.join(FIXTURES, 'tiny-bert'), { threads: 1 });
    for (const dtype of ['fp16', 'fp32']) {
      const dir = path.join(tmp, dtype);
      const store = await ActivationStore.create(dir, encoder, { layer: 2, dtype, maxLength: 12, stride: 2 });
      await store.encode([{ id: 'a', text: 'enzyme inhibitor' }, { id: 'b', text: 'kidney disease receptor antibody dose cohort patients' }], { batchSize: 4 });
      store.close();
      const seg = fs.readFileSync(path.join(dir, 'segments', 'seg-000001.ers'));
      put('segment', `${dtype}-store.ers`, seg);
      put('segment', `${dtype}-one-record.ers`, seg.subarray(0, 64 + seg.readUInt32LE(64 + 4) + Number(seg.readBigUInt64LE(64 + 8))));
      put('manifest', `${dtype}-manifest.bin`, Buffer.concat([Buffer.from([0]), fs.readFileSync(path.join(dir, 'manifest.json'))]));
    }
    encoder.close?.();
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
