// Runs one hostile call against the native boundary in a process of its own, so that
// a crash (SIGSEGV, SIGBUS, std::terminate) shows up as the child's exit signal instead
// of taking the test runner down. Prints {"ok": true} or {"error": "<message>",
// "name": "<error class>"} and exits 0 whenever the call returned or threw.
'use strict';
const fs = require('fs');
const path = require('path');
const lib = require(path.resolve(__dirname, '..', '..', 'lib'));
const { native } = require(path.resolve(__dirname, '..', '..', 'lib', 'native', 'binding'));

const [kase, storeDir, extra] = process.argv.slice(2);

function plan(n, over = {}) {
  return {
    hidden: over.hidden ?? 32,
    batchStart: Uint32Array.from([0, n]),
    segments: new Uint32Array(n),
    offsets: Float64Array.from({ length: n }, () => 64),
    bytes: Float64Array.from({ length: n }, () => 4096),
    tokens: Uint32Array.from({ length: n }, () => 1),
    keys: new Uint8Array(n * 32),
    ...over,
  };
}

const cases = {
  // DeBERTa-v2's disentangled-attention config forged against the tensors it needs: each
  // attempt must be refused (their messages are joined)
  async disentangledForged() {
    const { readCheckpoint } = require(path.resolve(__dirname, '..', '..', 'lib', 'model', 'checkpoint'));
    const ck = readCheckpoint(path.join(path.dirname(extra), 'tiny-deberta-v2'));
    const s = ck.shape;
    const cfg = {
      vocab: s.vocabSize, hidden: s.hidden, layers: s.layers, heads: s.heads, intermediate: s.intermediate,
      maxPositions: s.maxPositions, typeVocab: 0, eps: 1e-7, precision: 'fp32',
    };
    const attempts = [
      [{ ...cfg, disentangled: 'x' }, ck.tensors],
      [{ ...cfg, disentangled: { ...s.disentangled, buckets: 1 << 15 } }, ck.tensors],
      [{ ...cfg, disentangled: { ...s.disentangled, maxRelative: 0 } }, ck.tensors],
      [{ ...cfg, disentangled: { ...s.disentangled, shareKey: 1 } }, ck.tensors],
      [{ ...cfg, disentangled: s.disentangled }, ck.tensors.filter((t) => t.slot !== 'encoder.rel_embeddings')],
      [{ ...cfg, disentangled: { ...s.disentangled, shareKey: false } }, ck.tensors],
    ];
    const errors = [];
    for (const [c, t] of attempts) {
      try {
        (await native().loadEncoder(c, t)).close();
        errors.push('loaded');
      } catch (e) {
        errors.push(e.message);
      }
    }
    throw new Error(errors.join(' | '));
  },
  // the index database: a statement used after its database closed
  async sqliteStatementAfterClose() {
    const db = new (native().SqliteDatabase)(path.join(storeDir, 'index.sqlite'), true, true);
    const st = db.prepare('SELECT key FROM records');
    db.close();
    st.step();
  },
  // a statement's class reached through an instance and called with made-up arguments
  async sqliteForgedStatement() {
    const db = new (native().SqliteDatabase)(path.join(storeDir, 'index.sqlite'), true, true);
    const st = db.prepare('SELECT 1');
    new st.constructor(db);
  },
  // a statement method called on the database object
  async sqliteWrongThis() {
    const db = new (native().SqliteDatabase)(path.join(storeDir, 'index.sqlite'), true, true);
    const st = db.prepare('SELECT 1');
    st.get.call(db);
  },
  // a parameter SQLite cannot hold
  async sqliteBindObject() {
    const db = new (native().SqliteDatabase)(path.join(storeDir, 'index.sqlite'), true, true);
    db.prepare('SELECT * FROM records WHERE key = ?').get({ toString() { return 'x'; } });
  },
  // a detached buffer as a key
  async sqliteBindDetached() {
    const db = new (native().SqliteDatabase)(path.join(storeDir, 'index.sqlite'), true, true);
    const u = new Uint8Array(32);
    structuredClone(u.buffer, { transfer: [u.buffer] });
    const r = db.prepare('SELECT count(*) AS n FROM records WHERE key = ?').get(u);
    throw new Error(`bound a detached buffer as an empty key: ${r.n} rows`);
  },
  // a file that is not a database where the index should be
  async sqliteNotADatabase() {
    await lib.ActivationStore.open(storeDir);
  },
  // a prefetch ring far larger than memory, no maxBytes
  async hugeRing() {
    const store = await lib.ActivationStore.open(storeDir);
    const reader = store.reader;
    new (native().Prefetcher)(reader, plan(1, { hidden: store.identity.hidden }), { depth: 64, verify: true, maxRows: 2 ** 31 - 1, maxTokens: 2 ** 31 - 1 });
  },
  // a WindowRef with a negative offset, through the public read()
  async negativeOffset() {
    const store = await lib.ActivationStore.open(storeDir);
    const id = store.db.prepare('SELECT id FROM docs LIMIT 1').pluck().get();
    const ref = store.document(id)[0];
    store.read({ ...ref, offset: -4096 });
  },
  async hugeTokens() {
    const store = await lib.ActivationStore.open(storeDir);
    const id = store.db.prepare('SELECT id FROM docs LIMIT 1').pluck().get();
    const ref = store.document(id)[0];
    store.read({ ...ref, tokens: 2 ** 31 });
  },
  // a Uint8Array where the decode kernel writes fp32 values
  async f16IntoBytes() {
    native().f16ToF32(new Uint16Array(1 << 20), new Uint8Array(1 << 20));
  },
  async copyIntoBytes() {
    native().copyF32(new Float32Array(1 << 20), new Uint8Array(1 << 20));
  },
  // a plain object, and a StoreWriter, where a StoreReader is expected
  async prefetcherPlainReader() {
    new (native().Prefetcher)({}, plan(1), { depth: 1, verify: true, maxRows: 1, maxTokens: 1 });
  },
  async prefetcherWrongReader() {
    const store = await lib.ActivationStore.open(storeDir);
    const encoder = await lib.Encoder.load(extra);
    const w = new (native().StoreWriter)(fs.mkdtempSync('/tmp/er-w-'), new Uint8Array(16), 1 << 20);
    void encoder;
    new (native().Prefetcher)(w, plan(1, { hidden: store.identity.hidden }), { depth: 1, verify: true, maxRows: 1, maxTokens: 1 });
  },
  // an object built on a class's prototype, and another class's object as `this`
  async fakeThis() {
    const store = await lib.ActivationStore.open(storeDir);
    const P = native().NativeEncoder.prototype;
    P.forwardFrom.call(store.reader, new Float32Array(32), new Int32Array(1), 1, 1, 0, 1, 1);
  },
  async prototypeObject() {
    const e = Object.create(native().NativeEncoder.prototype);
    await native().TaskModel.prototype.step.call(e, { B: 1, T: 1, mask: new Int32Array(1) }, null, { train: false, backward: false, threads: 1 });
  },
  // classWeights of the wrong type and length
  async classWeightsWrongType() {
    const encoder = await lib.Encoder.load(extra);
    new (native().TaskModel)(encoder.nativeHandle(), {
      mode: 2, k: 1, head: 0, numLabels: 1000000, adapterSize: 0, adapterLayers: [], adapterAct: 0, hiddenDropout: 0,
      attentionDropout: 0, headDropout: 0, seed: 1, classWeights: new Uint8Array(4), precision: 'fp32',
    });
  },
  // offsets in a prefetch plan that are not record offsets (negative, NaN)
  async planNegativeOffset() {
    const store = await lib.ActivationStore.open(storeDir);
    const p = plan(1, { hidden: store.identity.hidden, offsets: Float64Array.from([-1e12]) });
    const pf = new (native().Prefetcher)(store.reader, p, { depth: 1, verify: true, maxRows: 1, maxTokens: 8 });
    await pf.next(0);
  },
  // a segment truncated under a live mapping
  async truncatedSegment() {
    const store = await lib.ActivationStore.open(storeDir);
    const ids = store.db.prepare('SELECT id FROM docs').pluck().all();
    const refs = ids.flatMap((id) => store.document(id));
    const last = refs.reduce((a, r) => (r.offset > a.offset ? r : a));
    store.read(last); // maps the segment
    const seg = path.join(storeDir, 'segments', `seg-${String(last.segment).padStart(6, '0')}.ers`);
    fs.truncateSync(seg, 64);
    store.read(last);
  },
};

(async () => {
  try {
    await cases[kase]();
    process.stdout.write(JSON.stringify({ ok: true }) + '\n');
  } catch (e) {
    process.stdout.write(JSON.stringify({ error: String(e && e.message), name: e && e.constructor && e.constructor.name }) + '\n');
  }
})();
