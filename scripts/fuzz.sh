#!/usr/bin/env bash
# Builds the libFuzzer targets (the `fuzz` preset), replays the committed regression inputs
# (fuzz/regressions/<target>/, each a crash once found), then fuzzes every target for
# SECONDS_PER_TARGET (default 60), two at a time, from seed corpora generated out of
# tests/data/bitmex/ (scripts/fuzz-seeds.sh). Prints one line per target and exits non-zero if
# anything crashed, hung (-timeout) or ran out of memory; the input is then in build/fuzz/artifacts/.
#   scripts/fuzz.sh          # a minute per target (CI: scripts/test.sh passes 30)
#   scripts/fuzz.sh 1800     # half an hour per target
# Environment: BMX_FUZZ_TARGETS (default: all four), BMX_FUZZ_JOBS (default 2: targets at once).
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
targets=(${BMX_FUZZ_TARGETS:-fuzz_frame fuzz_pipeline fuzz_capture fuzz_segment_reader})
jobs=${BMX_FUZZ_JOBS:-2}
build=build/fuzz

scripts/install-deps.sh --fuzz
cmake --preset fuzz >/dev/null
cmake --build --preset fuzz -j"$(nproc)" --target "${targets[@]}"
scripts/fuzz-seeds.sh "$build/seeds" >/dev/null

echo "== regression inputs"
regressions=$(printf '%s_regressions|' "${targets[@]}")
ctest --preset fuzz -R "^(${regressions%|})\$"

# The longest input each target is given: a frame, a run of frames, a capture, segment patches.
declare -A max_len=([fuzz_frame]=8192 [fuzz_pipeline]=32768 [fuzz_capture]=16384
                    [fuzz_segment_reader]=4096)
mkdir -p "$build/artifacts" "$build/logs"

run_one() {
  local t=$1 start=$SECONDS rc=0
  mkdir -p "$build/corpus/$t"
  # The first corpus folder collects what the run finds (kept between runs); the seeds are read.
  "$build/bin/$t" "$build/corpus/$t" "$build/seeds/$t" \
    -max_total_time="$seconds" -max_len="${max_len[$t]:-4096}" -dict=fuzz/bitmex.dict \
    -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix="$build/artifacts/$t-" >"$build/logs/$t.log" 2>&1 || rc=$?
  echo "$rc $((SECONDS - start))" >"$build/logs/$t.result"
}

echo "== fuzzing ${#targets[@]} targets, ${seconds} s each, $jobs at a time"
rm -f "$build"/artifacts/* "$build"/logs/*
running=0
for t in "${targets[@]}"; do
  run_one "$t" &
  running=$((running + 1))
  if [ "$running" -ge "$jobs" ]; then
    wait -n || true
    running=$((running - 1))
  fi
done
wait || true
# A crash leaves the target's shared-memory objects behind: remove ours (this user's fuzz names).
find /dev/shm -maxdepth 1 -user "$(id -u)" -name 'bmx-fuzz-*' -delete 2>/dev/null || true

failed=0
printf '%-22s %12s %10s %8s %8s\n' target executions exec/s seconds crashes
for t in "${targets[@]}"; do
  read -r rc secs <"$build/logs/$t.result"
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$build/logs/$t.log")
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$build/logs/$t.log")
  crashes=$(find "$build/artifacts" -name "$t-*" | wc -l)
  [ "$rc" -ne 0 ] && [ "$crashes" -eq 0 ] && crashes=1  # failed without an artifact
  printf '%-22s %12s %10s %8s %8s\n' "$t" "${execs:-?}" "${rate:-?}" "$secs" "$crashes"
  if [ "$crashes" -ne 0 ]; then
    failed=1
    echo "   $t failed (exit $rc): $build/logs/$t.log, input in $build/artifacts/$t-*" >&2
    grep -m3 -E 'ERROR|invariant violated|runtime error|SUMMARY' "$build/logs/$t.log" >&2 || true
  fi
done
exit "$failed"
