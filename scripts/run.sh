#!/usr/bin/env bash
# The main job: install what is missing, build, then run the live feed for XBTUSD on BitMEX's
# public testnet with bitmex-top attached to its segment.
#
# Where BitMEX cannot be reached (no internet, a firewall), it says so in one line and runs the
# same thing against bitmex-sim, the project's local exchange, serving the shipped recorded
# session (2021-07-22 mainnet, at its recorded pace): the same feed, segment and bitmex-top.
#
# On a terminal bitmex-top runs until you press Ctrl-C; otherwise three snapshots are printed.
# Extra arguments go to bitmex-feed (try build/release/bin/bitmex-feed --help).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
# Only the three programs it runs: the tests and benchmarks are scripts/test.sh's to build.
scripts/build.sh release --target bitmex-feed bitmex-sim bitmex-top
bin=build/release/bin
topics="orderBookL2:XBTUSD,trade:XBTUSD,quote:XBTUSD"
shm="/bitmex-run-$$"
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  [ -s "$work/feed.err" ] && tail -n 1 "$work/feed.err"
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 0' INT TERM

host=ws.testnet.bitmex.com
if getent hosts "$host" >/dev/null 2>&1 && timeout 5 bash -c "exec 3<>/dev/tcp/$host/443" 2>/dev/null; then
  url="wss://$host/realtime"
  echo "run: live BitMEX testnet feed for XBTUSD ($url)"
else
  echo "run: BitMEX ($host) cannot be reached from here; running the same against bitmex-sim serving the shipped recorded session"
  "$bin/bitmex-sim" tests/data/bitmex/cryptofeed-2021-07-22.txt --pace recorded \
    >"$work/sim.out" 2>"$work/sim.err" &
  pids+=($!)
  for _ in $(seq 100); do
    url=$(sed -n 's/^listening on \(wss\{0,1\}:\/\/[^ ]*\).*/\1/p' "$work/sim.out")
    [ -n "$url" ] && break
    sleep 0.1
  done
  [ -n "$url" ] || { echo "run: bitmex-sim did not start:"; cat "$work/sim.err"; exit 1; }
fi

"$bin/bitmex-feed" --url "$url" --subscribe "$topics" --shm "$shm" "$@" 2>"$work/feed.err" &
pids+=($!)
# The segment exists once the feed has started; bitmex-top waits for it (2 s) by itself.
if [ -t 1 ]; then
  "$bin/bitmex-top" --shm "$shm" --symbol XBTUSD --depth 10 || true
else
  for i in 1 2 3; do
    sleep 2
    echo "--- bitmex-top --once ($((i * 2)) s)"
    "$bin/bitmex-top" --shm "$shm" --once || { cat "$work/feed.err"; exit 1; }
  done
fi
