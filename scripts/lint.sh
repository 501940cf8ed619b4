#!/usr/bin/env bash
# Static checks: every tracked C++ source formatted by .clang-format, and clang-tidy (.clang-tidy)
# clean over every translation unit of the product (engine, shm, consumers, tools, bench: what
# users run) in the release build's compile database. The tests are formatted but not tidied: the
# checks are about the product, and tidying the GoogleTest TUs doubled the step's CI minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh --lint
mapfile -t sources < <(git ls-files '*.cpp' '*.hpp')
echo "lint: clang-format on ${#sources[@]} files"
clang-format --dry-run --Werror "${sources[@]}"
[ -f build/release/compile_commands.json ] || cmake --preset release >/dev/null
echo "lint: clang-tidy on the product's translation units"
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
# run-clang-tidy exits non-zero only on a crash; a finding is a line "file:line:col: warning:".
# The release build's commands carry GCC's link-time optimisation flags (BMX_LTO), which clang
# does not know (-fno-fat-lto-objects) and would report on every file.
run-clang-tidy -p build/release -j"$(nproc)" -quiet -extra-arg=-Wno-ignored-optimization-argument \
  "$PWD/(engine|shm|consumers|tools|bench)/" >"$log" 2>&1 || { cat "$log"; exit 1; }
# (run-clang-tidy colours its output whatever the terminal: the escapes are stripped.)
# (Not `tee /dev/stderr`: reopening stderr truncates it when it is a file, e.g. CI's whole log.)
findings=$(sed 's/\x1b\[[0-9;]*m//g' "$log" | grep -E '^/.*:[0-9]+:[0-9]+: (warning|error):' |
  sort -u || true)
if [ -n "$findings" ]; then
  echo "$findings" >&2
  echo "lint: clang-tidy found the above" >&2
  exit 1
fi
echo "lint: clean"
