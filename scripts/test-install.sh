#!/usr/bin/env bash
# npm run test:install: proves `npm install embedding-recycler` needs no compiler.
#  1. npm run pack:all (the main and the platform package's tarballs, in dist/);
#  2. starts a local npm registry (verdaccio 6.8.0) on 127.0.0.1, publishes both
#     tarballs to it; it proxies every other package from the usual registry;
#  3. in a new empty folder, with a PATH holding only node, npm and sh (no cc, gcc,
#     g++, c++, cmake, make, python) and LD_LIBRARY_PATH empty, runs
#     `npm install embedding-recycler`, which must succeed for the whole tree;
#  4. checks that no compile step ran (npm's log), that ldd resolves oneDNN, SQLite,
#     libgomp and the OpenCL loader inside node_modules, and that `import` and
#     `require` both load the real MiniLM and reproduce this checkout's forward
#     outputs bit for bit;
#  5. stops the registry.
# ER_INSTALL_TEST_KEEP=1 keeps the work folder for a look afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
MODEL=${ER_MODEL_DIR:-$ROOT/models/all-MiniLM-L6-v2}
[ -f "$MODEL/config.json" ] || { echo "test:install: $MODEL is missing (npm run fetch-model)"; exit 1; }
WORK=$(mktemp -d /tmp/er-install-test.XXXXXX)
REG_PID=""
cleanup() {
  [ -n "$REG_PID" ] && kill "$REG_PID" 2>/dev/null && wait "$REG_PID" 2>/dev/null || true
  [ "${ER_INSTALL_TEST_KEEP:-}" = 1 ] && echo "kept $WORK" || rm -rf "$WORK"
}
trap cleanup EXIT
say() { echo "test:install: $*"; }
UPSTREAM=$(npm config get registry)

# ---- 1. tarballs
t0=$(date +%s)
node scripts/pack-all.mjs
MAIN_TGZ=$(node -p "require('./dist/pack.json').tarballs.find(t => t.name === 'embedding-recycler').file")
PLAT_TGZ=$(node -p "require('./dist/pack.json').tarballs.find(t => t.name !== 'embedding-recycler').file")
if tar -tzf "$MAIN_TGZ" | grep -E '^package/(test|bench|build|build-asan|fuzz|models|dist|native/tests)/|fixtures|\.map$'; then
  say "the main package holds tests, fixtures, benchmarks or build folders (above)"; exit 1
fi

# ---- 2. the registry (installed once into .cache/, outside the package's own tree)
VD=$ROOT/.cache/verdaccio
if [ ! -x "$VD/node_modules/.bin/verdaccio" ]; then
  say "installing verdaccio 6.8.0 into $VD"
  mkdir -p "$VD"
  cat > "$VD/package.json" <<JSON
{ "name": "er-test-registry", "private": true,
  "dependencies": { "verdaccio": "6.8.0" },
  "overrides": { "node-fetch": "2.7.0" } }
JSON
  (cd "$VD" && npm install --no-audit --no-fund --loglevel=error >/dev/null)
fi
PORT=$(node -e "const s=require('net').createServer().listen(0,'127.0.0.1',()=>{console.log(s.address().port);s.close()})")
mkdir -p "$WORK/registry/storage"
cat > "$WORK/registry/config.yaml" <<YAML
storage: $WORK/registry/storage
auth:
  htpasswd:
    file: $WORK/registry/htpasswd
    max_users: 10
uplinks:
  upstream:
    url: $UPSTREAM
    timeout: 60s
packages:
  'embedding-recycler':
    access: \$all
    publish: \$authenticated
  '@embedding-recycler/*':
    access: \$all
    publish: \$authenticated
  '**':
    access: \$all
    proxy: upstream
max_body_size: 600mb
log: { type: stdout, format: pretty, level: warn }
YAML
"$VD/node_modules/.bin/verdaccio" --config "$WORK/registry/config.yaml" --listen "127.0.0.1:$PORT" >"$WORK/registry/log" 2>&1 &
REG_PID=$!
REG=http://127.0.0.1:$PORT/
# wait for it (up to 60 s), then register a user for publishing and take its token
TOKEN=$(node -e "
const reg = process.argv[1];
(async () => {
  for (let i = 0; i < 300; i++) {
    try { if ((await fetch(reg + '-/ping')).ok) break; } catch {}
    await new Promise((r) => setTimeout(r, 200));
  }
  const r = await fetch(reg + '-/user/org.couchdb.user:er-ci', { method: 'PUT', headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ name: 'er-ci', password: 'er-ci-password' }) });
  if (!r.ok) throw new Error('the registry refused to register a user: ' + r.status + ' ' + (await r.text()));
  console.log((await r.json()).token);
})().catch((e) => { console.error(e.message); process.exit(1); });" "$REG") || { cat "$WORK/registry/log"; say "the registry did not start"; exit 1; }
NPMRC=$WORK/npmrc
printf 'registry=%s\n//127.0.0.1:%s/:_authToken=%s\naudit=false\nfund=false\nupdate-notifier=false\n' "$REG" "$PORT" "$TOKEN" > "$NPMRC"
for tgz in "$PLAT_TGZ" "$MAIN_TGZ"; do
  npm publish "$tgz" --userconfig "$NPMRC" --registry "$REG" --loglevel=error >/dev/null
  say "published $(basename "$tgz") to $REG"
