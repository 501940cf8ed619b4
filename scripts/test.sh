#!/usr/bin/env bash
# The whole test suite: install what is missing, build, run every test.
#   release preset: unit, golden-replay, allocation and CLI tests (ctest)
#   asan preset:    the same tests under AddressSanitizer + UndefinedBehaviorSanitizer
# Set BMX_TEST_PRESETS="release" to run fewer presets.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
for preset in ${BMX_TEST_PRESETS:-release asan}; do
  echo "== $preset: build"
  scripts/build.sh "$preset"
  echo "== $preset: test"
  ctest --preset "$preset" -j"$(nproc)"
done
