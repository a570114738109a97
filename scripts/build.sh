#!/usr/bin/env bash
# Configures and builds one flavour of mailscan. Usage: scripts/build.sh [main|sanitize|fuzz] [targets...]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
flavour=${1:-main}; shift || true
jobs=${MAILSCAN_JOBS:-$(nproc)}
case "$flavour" in
  main)     dir="$root/build";          args=(-DCMAKE_BUILD_TYPE=RelWithDebInfo) ;;
  sanitize) dir="$root/build-sanitize"; args=(-DCMAKE_BUILD_TYPE=Debug -DMAILSCAN_SANITIZE=ON) ;;
  fuzz)     dir="$root/build-fuzz";     args=(-DCMAKE_BUILD_TYPE=RelWithDebInfo -DMAILSCAN_FUZZ=ON -DMAILSCAN_TESTS=OFF
                                              -DCMAKE_CXX_COMPILER=clang++) ;;
  *) echo "build.sh: unknown flavour $flavour (main | sanitize | fuzz)" >&2; exit 2 ;;
esac
cmake -S "$root" -B "$dir" -G Ninja "${args[@]}" >/dev/null
ninja -C "$dir" -j "$jobs" "$@"
