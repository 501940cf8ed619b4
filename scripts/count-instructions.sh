#!/usr/bin/env bash
# Counts what the engine and the floor walk do on a capture's delta frames, under callgrind:
# instructions (Ir), conditional/indirect branch mispredictions (Bcm/Bim) and D1 misses. These
# counts do not move with the machine's noise, unlike wall time. Needs valgrind. Builds its own
# release binary in build/callgrind with -march=x86-64-v3 (AVX2): valgrind 3.19 stops with
# "Illegal instruction" at the AVX-512 code that -march=native emits on CPUs that have it.
# Usage: scripts/count-instructions.sh [CAPTURE] [PASSES]
# COUNT_MODES="engine publish" also counts the engine publishing into a shared-memory segment.
set -euo pipefail
cd "$(dirname "$0")/.."
capture="${1:-tests/data/bitmex/cryptofeed-2021-04-05.txt}"
passes="${2:-3}"
command -v valgrind >/dev/null || { echo "count-instructions: needs valgrind (apt-get install valgrind)" >&2; exit 1; }
cmake --preset release -B build/callgrind -DBMX_MARCH=x86-64-v3 >/dev/null
cmake --build build/callgrind -j"$(nproc)" --target delta_counts >/dev/null
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
for mode in ${COUNT_MODES:-floor engine}; do
  valgrind --tool=callgrind --cache-sim=yes --branch-sim=yes \
    --toggle-collect="*run_${mode/publish/engine}_deltas*" --callgrind-out-file="$out/$mode" \
    build/callgrind/bin/delta_counts "$mode" "$capture" "$passes" >/dev/null 2>&1
  echo "== $mode ($passes passes over the delta frames of $capture)"
  callgrind_annotate "$out/$mode" 2>/dev/null | grep -E "^Events shown|PROGRAM TOTALS"
done
