// Opens and stops many prefetchers over one store and reports how the external memory
// the addon has told V8 about (napi_adjust_external_memory) moved. Run with --expose-gc.
'use strict';
const path = require('path');
const { ActivationStore } = require(path.resolve(__dirname, '..', '..', 'lib'));
const { native } = require(path.resolve(__dirname, '..', '..', 'lib', 'native', 'binding'));

(async () => {
  const store = await ActivationStore.open(process.argv[2]);
  const ids = store.db.prepare('SELECT id FROM docs').pluck().all();
  const rounds = Number(process.argv[3] ?? 30);
  global.gc();
  const before = native().externalMemory();
  let ring = 0;
  for (let i = 0; i < rounds; i++) {
    for await (const b of store.batches(ids, { batchSize: 64, prefetch: 16 })) {
      void b;
      break;
    }
    ring = store.lastPrefetcher.stats().bufferBytes;
  }
  await new Promise((r) => setTimeout(r, 50));
  global.gc();
  await new Promise((r) => setTimeout(r, 50));
  global.gc();
  const after = native().externalMemory();
  process.stdout.write(JSON.stringify({ before, after, ring, rounds }) + '\n');
  store.close();
})();
