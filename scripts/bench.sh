#!/usr/bin/env bash
# Runs every benchmark the README quotes, pinned to cores, each beside the floor it is measured
# against in the same run, and prints the ratios the goals are stated in.
#
# Usage: scripts/bench.sh [--no-build] [--reps N] [--cpus LIST]
#   --no-build   use the binaries already in build/release/bin (e.g. built here with
#                -DBMX_MARCH=x86-64-v3 and copied to a machine without a compiler)
#   --reps N     repetitions of each engine benchmark, interleaved at random (default 9)
#   --cpus LIST  comma-separated cores: the engine benchmarks and the ring's producer run on the
#                first, readers on the rest (default: every core this shell may use but core 0,
#                which takes most interrupts; core 0 too when that leaves fewer than two)
# Wall-clock figures on a shared or small VM move 10-25% between runs: compare ratios taken in
# one run, not figures across runs.
set -euo pipefail
cd "$(dirname "$0")/.."
build=1
reps=9
cpus=""
while [ $# -gt 0 ]; do
  case "$1" in
    --no-build) build=0 ;;
    --reps) reps="$2"; shift ;;
    --cpus) cpus="$2"; shift ;;
    -h|--help) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "bench.sh: unknown argument '$1' (try --help)" >&2; exit 2 ;;
  esac
  shift
done
[ "$build" = 1 ] && scripts/build.sh release >/dev/null
bin=build/release/bin
if [ -z "$cpus" ]; then
  all=$(taskset -cp $$ | sed 's/.*: //' | tr ',' '\n' |
        awk -F- '{ if (NF == 2) for (i = $1; i <= $2; ++i) print i; else print $1 }')
  rest=$(echo "$all" | awk '$1 != 0')
  [ "$(echo "$rest" | wc -l)" -ge 2 ] && all="$rest"
  cpus=$(echo "$all" | paste -sd, -)
fi
first=${cpus%%,*}
readers=$(($(echo "$cpus" | tr ',' '\n' | wc -l) - 1))
[ "$readers" -gt 8 ] && readers=8
[ "$readers" -lt 1 ] && readers=1
echo "== $(nproc) cores; engine on core $first; ring: producer + $readers readers on $cpus"

out=$(mktemp)
trap 'rm -f "$out"' EXIT
echo "== bench_engine (medians of $reps, interleaved)"
taskset -c "$first" "$bin/bench_engine" --benchmark_repetitions="$reps" \
  --benchmark_report_aggregates_only=true --benchmark_enable_random_interleaving=true |
  tee "$out" | grep -E '_median|^Run on' || true
# A counter of a median row, by benchmark name, without its SI prefix: ns_per_frame in ns (the
# console prints seconds with n/u/m), bytes_per_second in bytes.
field() {
  grep -E "^$1/(manual|real)_time_median |^$1_median " "$out" |
    sed -n "s/.*$2=\([0-9.]*\)\([kMGnum]\{0,1\}\).*/\1 \2/p" | head -1 |
    awk '{ m = 1
           if ($2 == "k" || $2 == "u") m = 1e3
           if ($2 == "M" || $2 == "m") m = 1e6
           if ($2 == "G") m = 1e9
           print $1 * m }'
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a && b) printf "%.2fx", a / b; else print "?" }'; }
floor=$(field BM_FloorWalk_Deltas/both ns_per_frame)
pipe=$(field BM_Pipeline_Deltas/both ns_per_frame)
pub=$(field BM_PipelinePublish_Deltas/both ns_per_frame)
floor_mb=$(field BM_FloorWalk_Session/both bytes_per_second)
pipe_mb=$(field BM_Pipeline_Session/both bytes_per_second)
# The *OverFloor benchmarks time the floor and the pipeline in pairs of passes, back to back: the
# ratio a drifting machine cannot skew. The separate benchmarks are printed beside them.
paired() { awk -v r="$(field "$1" ratio)" 'BEGIN { if (r) printf "%.2fx", r; else print "?" }'; }
echo "   delta frames, in pairs: pipeline $(field BM_PipelineOverFloor_Deltas/both pipeline_ns) ns," \
  "floor $(field BM_PipelineOverFloor_Deltas/both floor_ns) ns:" \
  "$(paired BM_PipelineOverFloor_Deltas/both) (goal <= 1.2x)"
echo "   the same sessions with post-2023 ids (index kept), in pairs:" \
  "$(paired BM_PipelineOverFloor_Deltas/both-new-ids)"
echo "   with publishing, in pairs: $(field BM_PublishOverFloor_Deltas/both pipeline_ns) ns:" \
  "$(paired BM_PublishOverFloor_Deltas/both) of the floor (goal <= 1.3x)"
echo "   delta frames, apart: pipeline $pipe ns, floor $floor ns: $(ratio "$pipe" "$floor");" \
  "with publishing $pub ns: $(ratio "$pub" "$floor")"
echo "   whole sessions: $(ratio "$pipe_mb" "$floor_mb") of the floor's bytes/s (goal >= 0.8x)"

echo "== bench_book"
taskset -c "$first" "$bin/bench_book" --benchmark_repetitions=3 \
  --benchmark_report_aggregates_only=true | grep -E '_median' || true

echo "== bench_shm_latency"
"$bin/bench_shm_latency" --readers "$readers" --cpus "$cpus"
