#!/usr/bin/env bash
# The main job: install what is missing, build, and show the engine working.
#
# Today that is a replay of the shipped, recorded BitMEX mainnet session (2021-07-22, 10 symbols)
# through the same code path the live feed will use, printed as a summary and a line per book.
# Extra arguments go to bitmex-replay (try --help).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/build.sh release
exec build/release/bin/bitmex-replay tests/data/bitmex/cryptofeed-2021-07-22.txt "$@"
