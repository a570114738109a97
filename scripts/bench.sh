#!/usr/bin/env bash
# The benchmark suite in one command: builds what it needs in build/ (scripts/build.sh main),
# installs mbsync (Debian isync) if it is missing, runs bench/harness/bench.py, writes
# bench/results/<date>-<host>[-quick].md and .json and prints the Markdown.
#   scripts/bench.sh [--quick] [--compare PREVIOUS.json] [size flags: see --help]
# Build dir: $MAILSCAN_BUILD_DIR (default: <repo>/build, built by scripts/build.sh).
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
for a in "$@"; do
  if [[ "$a" == "-h" || "$a" == "--help" ]]; then exec python3 "$repo/bench/harness/bench.py" --help; fi
done
if ! command -v mbsync >/dev/null 2>&1; then
  echo "bench: installing isync (mbsync) for the baseline" >&2
  if [[ $(id -u) -eq 0 ]]; then apt-get install -y -q isync >/dev/null || echo "bench: isync not installed; mbsync baseline skipped" >&2
  else sudo -n apt-get install -y -q isync >/dev/null || echo "bench: isync not installed; mbsync baseline skipped" >&2
  fi
fi
targets=(mailscan mailscan_bench_raw mailscan_bench_dovecot)
if [[ -n "${MAILSCAN_BUILD_DIR:-}" ]]; then
  build="$MAILSCAN_BUILD_DIR"
  [[ -f "$build/build.ninja" ]] || cmake -S "$repo" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
  ninja -C "$build" "${targets[@]}" >&2
else
  build="$repo/build"
  "$repo/scripts/build.sh" main "${targets[@]}" >&2
fi
ulimit -n 20000 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
exec python3 "$repo/bench/harness/bench.py" --build-dir "$build" "$@"
