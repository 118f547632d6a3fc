// A reader process for the concurrency test: reads every committed record of a
// store (checksums on) over and over while a writer appends, until `stopFile`
// exists; prints {"passes", "reads", "batches", "errors": [...], "seen": [records
// committed at the start of each pass], "hashes": {key hex: sha1 of the record's
// values}} as JSON. A record read twice with different values is an error.
'use strict';
const crypto = require('crypto');
const fs = require('fs');
const path = require('path');
const { ActivationStore } = require(path.resolve(__dirname, '..', '..', 'lib'));

async function main() {
  const [dir, stopFile] = process.argv.slice(2);
  const result = { passes: 0, reads: 0, batches: 0, errors: [], seen: [], hashes: {} };
  while (!fs.existsSync(stopFile)) {
    if (!fs.existsSync(path.join(dir, 'manifest.json'))) {
      await new Promise((r) => setTimeout(r, 10));
      continue;
    }
    let store;
    try {
      store = await ActivationStore.open(dir);
      const seen = store.stats().records;
      const ids = store.db.prepare('SELECT id FROM docs').pluck().all();
      for (const id of ids) {
        for (const ref of store.document(id)) {
          const t = store.read(ref, true);
          if (t.data.length !== ref.tokens * store.identity.hidden) throw new Error(`short read of ${id}`);
          const key = ref.key.toString('hex');
          const h = crypto.createHash('sha1').update(new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength)).digest('hex');
          if (result.hashes[key] !== undefined && result.hashes[key] !== h) throw new Error(`record ${key} of ${id} changed between reads`);
          result.hashes[key] = h;
          result.reads++;
        }
      }
      for await (const b of store.batches(ids.slice(0, 64), { batchSize: 8, prefetch: 2 })) {
        if (b.hidden.shape[0] !== b.keys.length) throw new Error('batch rows differ from keys');
        result.batches++;
      }
      result.passes++;
      result.seen.push(seen);
    } catch (e) {
      result.errors.push(String(e && e.message));
      if (result.errors.length > 20) break;
    } finally {
      if (store) store.close();
    }
  }
  process.stdout.write(JSON.stringify(result) + '\n');
}
main().catch((e) => {
  process.stdout.write(JSON.stringify({ passes: 0, reads: 0, batches: 0, errors: [String(e && e.stack)], seen: [], hashes: {} }) + '\n');
  process.exit(1);
});
