#!/usr/bin/env bash
# Configures and builds one preset (default: release).
# Usage: scripts/build.sh [preset] [-DVAR=VALUE ...] [--target T ...]
#   -D arguments go to the configure step, the rest to the build step.
set -euo pipefail
cd "$(dirname "$0")/.."
preset="${1:-release}"
[ $# -gt 0 ] && shift
defines=()
build_args=()
for a in "$@"; do
  case "$a" in
    -D*) defines+=("$a") ;;
    *) build_args+=("$a") ;;
  esac
done
cmake --preset "$preset" "${defines[@]}" >/dev/null
cmake --build --preset "$preset" -j"$(nproc)" "${build_args[@]}"
