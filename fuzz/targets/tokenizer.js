// jazzer.js target: loading a model's tokenizer files (TextTokenizer.load,
// src/model/tokenizer.ts): tokenizer.json through the Rust `tokenizers` binding, or
// vocab.txt (+ tokenizer_config.json) turned into a BERT WordPiece pipeline.
//
// Input: [flags u8][bytes]
//   flags bit 0 clear: the bytes are tokenizer.json
//   flags bit 0 set:   the bytes are vocab.txt; with bit 1 also set, the bytes up to the
//                      first NUL are tokenizer_config.json and the rest vocab.txt
// Invariants: no crash (a Rust panic that aborts the process is one) or hang; every
// rejection is a CheckpointError with a message; a loaded tokenizer answers
// vocabSize (a non-negative integer) and tokenToId.
'use strict';
const fs = require('fs');
const path = require('path');
const { lib, scratch, expectLibraryError, check } = require('./common');

const { TextTokenizer } = lib('model/tokenizer');
const { CheckpointError } = lib('errors');
const dir = scratch('tokenizer');
const FILES = ['tokenizer.json', 'vocab.txt', 'tokenizer_config.json'];

module.exports.fuzz = function (data) {
  if (data.length < 1) return;
  const flags = data[0];
  const body = data.subarray(1);
  for (const f of FILES) fs.rmSync(path.join(dir, f), { force: true });
  if (!(flags & 1)) {
    fs.writeFileSync(path.join(dir, 'tokenizer.json'), body);
  } else if (flags & 2) {
    const nul = body.indexOf(0);
    fs.writeFileSync(path.join(dir, 'tokenizer_config.json'), nul < 0 ? body : body.subarray(0, nul));
    fs.writeFileSync(path.join(dir, 'vocab.txt'), nul < 0 ? Buffer.alloc(0) : body.subarray(nul + 1));
  } else {
    fs.writeFileSync(path.join(dir, 'vocab.txt'), body);
  }
  let t;
  try {
    t = TextTokenizer.load(dir, 0);
  } catch (err) {
    expectLibraryError(err, [CheckpointError]);
    return;
  }
  const n = t.vocabSize;
  check(Number.isInteger(n) && n >= 0, `vocabSize is ${n}`);
  for (const tok of ['[CLS]', '<s>', 'a']) {
    const id = t.tokenToId(tok);
    check(id === null || (Number.isInteger(id) && id >= 0), `tokenToId(${tok}) is ${id}`);
  }
};
