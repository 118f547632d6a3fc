// The forward outputs of a fixed batch of real sentences through every layer of the
// model at `modelDir`, as a SHA-256 of the fp32 bytes: what scripts/test-install.sh
// compares between the installed package (import and require) and the checkout.
'use strict';
const crypto = require('crypto');

const SENTENCES = [
  'The patient was treated with cisplatin and showed a partial response.',
  'Mutations in BRCA1 increase the risk of breast and ovarian cancer.',
  'Café au lait spots — naïve résumé of neurofibromatosis type 1.',
  '蛋白质 folding 🧬 is studied here.',
];

/** `lib` is the package's exports (from import or require). */
async function forwardDigest(lib, modelDir) {
  const enc = await lib.Encoder.load(modelDir, { threads: 2 });
  const batch = await enc.tokenize(SENTENCES);
  const h = await enc.forward(batch);
  const sha256 = crypto.createHash('sha256').update(Buffer.from(h.data.buffer, h.data.byteOffset, h.data.byteLength)).digest('hex');
  enc.close();
  return { sha256, values: h.data.length, shape: h.shape, addon: lib.cpuInfo().addon };
}

module.exports = { forwardDigest };
