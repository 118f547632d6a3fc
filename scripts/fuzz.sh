#!/usr/bin/env bash
# Coverage-guided fuzzing of the parsers that read files we did not write:
#   segment      native/store/segment.cpp: record_decode + verify_segment (libFuzzer, clang 14, ASan+UBSan)
#   safetensors  src/model/safetensors.ts: header and tensor table              (jazzer.js = libFuzzer + JS coverage)
#   manifest     src/store/store.ts: readManifest through ActivationStore.open  (jazzer.js)
#   tokenizer    src/model/tokenizer.ts: tokenizer.json / vocab.txt loading     (jazzer.js)
#
#   npm run fuzz -- [--runs N | --seconds N] [--seed N] [--work DIR] [TARGET...]
#   npm run fuzz -- --replay FILE...   (runs each input once through the target its name
#                                       starts with, e.g. tokenizer-vocab-nul.bin; exits 1 on a failure)
#
# TARGET filters by substring (default: all four, one after the other). Builds what it
# needs into build-fuzz/ (the native target with clang++-14 -fsanitize=fuzzer,address,undefined,
# the TypeScript with tsc into build-fuzz/ts, where jazzer.js instruments it). Seeds
# come from fuzz/corpus/<target>/ (read only); new inputs go to <work>/corpus/<target>/,
# crashes to <work>/artifacts/<target>/, logs to <work>/logs/<target>.log (work
# defaults to build-fuzz/). Prints one summary line per target and exits 1 if any
# target found a crash. Needs clang-14 and libclang-rt-14-dev (scripts/setup.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

runs=""; seconds=""; seed=""; work="$ROOT/build-fuzz"; filters=(); replay=0
while (($#)); do
  case "$1" in
    --runs) runs="$2"; shift 2 ;;
    --seconds) seconds="$2"; shift 2 ;;
    --seed) seed="$2"; shift 2 ;;
    --work) work="$(mkdir -p "$2" && cd "$2" && pwd)"; shift 2 ;;
    --replay) replay=1; shift ;;
    -h|--help) sed -n 2,19p "$0"; exit 0 ;;
    *) filters+=("$1"); shift ;;
  esac
done
[ -z "$runs" ] && [ -z "$seconds" ] && seconds=60

ALL=(segment safetensors manifest tokenizer)
BUILD="$ROOT/build-fuzz"

for t in "${ALL[@]}"; do
  if ((${#filters[@]} == 0)); then targets+=("$t"); continue; fi
  for f in "${filters[@]}"; do [[ "$t" == *"$f"* ]] && { targets+=("$t"); break; }; done
done

mkdir -p "$BUILD/native"

build_native() {
  local out="$BUILD/native/segment_fuzz"
  local srcs=(fuzz/native/segment_fuzz.cpp native/store/segment.cpp native/store/segment.h native/store/format.h
              native/kernels/crc32c.cpp native/kernels/cpu.cpp native/kernels/ops_ref.cpp native/kernels/ops_simd.cpp native/kernels/ops.h)
  local stale=0
  [ -x "$out" ] || stale=1
  for s in "${srcs[@]}"; do [ "$s" -nt "$out" ] && stale=1; done
  ((stale)) || return 0
  command -v clang++-14 >/dev/null || { echo "clang++-14 is missing: apt-get install clang-14 libclang-rt-14-dev (scripts/setup.sh does)" >&2; exit 2; }
  echo "building $out"
  local CXX=clang++-14 O="$BUILD/native"
  local F=(-std=c++17 -g -O1 -fno-omit-frame-pointer -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined -Inative -w)
  $CXX "${F[@]}" -c native/kernels/ops_simd.cpp -DER_ISA_NS=isa_generic -o "$O/simd_generic.o"
  $CXX "${F[@]}" -c native/kernels/ops_simd.cpp -DER_ISA_NS=isa_avx2 -mavx2 -mfma -mf16c -o "$O/simd_avx2.o"
  $CXX "${F[@]}" -c native/kernels/ops_simd.cpp -DER_ISA_NS=isa_avx512 -mavx512f -mavx512bw -mavx512vl -mavx512dq -mfma -mf16c -mavx2 -o "$O/simd_avx512.o"
  for s in store/segment kernels/crc32c kernels/ops_ref; do $CXX "${F[@]}" -c "native/$s.cpp" -o "$O/$(basename $s).o"; done
  # cpu.cpp only picks the SIMD level; clang 14 lacks __builtin_cpu_supports("f16c"), so g++ builds it (plain, not fuzzed)
  g++ -std=c++17 -O1 -g -Inative -c native/kernels/cpu.cpp -o "$O/cpu.o"
  $CXX "${F[@]}" -c fuzz/native/segment_fuzz.cpp -o "$O/segment_fuzz.o"
  $CXX -fsanitize=fuzzer,address,undefined "$O"/{segment_fuzz,segment,crc32c,cpu,ops_ref,simd_generic,simd_avx2,simd_avx512}.o -o "$out"
}

build_ts() {
  [ -n "${TS_BUILT:-}" ] && return 0
  echo "compiling src/ into build-fuzz/ts"
  npx tsc -p tsconfig.json --outDir "$BUILD/ts" --declaration false --sourceMap false
  # the npm package ships only prebuilt addons; the linux-x64 one needs glibc 2.38 symbols
  python3 fuzz/patch-jazzer-glibc.py >/dev/null
  TS_BUILT=1
}

if ((replay)); then
  status=0
  for f in "${filters[@]}"; do
    t=$(basename "$f"); t=${t%%-*}
    case "$t" in
      segment) build_native; "$BUILD/native/segment_fuzz" "$f" >/tmp/er-fuzz-replay.$$ 2>&1 && echo "ok   $t $f" || { status=1; echo "FAIL $t $f"; cat /tmp/er-fuzz-replay.$$; } ; rm -f /tmp/er-fuzz-replay.$$ ;;
      safetensors|manifest|tokenizer) build_ts; node fuzz/replay.js "$t" "$f" || status=1 ;;
      *) echo "$f: its name must start with a target (${ALL[*]})" >&2; status=2 ;;
    esac
  done
  exit $status
