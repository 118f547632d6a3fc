#!/usr/bin/env node
// npm install / npm ci hook: use a prebuilt addon when one matches this platform,
// otherwise build from source with cmake-js (needs cmake, a C++17 compiler and
// oneDNN: `apt-get install cmake g++ libdnnl-dev` on Debian/Ubuntu).
'use strict';
const fs = require('fs');
const path = require('path');
const { spawnSync } = require('child_process');

const root = path.resolve(__dirname, '..');
const prebuilt = path.join(root, 'prebuilds', `${process.platform}-${process.arch}`, 'embedding_recycler.node');
if (fs.existsSync(prebuilt) && !process.env.ER_BUILD_FROM_SOURCE) {
  console.log(`embedding-recycler: using prebuilt addon ${path.relative(root, prebuilt)}`);
  process.exit(0);
}
let cmakeJs;
try {
  cmakeJs = require.resolve('cmake-js/bin/cmake-js', { paths: [root] });
} catch {
  console.error('embedding-recycler: no prebuilt addon for ' + `${process.platform}-${process.arch}` +
    ' and cmake-js is not installed; run `npm install cmake-js` and then `npm run build:native`.');
  process.exit(1);
}
const r = spawnSync(process.execPath, [cmakeJs, 'compile', '--CDCMAKE_BUILD_TYPE=Release'], { cwd: root, stdio: 'inherit' });
if (r.status !== 0) {
  console.error('embedding-recycler: building the native addon failed. It needs cmake (>= 3.18), g++ (C++17) and oneDNN.\n' +
    '  On Debian/Ubuntu: apt-get install -y cmake g++ libdnnl-dev\n  then: npm run build:native');
  process.exit(r.status || 1);
}
