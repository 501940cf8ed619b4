#!/usr/bin/env bash
# The whole test suite: install what is missing, build, run every check. .ci/run calls this.
#   release  every test (unit, golden replays, allocation, CLI, shared memory across processes,
#            bitmex-sim, bitmex-feed against bitmex-sim over TCP and TLS)
#   lint     clang-format check of every source, clang-tidy over every translation unit
#   asan     every test again under AddressSanitizer + UndefinedBehaviorSanitizer
#   tsan     the concurrent tests (ring, seqlock, reader processes, live feed) under ThreadSanitizer
#   fuzz     every libFuzzer target: its regression inputs, then BMX_FUZZ_SECONDS (30) of fuzzing
#            (a fixed minute of CI's wall time for the four targets, two at a time, however slow the
#            host; longer campaigns: scripts/fuzz.sh 1800)
# The sanitizer presets run the tests against the release bitmex-sim: the simulator is the tests'
# exchange, not the product under test (its own tests run in release).
# BMX_TEST_PRESETS picks steps, e.g. BMX_TEST_PRESETS="release asan".
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh --lint --fuzz

step() {
  local name="$1" start=$SECONDS
  shift
  echo "== $name"
  "$@"
  echo "== $name: done in $((SECONDS - start)) s"
}

sanitized() {
  local preset="$1" sim="$PWD/build/release/bin/bitmex-sim"
  [ -x "$sim" ] || step "release bitmex-sim" scripts/build.sh release --target bitmex-sim
  scripts/build.sh "$preset" "-DBMX_SIM_EXECUTABLE=$sim"
  # ThreadSanitizer cannot map its shadow memory under some high-entropy ASLR settings; the tests
  # run without address randomisation, which the sanitizers do not need.
  setarch "$(uname -m)" -R ctest --preset "$preset" -j"$(nproc)"
}

for preset in ${BMX_TEST_PRESETS:-release lint asan tsan fuzz}; do
  case "$preset" in
    release)
      step "release: build" scripts/build.sh release
      step "release: test" ctest --preset release -j"$(nproc)" ;;
    lint) step "lint" scripts/lint.sh ;;
    asan | tsan) step "$preset: build and test" sanitized "$preset" ;;
    fuzz) step "fuzz" scripts/fuzz.sh "${BMX_FUZZ_SECONDS:-30}" ;;
    *) echo "test.sh: unknown step '$preset' (release lint asan tsan fuzz)" >&2; exit 2 ;;
  esac
done