fi

targets=()
for t in "${ALL[@]}"; do
  if ((${#filters[@]} == 0)); then targets+=("$t"); continue; fi
  for f in "${filters[@]}"; do [[ "$t" == *"$f"* ]] && { targets+=("$t"); break; }; done
done
((${#targets[@]})) || { echo "no target matches: ${filters[*]} (targets: ${ALL[*]})" >&2; exit 2; }
mkdir -p "$work/logs"

limit=()
[ -n "$runs" ] && limit+=("-runs=$runs")
[ -n "$seconds" ] && limit+=("-max_total_time=$seconds")
[ -n "$seed" ] && limit+=("-seed=$seed")

status=0
printf '%-12s %10s %8s %6s %7s %8s %8s %s\n' target execs exec/s cov ft corpus crashes log
for t in "${targets[@]}"; do
  corpus="$work/corpus/$t"; art="$work/artifacts/$t"; log="$work/logs/$t.log"
  mkdir -p "$corpus" "$art"
  rc=0
  if [ "$t" = segment ]; then
    build_native
    "$BUILD/native/segment_fuzz" "${limit[@]}" -timeout=10 -rss_limit_mb=4096 -print_final_stats=1 \
      -artifact_prefix="$art/" "$corpus" "fuzz/corpus/$t" >"$log" 2>&1 || rc=$?
  else
    build_ts
    mode=(--sync)
    [ "$t" = manifest ] && mode=()   # ActivationStore.open is async
    npx jazzer "fuzz/targets/$t.js" "$corpus" "fuzz/corpus/$t" "${mode[@]}" -i build-fuzz/ts/ --timeout 10000 \
      -- "${limit[@]}" -rss_limit_mb=4096 -print_final_stats=1 -artifact_prefix="$art/" >"$log" 2>&1 || rc=$?
  fi
  last=$(grep -E '^#[0-9]+' "$log" | tail -1 || true)
  execs=$(grep -oE 'stat::number_of_executed_units: *[0-9]+' "$log" | head -1 | grep -oE '[0-9]+$' || true)
  [ -z "$execs" ] && execs=$(grep -oE 'Done [0-9]+ runs' "$log" | grep -oE '[0-9]+' | tail -1 || true)
  secs=$(grep -oE 'Done [0-9]+ runs in [0-9]+ second' "$log" | head -1 | grep -oE '[0-9]+' | tail -1 || true)
  eps=$(grep -oE 'stat::average_exec_per_sec: *[0-9]+' "$log" | head -1 | grep -oE '[0-9]+$' || true)
  [ -n "$secs" ] && [ "$secs" -gt 0 ] && [ -n "$execs" ] && eps=$((execs / secs))
  cov=$(echo "$last" | grep -oE 'cov: [0-9]+' | grep -oE '[0-9]+' || true)
  ft=$(echo "$last" | grep -oE 'ft: [0-9]+' | grep -oE '[0-9]+' || true)
  corp=$(echo "$last" | grep -oE 'corp: [0-9]+/[0-9]+[A-Za-z]*' | sed 's/corp: //' || true)
  crashes=$(find "$art" -type f \( -name 'crash-*' -o -name 'timeout-*' -o -name 'oom-*' -o -name 'leak-*' \) | wc -l)
  printf '%-12s %10s %8s %6s %7s %8s %8s %s\n' "$t" "${execs:-?}" "${eps:-?}" "${cov:-?}" "${ft:-?}" "${corp:-?}" "$crashes" "$log"
  if ((rc != 0 || crashes > 0)); then
    status=1
    echo "  $t: exit $rc; see $log and $art/" >&2
    grep -E 'ERROR|Uncaught|invariant violated|SUMMARY' "$log" | head -5 >&2 || true
  fi
done
exit $status
