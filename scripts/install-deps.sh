#!/usr/bin/env bash
# Installs the Debian 12 packages that bitmex-shm builds with, only those that are missing.
# Nothing else is ever downloaded: no submodules, no FetchContent, no pip.
# Usage: scripts/install-deps.sh [--fuzz] [--lint]
#   --fuzz: also clang and libFuzzer (scripts/fuzz.sh); --lint: clang-format and clang-tidy
#   (scripts/lint.sh). scripts/test.sh asks for both.
set -euo pipefail

packages=(
  g++ cmake ninja-build pkg-config
  libboost1.81-dev libssl-dev libsimdjson-dev libconcurrentqueue-dev
  libbenchmark-dev libgtest-dev libgmock-dev libcli11-dev libfmt-dev
)
for flag in "$@"; do
  case "$flag" in
    --fuzz) packages+=(clang-14 libclang-rt-14-dev) ;;
    --lint) packages+=(clang-format clang-tidy) ;;
    *) echo "install-deps: unknown option $flag (--fuzz, --lint)" >&2; exit 2 ;;
  esac
done

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "install-deps: installing ${missing[*]}"
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "install-deps: need root or sudo to install: ${missing[*]}" >&2; exit 1; }
  sudo="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
