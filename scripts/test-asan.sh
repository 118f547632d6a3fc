#!/usr/bin/env bash
# Builds the addon and the native tests with AddressSanitizer + UndefinedBehaviorSanitizer
# (gcc's runtimes; LeakSanitizer is part of ASan) into build-asan/ and runs the native
# kernel tests and the whole vitest suite against it, leak checking included.
#   npm run test:asan [-- vitest args]
# Every sanitizer report (ASan, UBSan, LSan; from vitest, its test workers and any
# process a test starts) is written to a file under build-asan/sanitizer-logs/; the run
# fails if any is there at the end. Leaks that are Node's own (V8's heap metadata, which
# Node never frees at exit) are suppressed by test/asan/lsan.supp; see its comments.
set -euo pipefail
cd "$(dirname "$0")/.."
npx cmake-js compile --debug --CDER_SANITIZE=ON --out build-asan
logs="$PWD/build-asan/sanitizer-logs"
rm -rf "$logs" && mkdir -p "$logs"
# intercept_tls_get_addr=0: LeakSanitizer's bookkeeping of dynamic TLS (gcc 12's runtime)
# reads a bogus range for the OpenMP worker threads the addon's compute thread starts, and
# its end-of-process check then crashes ("Tracer caught signal 11"); without the
# interception it scans static TLS and stacks only (no leak is reported either way here).
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=1:halt_on_error=1:intercept_tls_get_addr=0:log_path=$logs/asan"
# exitcode=0: a leak is reported (to the log files, which fail the run below) without
# changing the exit status of the process, so a test that checks a child's status still
# reads the child's own.
export LSAN_OPTIONS="suppressions=$PWD/test/asan/lsan.supp:print_suppressions=0:exitcode=0"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:log_path=$logs/ubsan"
status=0
./build-asan/er_native_tests || status=$?
# Node itself is not instrumented: preload the runtime so the addon's checks work.
# vitest.asan.config.ts makes the test workers exit normally on SIGTERM and gives them
# time to finish LeakSanitizer's end-of-process check before vitest's SIGKILL.
LD_PRELOAD="$(g++ -print-file-name=libasan.so):$(g++ -print-file-name=libubsan.so)" \
  ER_ADDON_PATH="$PWD/build-asan/Debug/embedding_recycler.node" \
  npx vitest run --config vitest.asan.config.ts --exclude test/unit/native-kernels.test.ts "$@" || status=$?
reports=("$logs"/*)
if [ -e "${reports[0]}" ]; then
  echo "sanitizer reports (${#reports[@]} files in $logs):" >&2
  for f in "${reports[@]}"; do echo "== $f" >&2; head -60 "$f" >&2; done
  status=1
else
  echo "sanitizers: no ASan, UBSan or LSan report"
fi
exit $status
