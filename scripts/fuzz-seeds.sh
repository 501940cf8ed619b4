#!/usr/bin/env bash
# Seed corpora for the libFuzzer targets, generated from the recorded data in tests/data/bitmex/
# into OUT/<target>/ (default build/fuzz/seeds). Nothing here is committed: the recordings are.
#   fuzz_frame           distinct frames of the captures (at most 12 per table and action; partials
#                        cut to their first rows), the api-connectors fixtures, the nautilus rows
#                        wrapped as insert frames
#   fuzz_pipeline        runs of consecutive frames from the captures and each fixture file whole
#   fuzz_capture         the captures' first lines in their own format, the same in bitmex-feed's
#                        "nanoseconds<TAB>frame" format, the fixtures
#   fuzz_segment_reader  a few patches of a segment (see fuzz/fuzz_segment_reader.cpp)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-build/fuzz/seeds}
data=tests/data/bitmex
max_frame=6000  # bytes: partials are cut to fit, so seeds stay within the fuzzers' -max_len
rm -rf "$out"
mkdir -p "$out"/{fuzz_frame,fuzz_pipeline,fuzz_capture,fuzz_segment_reader}

# Frames of a capture, one a line, without cryptofeed's receive-time prefix or its other lines;
# a long partial keeps its first rows (book rows are flat objects, and "data" comes last).
frames() {
  awk -v max="$max_frame" '
    /^wss?:\/\// || /^configuration:/ || /^$/ { next }
    { line = $0; sub(/^[0-9.]+: /, "", line) }
    length(line) > max {
      at = index(line, "\"data\":[")
      if (at == 0) next
      rest = substr(line, at + 8); kept = ""; rows = 0
      while (rows < 8 && (end = index(rest, "},")) > 0) {
        kept = kept substr(rest, 1, end) ","; rest = substr(rest, end + 2); rows++
      }
      sub(/,$/, "", kept)
      line = substr(line, 1, at + 7) kept "]}"
    }
    { print line }' "$1"
}

# A nautilus row file (one pretty-printed row, or an array of them) as one insert frame.
nautilus_frame() {
  local file=$1 table
  case $(basename "$file" .json) in
    ws_orderbook_l2) table=orderBookL2 ;;
    ws_orderbook_10) table=orderBook10 ;;
    ws_trade_bin_1m) table=tradeBin1m ;;
    ws_funding_rate) table=funding ;;
    ws_instrument*) table=instrument ;;
    ws_*) table=$(basename "$file" .json); table=${table#ws_} ;;
  esac
  local row
  row=$(sed 's/^ *//' "$file" | tr -d '\n')
  [[ $row == \[* ]] || row="[$row]"
  printf '{"table":"%s","action":"insert","data":%s}' "$table" "$row"
}

seed() {  # seed TARGET < content: named after its content (as libFuzzer names its own)
  local tmp
  tmp=$(mktemp "$out/$1/.new.XXXXXX")
  cat >"$tmp"
  mv "$tmp" "$out/$1/$(sha1sum <"$tmp" | cut -c1-40)"
}

# fuzz_frame: distinct frames, a few per (table, action) or per control kind.
for capture in "$data"/cryptofeed-*.txt "$data"/api-connectors-fixtures/*.ndjson; do
  frames "$capture"
done | awk '
  { if (match($0, /"table":"[^"]*","action":"[^"]*"/)) kind = substr($0, RSTART, RLENGTH)
    else kind = substr($0, 1, 12) }
  count[kind]++ < 12 && !seen[$0]++' |
  while IFS= read -r frame; do printf '%s' "$frame" | seed fuzz_frame; done
for row in "$data"/nautilus-rows/*.json; do nautilus_frame "$row" | seed fuzz_frame; done

# fuzz_pipeline: runs of 24 consecutive frames (every 200th run of a capture), each fixture whole,
# and the nautilus rows after partials of their tables.
for capture in "$data"/cryptofeed-*.txt; do
  frames "$capture" | awk -v dir="$out/fuzz_pipeline" -v name="$(basename "$capture" .txt)" '
    { buf[NR % 24] = $0 }
    NR % 24 == 0 && (NR / 24) % 8 == 1 {
      file = dir "/" name "-" NR
      for (i = 1; i <= 24; i++) print buf[i % 24] > file
      close(file)
    }'
done
for fixture in "$data"/api-connectors-fixtures/*.ndjson; do seed fuzz_pipeline <"$fixture"; done
for row in "$data"/nautilus-rows/*.json; do
  frame=$(nautilus_frame "$row")
  printf '%s\n%s\n' "${frame/\"action\":\"insert\"/\"action\":\"partial\",\"keys\":[\"symbol\"],\"filter\":{}}" \
    "${frame/\"action\":\"insert\"/\"action\":\"update\"}" | seed fuzz_pipeline
done

# fuzz_capture: the captures' own lines (with what the reader must skip), and bitmex-feed's format.
for capture in "$data"/cryptofeed-*.txt; do
  head -n 40 "$capture" | cut -c1-2000 | seed fuzz_capture
  head -n 40 "$capture" | cut -c1-2000 |
    awk '/^[0-9]+\.[0-9]+: / { split($0, a, ": "); t = a[1]; sub(/^[0-9.]+: /, "");
                               sub(/\./, "", t); printf "%s000\t%s\n", t, $0; next } { print }' |
    seed fuzz_capture
done
for fixture in "$data"/api-connectors-fixtures/*.ndjson; do seed fuzz_capture <"$fixture"; done

# fuzz_segment_reader: patch records [region offset(2) length bytes]: a header word, a ring slot's
# sequence, a book's begin/end, a row's lengths, a truncated object.
printf '\x00\x00\xc0\x00\x08\x00\x00\x00\x00\x00\x00\x00\x80' | seed fuzz_segment_reader
printf '\x00\x03\x40\x00\x08\xff\xff\xff\xff\xff\xff\xff\xff' | seed fuzz_segment_reader
printf '\x00\x04\x18\x00\x08\x00\x00\x00\x00\xff\xff\xff\x0f' | seed fuzz_segment_reader
printf '\x00\x06\x08\x00\x08\x01\x00\x00\x00\xff\xff\x00\x00' | seed fuzz_segment_reader
printf '\x01\x08\x00' | seed fuzz_segment_reader

for t in "$out"/*; do echo "fuzz-seeds: $(basename "$t"): $(find "$t" -type f | wc -l) seeds"; done
