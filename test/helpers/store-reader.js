// A reader process for the concurrency test: reads every committed record of a
// store (checksums on) over and over while a writer appends, until `stopFile`
// exists; prints {"passes", "reads", "errors": [...]} as JSON.
'use strict';
const fs = require('fs');
const path = require('path');
const { ActivationStore } = require(path.resolve(__dirname, '..', '..', 'lib'));

async function main() {
  const [dir, stopFile] = process.argv.slice(2);
  const result = { passes: 0, reads: 0, batches: 0, errors: [] };
  while (!fs.existsSync(stopFile)) {
    if (!fs.existsSync(path.join(dir, 'manifest.json'))) {
      await new Promise((r) => setTimeout(r, 10));
      continue;
    }
    let store;
    try {
      store = await ActivationStore.open(dir);
      const ids = store.db.prepare('SELECT id FROM docs').pluck().all();
      for (const id of ids) {
        for (const ref of store.document(id)) {
          const t = store.read(ref, true);
          if (t.data.length !== ref.tokens * store.identity.hidden) throw new Error(`short read of ${id}`);
          result.reads++;
        }
      }
      for await (const b of store.batches(ids.slice(0, 64), { batchSize: 8, prefetch: 2 })) {
        if (b.hidden.shape[0] !== b.keys.length) throw new Error('batch rows differ from keys');
        result.batches++;
      }
      result.passes++;
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
  process.stdout.write(JSON.stringify({ passes: 0, reads: 0, errors: [String(e && e.stack)] }) + '\n');
  process.exit(1);
});
