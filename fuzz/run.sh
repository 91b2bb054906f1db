#!/usr/bin/env bash
# Builds every libFuzzer target of alipay.core into build/fuzz/ and runs
# each for SECONDS (default 10). Exit 1 on a crash (the input path is in
# the output: "Test unit written to build/fuzz/crashes/<target>/crash-...").
#   fuzz/run.sh [SECONDS]
# Environment: CLANG (default clang), FUZZ_TARGETS (default all),
# FUZZ_JOBS (parallel targets, default 1), FUZZ_FLAGS (more libFuzzer flags).
set -u
cd "$(dirname "$0")/.." || exit 2
ROOT=$(pwd)
SECONDS_PER_TARGET=${1:-10}
CLANG=${CLANG:-clang}
TARGETS=${FUZZ_TARGETS:-"extract keys form codec ngx"}
OUT=build/fuzz

command -v "$CLANG" >/dev/null || { echo "fuzz: $CLANG not found (apt-get install clang)"; exit 2; }
read -r -a CFLAGS_LUA <<<"$(pkg-config --cflags lua5.4)" || exit 2
read -r -a LIBS <<<"$(pkg-config --libs lua5.4 openssl libcurl) -lm" || exit 2
SAN=("-fsanitize=fuzzer,address,undefined" -fno-sanitize-recover=undefined -fno-omit-frame-pointer)
read -r -a EXTRA <<<"${FUZZ_FLAGS:-}"

mkdir -p "$OUT" || exit 2
# The core's objects once, instrumented (fuzzer-no-link: coverage only).
OBJS=()
for src in src/*.c; do
  obj="$OUT/$(basename "$src" .c).o"
  OBJS+=("$obj")
  if [ ! -f "$obj" ] || [ "$src" -nt "$obj" ] || [ src/alipay.h -nt "$obj" ] || [ src/compat.h -nt "$obj" ]; then
    "$CLANG" -std=gnu99 -g -O1 -fPIC "${CFLAGS_LUA[@]}" \
      -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined \
      -fno-omit-frame-pointer -c "$src" -o "$obj" || exit 2
  fi
done
for t in $TARGETS; do
  "$CLANG" -std=gnu99 -g -O1 "${SAN[@]}" "${CFLAGS_LUA[@]}" -DALIPAY_ROOT="\"$ROOT\"" -Isrc \
    "fuzz/fuzz_$t.c" "${OBJS[@]}" "${LIBS[@]}" -o "$OUT/fuzz_$t" || exit 2
done

# Seeds from the fixtures; the growing corpus lives in build/.
rm -rf fuzz/corpus
lua5.4 fuzz/seeds.lua fuzz/corpus || exit 2

status=0
run_one() {
  t=$1
  mkdir -p "$OUT/corpus/$t" "$OUT/crashes/$t" "fuzz/regressions/$t"
  log="$OUT/fuzz_$t.log"
  ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1} \
  UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1} \
    "$OUT/fuzz_$t" -max_total_time="$SECONDS_PER_TARGET" -print_final_stats=1 \
      -max_len=65536 -timeout=20 -rss_limit_mb=4096 \
      -artifact_prefix="$OUT/crashes/$t/" "${EXTRA[@]}" \
      "$OUT/corpus/$t" "fuzz/corpus/$t" "fuzz/regressions/$t" >"$log" 2>&1
  rc=$?
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  speed=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  if [ $rc -ne 0 ]; then
    echo "fuzz_$t: FAILED (exit $rc) after ${execs:-?} runs; log $log"
    grep -E "ERROR: |FUZZ CONTRACT|SUMMARY|Test unit written|^    #[0-9]+ " "$log" | head -40
    return 1
  fi
  echo "fuzz_$t: ok, ${execs:-?} runs, ${speed:-?} exec/s, $SECONDS_PER_TARGET s"
}

if [ "${FUZZ_JOBS:-1}" -gt 1 ]; then
  pids=""
  for t in $TARGETS; do run_one "$t" >"$OUT/fuzz_$t.summary" & pids="$pids $!"; done
  for p in $pids; do wait "$p" || status=1; done
  for t in $TARGETS; do cat "$OUT/fuzz_$t.summary"; done
else
  for t in $TARGETS; do run_one "$t" || status=1; done
fi
exit $status
