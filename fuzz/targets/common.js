// Shared by the jazzer.js fuzz targets: where the compiled library is, scratch
// directories, and the rejection invariant.
'use strict';
const fs = require('fs');
const os = require('os');
const path = require('path');

const ROOT = path.resolve(__dirname, '..', '..');
// scripts/fuzz.sh compiles src/ into build-fuzz/ts (instrumented by jazzer.js from there)
const LIB = process.env.ER_FUZZ_LIB || path.join(ROOT, 'build-fuzz', 'ts');
if (!process.env.ER_ADDON_PATH) process.env.ER_ADDON_PATH = path.join(ROOT, 'build', 'Release', 'embedding_recycler.node');

function lib(rel) {
  return require(path.join(LIB, rel));
}

/** A scratch directory for this process, removed at exit. */
function scratch(name) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `er-fuzz-${name}-`));
  process.on('exit', () => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/**
 * The invariant on every rejection: it is one of the library's own error types and
 * says what is wrong. Anything else (a TypeError from inside a parser, a RangeError
 * from a spread, an error without a message) is rethrown as it is, so that the fuzzer
 * reports it with its original stack.
 */
function expectLibraryError(err, types) {
  if (types.some((T) => err instanceof T) && typeof err.message === 'string' && err.message.length > 10) return;
  throw err;
}

/** An invariant that the fuzzer reports as a finding. */
function check(cond, what) {
  if (!cond) throw new Error(`invariant violated: ${what}`);
}

module.exports = { ROOT, LIB, lib, scratch, expectLibraryError, check };