done

# ---- 3. a bare install: no compiler or build tool on PATH, no LD_LIBRARY_PATH
BIN=$WORK/bin
mkdir -p "$BIN" "$WORK/app"
for tool in node npm npx sh; do ln -s "$(command -v $tool)" "$BIN/$tool"; done
for tool in cc gcc g++ c++ cmake make python3; do
  PATH=$BIN command -v $tool >/dev/null 2>&1 && { say "$tool is reachable on the bare PATH"; exit 1; }
done
cd "$WORK/app"
printf '{ "name": "er-install-check", "version": "1.0.0", "private": true }\n' > package.json
t1=$(date +%s)
env -i HOME="$WORK/home" PATH="$BIN" LD_LIBRARY_PATH= npm_config_cache="$WORK/npm-cache" \
  npm install embedding-recycler --userconfig "$NPMRC" --registry "$REG" --foreground-scripts --loglevel=verbose \
  >"$WORK/npm-install.log" 2>&1 || { tail -40 "$WORK/npm-install.log"; say "npm install failed"; exit 1; }
t2=$(date +%s)
say "npm install embedding-recycler took $((t2 - t1)) s ($(ls node_modules | wc -l) top-level packages)"

# ---- 4. checks
# every lifecycle script npm ran: ours only (it compiles nothing unless asked), and nothing built
grep -E "^npm info run " "$WORK/npm-install.log" | grep -v "{ code: 0" | tee "$WORK/scripts.txt"
if grep -vE "^npm info run embedding-recycler@[^ ]+ install node_modules/embedding-recycler node scripts/install.js$" "$WORK/scripts.txt"; then
  say "another package ran a lifecycle script at install (above)"; exit 1
fi
if grep -Ei "gyp info|cmake-js compile|prebuild-install|building the native addon|CMAKE_|Compiling" "$WORK/npm-install.log"; then
  say "a compile step ran during install (above)"; exit 1
fi
for p in cmake-js node-gyp node-addon-api; do
  [ ! -e "node_modules/$p" ] || { say "$p was installed: a build was prepared"; exit 1; }
done
ADDON=$(ls "$WORK"/app/node_modules/@embedding-recycler/*/embedding_recycler.node)
ldd "$ADDON" | tee "$WORK/ldd.txt"
for lib in libdnnl.so.2 libsqlite3.so.0 libgomp.so.1 libOpenCL.so.1; do
  grep -q "$lib => $WORK/app/node_modules/@embedding-recycler/" "$WORK/ldd.txt" || { say "$lib does not resolve inside node_modules"; exit 1; }
done
! grep -q "not found" "$WORK/ldd.txt" || { say "unresolved libraries"; exit 1; }

cat > "$WORK/app/check.mjs" <<'JS'
import * as lib from 'embedding-recycler';
import { Encoder, cpuInfo } from 'embedding-recycler';
import { forwardDigest } from './digest.cjs';
if (typeof Encoder.load !== 'function' || typeof cpuInfo !== 'function') throw new Error('named ESM exports are missing');
console.log(JSON.stringify(await forwardDigest(lib, process.argv[2])));
JS
cat > "$WORK/app/check.cjs" <<'JS'
const lib = require('embedding-recycler');
const { forwardDigest } = require('./digest.cjs');
forwardDigest(lib, process.argv[2]).then((d) => console.log(JSON.stringify(d)));
JS
cp "$ROOT/scripts/forward-digest.cjs" "$WORK/app/digest.cjs"
env -i HOME="$WORK/home" PATH="$BIN" node check.mjs "$MODEL" > "$WORK/esm.json"
env -i HOME="$WORK/home" PATH="$BIN" node check.cjs "$MODEL" > "$WORK/cjs.json"
(cd "$ROOT" && node -e "
require('./scripts/forward-digest.cjs').forwardDigest(require('./lib'), process.argv[1]).then((d) => console.log(JSON.stringify(d)));" "$MODEL") > "$WORK/checkout.json"
node -e "
const fs = require('fs');
const [e, c, k] = ['esm', 'cjs', 'checkout'].map((n) => JSON.parse(fs.readFileSync(process.argv[1] + '/' + n + '.json', 'utf8')));
if (!e.addon.includes('/node_modules/@embedding-recycler/')) throw new Error('import loaded ' + e.addon + ', not the platform package');
if (!c.addon.includes('/node_modules/@embedding-recycler/')) throw new Error('require loaded ' + c.addon + ', not the platform package');
for (const [n, d] of [['import', e], ['require', c]]) {
  if (d.sha256 !== k.sha256) throw new Error(n + ': forward outputs differ from the checkout (' + d.sha256 + ' vs ' + k.sha256 + ')');
}
console.log('test:install: import and require reproduce the checkout bit for bit: ' + k.values + ' values, sha256 ' + k.sha256.slice(0, 16) + '...');
" "$WORK"
node -e "
const p = require('$ROOT/dist/pack.json');
for (const t of p.tarballs) console.log('test:install: ' + t.name + ' ' + (t.size / 2 ** 20).toFixed(1) + ' MiB packed, ' + (t.unpackedSize / 2 ** 20).toFixed(1) + ' MiB unpacked');
console.log('test:install: requires glibc >= ' + p.requires.glibc + ', GLIBCXX_' + p.requires.glibcxx);"
say "passed in $(( $(date +%s) - t0 )) s"
