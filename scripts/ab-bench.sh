#!/usr/bin/env bash
# Compares two builds of bench_engine on a noisy machine: runs them alternately, each run pinned
# and with its repetitions interleaved at random, and reports every benchmark as a ratio to the
# floor measured in the same run (BM_FloorWalk_Deltas), by the median and by the minimum of the
# repetitions (noise only adds time, so the minimum moves less). Ends with each binary's median
# ratio over the rounds, how many rounds the second won, and every benchmark's ns per frame.
#
# Usage: scripts/ab-bench.sh [--rounds N] [--reps N] [--filter REGEX] [--cpu C] BIN_A BIN_B
#   --rounds N     runs of each binary, alternating (default 8)
#   --reps N       repetitions per run (default 7)
#   --filter REGEX --benchmark_filter (default 'Deltas/both'; must include the floor)
#   --cpu C        core to pin to (default 1)
# Copy a binary aside before rebuilding (cp build/release/bin/bench_engine /tmp/bench_A).
set -euo pipefail
rounds=8
reps=7
filter='Deltas/both'
cpu=1
while [ $# -gt 2 ]; do
  case "$1" in
    --rounds) rounds="$2"; shift ;;
    --reps) reps="$2"; shift ;;
    --filter) filter="$2"; shift ;;
    --cpu) cpu="$2"; shift ;;
    *) break ;;
  esac
  shift
done
if [ $# -ne 2 ] || [ ! -x "$1" ] || [ ! -x "$2" ]; then
  sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
fi
out=$(mktemp)
trap 'rm -f "$out"' EXIT
for r in $(seq 1 "$rounds"); do
  for which in A B; do
    bin=$1
    [ "$which" = B ] && bin=$2
    taskset -c "$cpu" "$bin" --benchmark_filter="$filter" --benchmark_repetitions="$reps" \
      --benchmark_enable_random_interleaving=true 2>/dev/null |
      awk -v which="$which" -v round="$r" '
        # Repetition lines only (no _mean/_median/_stddev/_cv): name and ns_per_frame.
        /^BM_/ && $1 !~ /_(mean|median|stddev|cv)$/ {
          split($1, parts, "/"); name = parts[1]
          for (i = 2; i <= NF; ++i) if ($i ~ /^ns_per_frame=/) {
            v = $i; sub(/^ns_per_frame=/, "", v); sub(/ns$/, "", v)
            n[name]++; x[name, n[name]] = v + 0
          }
        }
        function median(name,   k, j, t, m, a) {
          m = n[name]; for (k = 1; k <= m; ++k) a[k] = x[name, k]
          for (k = 2; k <= m; ++k) { t = a[k]; for (j = k - 1; j >= 1 && a[j] > t; --j) a[j + 1] = a[j]; a[j + 1] = t }
          return m % 2 ? a[(m + 1) / 2] : (a[m / 2] + a[m / 2 + 1]) / 2
        }
        function minimum(name,   k, v) { v = x[name, 1]; for (k = 2; k <= n[name]; ++k) if (x[name, k] < v) v = x[name, k]; return v }
        END {
          f = "BM_FloorWalk_Deltas"
          if (!(f in n)) { print "ab-bench: the filter must include " f > "/dev/stderr"; exit 1 }
          for (name in n)
            printf "%d %s %s %.4f %.4f %.2f %.2f\n", round, which, name, median(name) / median(f),
              minimum(name) / minimum(f), median(name), minimum(name)
        }' >>"$out"
    grep "^$r $which " "$out" | grep -v FloorWalk |
      awk '{ printf "round %s %s %-28s median %.3fx  min %.3fx  (%.1f ns/frame)\n", $1, $2, $3, $4, $5, $6 }'
  done
done
echo "== over $rounds rounds (ratio to the floor; B wins: rounds where B's ratio was lower)"
grep -v FloorWalk "$out" | sort -k3,3 -k2,2 -k4,4n | awk '
  { key = $3 " " $2; med[key, ++cm[key]] = $4; mn[key, cm[key]] = $5; names[$3] = 1
    if ($2 == "A") { a4[$3, $1] = $4; a5[$3, $1] = $5 } else { b4[$3, $1] = $4; b5[$3, $1] = $5 } }
  function mid(arr, key, m,   k, j, t, a) {
    for (k = 1; k <= m; ++k) a[k] = arr[key, k]
    for (k = 2; k <= m; ++k) { t = a[k]; for (j = k - 1; j >= 1 && a[j] > t; --j) a[j + 1] = a[j]; a[j + 1] = t }
    return m % 2 ? a[(m + 1) / 2] : (a[m / 2] + a[m / 2 + 1]) / 2
  }
  END {
    for (name in names) {
      wm = 0; wn = 0; r = 0
      for (k in a4) { split(k, p, SUBSEP); if (p[1] == name && (name SUBSEP p[2]) in b4) { ++r; wm += b4[name, p[2]] < a4[name, p[2]]; wn += b5[name, p[2]] < a5[name, p[2]] } }
      printf "%-28s A median %.3fx min %.3fx | B median %.3fx min %.3fx | B wins %d/%d by median, %d/%d by min\n",
        name, mid(med, name " A", cm[name " A"]), mid(mn, name " A", cm[name " A"]),
        mid(med, name " B", cm[name " B"]), mid(mn, name " B", cm[name " B"]), wm, r, wn, r
    }
  }'
# The same in ns per frame, the floor included. A ratio is only as steady as its floor: the floor's
# code sits in the same binary, and a change elsewhere moves it (one build's floor ran 7% slower
# than the next one's, every round, and its ratios looked 0.05x better for it). When B's floor
# differs from A's, believe the ns per frame, which both binaries measured in the same rounds.
echo "== ns per frame, median over the rounds of each run's median (B/A: below 1 is faster)"
awk '
  { key = $3 " " $2; v[key, ++c[key]] = $6; names[$3] = 1 }
  function mid(key, m,   k, j, t, a) {
    for (k = 1; k <= m; ++k) a[k] = v[key, k]
    for (k = 2; k <= m; ++k) { t = a[k]; for (j = k - 1; j >= 1 && a[j] > t; --j) a[j + 1] = a[j]; a[j + 1] = t }
    return m % 2 ? a[(m + 1) / 2] : (a[m / 2] + a[m / 2 + 1]) / 2
  }
  END {
    for (name in names) {
      a = mid(name " A", c[name " A"]); b = mid(name " B", c[name " B"])
      printf "%-28s A %7.1f  B %7.1f  B/A %.3f\n", name, a, b, b / a
    }
  }' "$out"
