#!/usr/bin/env bash
# Builds the addon and the native tests with AddressSanitizer + UndefinedBehaviorSanitizer
# (into build-asan/) and runs the native kernel tests and the whole vitest suite against it.
#   npm run test:asan
set -euo pipefail
cd "$(dirname "$0")/.."
npx cmake-js compile --debug --CDER_SANITIZE=ON --out build-asan
export ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:halt_on_error=1"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
./build-asan/er_native_tests
# Node itself is not instrumented: preload the runtime so the addon's checks work
LD_PRELOAD="$(g++ -print-file-name=libasan.so):$(g++ -print-file-name=libubsan.so)" \
  ER_ADDON_PATH="$PWD/build-asan/Debug/embedding_recycler.node" \
  npx vitest run --exclude test/unit/native-kernels.test.ts "$@"
