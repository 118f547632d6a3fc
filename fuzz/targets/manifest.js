// jazzer.js target: the activation store's manifest reader (readManifest in
// src/store/store.ts, not exported), reached through ActivationStore.open on a scratch
// store directory whose manifest.json is the fuzzed input. The directory also holds an
// empty index (index.sqlite with the seed manifest's identity hash) and segments/, so
// an input that keeps the seed's identity opens for real.
//
// Input: [flags u8][manifest.json bytes]
//   flags bit 0: when the bytes are a JSON object with an identity object, set its
//                identityHash to the hash of that identity (so mutated identities get
//                past the hash check to the checks after it)
//   flags bit 1: also write that hash into the index (so the store opens with it)
//   flags bit 2: ask for layer (flags >> 4) & 3;  bit 3: ask for dtype fp32 (else none)
// Invariants: no crash or hang; every rejection is a StoreError with a message; a store
// that opens has an identity whose every field is of its kind (a dtype that is CODECS'
// own key, non-negative integers for hidden/layer/maxLength/stride).
'use strict';
const fs = require('fs');
const path = require('path');
const { ROOT, lib, scratch, expectLibraryError } = require('./common');

const { ActivationStore, StoreError } = lib('store/store');
const { identityHash, INDEX_SCHEMA } = lib('store/format');
const { IndexDatabase } = lib('store/sqlite');

const dir = scratch('manifest');
fs.mkdirSync(path.join(dir, 'segments'));
const seed = JSON.parse(fs.readFileSync(path.join(ROOT, 'fuzz', 'corpus', 'manifest', 'fp16-manifest.bin')).subarray(1).toString('utf8'));
const db = new IndexDatabase(path.join(dir, 'index.sqlite'));
db.pragma('journal_mode = DELETE');
db.pragma('synchronous = OFF');
db.exec(INDEX_SCHEMA);
const setHash = db.prepare("INSERT OR REPLACE INTO meta (k, v) VALUES ('identityHash', ?)");
setHash.run(seed.identityHash);
let indexHash = seed.identityHash;

const { CODECS } = lib('store/format');
function checkIdentity(id) {
  const bad = [];
  if (!Object.prototype.hasOwnProperty.call(CODECS, id.dtype)) bad.push(`dtype=${JSON.stringify(id.dtype)}`);
  for (const k of ['hidden', 'layer', 'maxLength', 'stride']) {
    if (!Number.isInteger(id[k]) || id[k] < 0) bad.push(`${k}=${JSON.stringify(id[k])}`);
  }
  if (bad.length) throw new Error(`a store opened with a malformed identity: ${bad.join(' ')}`);
}

module.exports.fuzz = async function (data) {
  if (data.length < 1) return;
  const flags = data[0];
  let text = data.subarray(1);
  let wantHash = seed.identityHash;
  if (flags & 1) {
    try {
      const m = JSON.parse(text.toString('utf8'));
      if (m && typeof m === 'object' && m.identity && typeof m.identity === 'object') {
        m.identityHash = identityHash(m.identity);
        if (flags & 2) wantHash = m.identityHash;
        text = Buffer.from(JSON.stringify(m));
      }
    } catch {
      // not JSON: written as it is
    }
  }
  if (wantHash !== indexHash) {
    setHash.run(wantHash);
    indexHash = wantHash;
  }
  fs.writeFileSync(path.join(dir, 'manifest.json'), text);
  const opts = {};
  if (flags & 4) opts.layer = (flags >> 4) & 3;
  if (flags & 8) opts.dtype = 'fp32';
  let store;
  try {
    store = await ActivationStore.open(dir, opts);
  } catch (err) {
    expectLibraryError(err, [StoreError]);
    return;
  }
  try {
    store.stats();
    checkIdentity(store.identity);
  } finally {
    store.close();
  }
};
