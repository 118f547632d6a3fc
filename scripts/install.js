#!/usr/bin/env node
// npm install hook. Nothing is compiled unless asked for: the addon comes prebuilt in
// the platform package (@embedding-recycler/<platform>-<arch>, an optional dependency),
// or from a local build in a checkout. A build from source runs only when asked
// (`npm install embedding-recycler --build-from-source`, or ER_BUILD_FROM_SOURCE=1), and
// in a checkout (npm ci there rebuilds, incrementally); it needs cmake, a C++17 compiler, oneDNN and
// SQLite (Debian/Ubuntu: apt-get install cmake g++ libdnnl-dev libsqlite3-dev) and the
// packages cmake-js and node-addon-api.
'use strict';
const fs = require('fs');
const path = require('path');
const { spawnSync } = require('child_process');

const root = path.resolve(__dirname, '..');
const truthy = (v) => v !== undefined && v !== '' && v !== '0' && v !== 'false';
const fromSource = truthy(process.env.ER_BUILD_FROM_SOURCE) || truthy(process.env.npm_config_build_from_source);
const checkout = fs.existsSync(path.join(root, '.git')) || fs.existsSync(path.join(root, 'native', 'tests'));
const platformPackage = `@embedding-recycler/${process.platform}-${process.arch}`;

function hasPlatformPackage() {
  try {
    require.resolve(`${platformPackage}/platform.json`, { paths: [root] });
    return true;
  } catch {
    return false;
  }
}

function build() {
  let cmakeJs;
  try {
    cmakeJs = require.resolve('cmake-js/bin/cmake-js', { paths: [root] });
    require.resolve('node-addon-api', { paths: [root] });
  } catch {
    console.error('embedding-recycler: building from source needs the packages cmake-js and node-addon-api:\n' +
      '  npm install cmake-js node-addon-api\n  then: npm rebuild embedding-recycler --build-from-source');
    process.exit(1);
  }
  console.log('embedding-recycler: building the native addon from source (cmake-js)');
  const r = spawnSync(process.execPath, [cmakeJs, 'compile', '--CDCMAKE_BUILD_TYPE=Release'], { cwd: root, stdio: 'inherit' });
  if (r.status !== 0) {
    console.error('embedding-recycler: building the native addon failed. It needs cmake (>= 3.18), g++ (C++17), oneDNN and SQLite.\n' +
      '  On Debian/Ubuntu: apt-get install -y cmake g++ libdnnl-dev libsqlite3-dev\n  then: npm rebuild embedding-recycler --build-from-source');
    process.exit(r.status || 1);
  }
}

if (fromSource || checkout) {
  build();
} else if (!checkout && !hasPlatformPackage()) {
  // not fatal: ER_ADDON_PATH may name an addon at run time; the loader's error lists every attempt
  console.warn(`embedding-recycler: no prebuilt addon for ${process.platform}-${process.arch} (${platformPackage} is not installed).\n` +
    '  Build it from source: npm rebuild embedding-recycler --build-from-source\n' +
    '  (needs cmake, g++, oneDNN and SQLite: apt-get install -y cmake g++ libdnnl-dev libsqlite3-dev; and npm install cmake-js node-addon-api)');
}
