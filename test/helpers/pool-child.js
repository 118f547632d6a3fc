// Runs eight concurrent forward passes on one encoder, then asks libuv's thread pool for
// a small crypto job (pbkdf2) at once, and reports the order in which they finished.
// Run with UV_THREADPOOL_SIZE=2: when native work waits in pool threads, the pool job
// waits behind it. argv: model directory.
'use strict';
const crypto = require('crypto');
const path = require('path');
const { Encoder } = require(path.resolve(__dirname, '..', '..', 'lib'));

(async () => {
  const enc = await Encoder.load(process.argv[2], { threads: 1 });
  const texts = Array.from({ length: 16 }, (_, i) => `sentence ${i} about kinase activity measured in vitro with several inhibitors of the enzyme`);
  const batch = await enc.tokenize(texts, { padding: 'max_length', maxLength: 128 });
  await enc.forward(batch); // warm up
  const order = [];
  const forwards = Array.from({ length: 8 }, (_, i) => enc.forward(batch).then(() => order.push(`forward ${i}`)));
  const pool = new Promise((resolve, reject) =>
    crypto.pbkdf2('secret', 'salt', 1, 32, 'sha256', (err) => (err ? reject(err) : resolve(order.push('pool job')))));
  await Promise.all([...forwards, pool]);
  enc.close();
  process.stdout.write(JSON.stringify({ order }) + '\n');
})().catch((e) => {
  process.stderr.write(String(e && e.stack) + '\n');
  process.exit(1);
});
