#!/usr/bin/env bash
# Packs the benchmark binaries, built for any x86-64-v3 machine, with the Debian libraries they
# link (all but glibc's own), into one folder that runs on another Linux machine without the
# project's packages: a lent multi-core machine, say. On that machine, from a checkout of the
# same commit:
#   DIR/run.sh scripts/bench.sh --no-build      (or any command; DIR/run.sh sets it up first)
# run.sh copies the binaries to build/release/bin and sets LD_LIBRARY_PATH. When that machine's
# glibc is older than this one's (the binaries then fail to start), run.sh wraps each binary in
# the dynamic loader carried in DIR/glibc instead.
#
# Usage: scripts/bundle.sh [DIR]   (default .bundle, which git ignores through .git/info/exclude)
set -euo pipefail
cd "$(dirname "$0")/.."
dir="${1:-.bundle}"
case "$dir" in -h | --help) sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;; esac
bins="bench_engine bench_book bench_shm_latency bitmex-replay"
cmake --preset release -B build/v3 -DBMX_MARCH=x86-64-v3 >/dev/null
# shellcheck disable=SC2086
cmake --build build/v3 -j"$(nproc)" --target $bins >/dev/null
rm -rf "$dir"
mkdir -p "$dir/bin" "$dir/lib" "$dir/glibc"
for b in $bins; do
  cp "build/v3/bin/$b" "$dir/bin/"
  ldd "build/v3/bin/$b" | awk '$3 ~ /^\// { print $3 }' | while read -r lib; do
    case "$(basename "$lib")" in
      libc.so.* | libm.so.*) cp -L "$lib" "$dir/glibc/" ;;
      *) cp -L "$lib" "$dir/lib/" ;;
    esac
  done
done
cp -L "$(ldd "build/v3/bin/bench_engine" | awk '/ld-linux/ { print $1 }')" "$dir/glibc/"
cat >"$dir/run.sh" <<'EOF'
#!/usr/bin/env bash
# Puts the bundled binaries in build/release/bin, then runs "$@" (see scripts/bundle.sh).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
mkdir -p build/release
rm -rf build/release/bin build/release/real
cp -r "$here/bin" build/release/bin
export LD_LIBRARY_PATH="$here/lib"
if ! build/release/bin/bench_engine --benchmark_list_tests >/dev/null 2>&1; then
  echo "bundle: this glibc is too old for the binaries; running them under the bundled loader" >&2
  mv build/release/bin build/release/real
  mkdir build/release/bin
  loader="$(ls "$here"/glibc/ld-linux*)"
  for b in build/release/real/*; do
    printf '#!/bin/sh\nexec %s --library-path %s %s "$@"\n' "$loader" \
      "$here/glibc:$here/lib" "$PWD/$b" >"build/release/bin/$(basename "$b")"
    chmod +x "build/release/bin/$(basename "$b")"
  done
fi
exec "$@"
EOF
chmod +x "$dir/run.sh"
echo "bundle: $dir ($(du -sh "$dir" | cut -f1)); on the other machine: $dir/run.sh scripts/bench.sh --no-build"
