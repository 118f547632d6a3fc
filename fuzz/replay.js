#!/usr/bin/env node
// Runs inputs through a jazzer.js fuzz target once each, without the fuzzer: the
// regression replay of scripts/fuzz.sh --replay (and of crashes found while fuzzing).
//   node fuzz/replay.js TARGET FILE...
'use strict';
const fs = require('fs');
const path = require('path');

async function main() {
  const [target, ...files] = process.argv.slice(2);
  if (!target || files.length === 0) {
    console.error('usage: node fuzz/replay.js TARGET FILE...');
    process.exit(2);
  }
  const { fuzz } = require(path.join(__dirname, 'targets', `${target}.js`));
  let bad = 0;
  for (const f of files) {
    try {
      await fuzz(fs.readFileSync(f));
      console.log(`ok   ${target} ${f}`);
    } catch (err) {
      bad++;
      console.log(`FAIL ${target} ${f}\n${err && err.stack ? err.stack : err}`);
    }
  }
  process.exit(bad ? 1 : 0);
}
main();
