#!/usr/bin/env bash
# Builds every libFuzzer target (clang) and runs each for N seconds (default 20) from its seed
# corpus. A crash, leak or UB report fails the run. Usage: scripts/fuzz.sh [seconds]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
secs=${1:-20}
"$root/scripts/build.sh" fuzz fuzzers
found=0
for bin in "$root"/build-fuzz/fuzz/*_fuzz; do
  [ -x "$bin" ] || continue
  found=1
  name=$(basename "$bin")
  work=$(mktemp -d)
  seeds=("$work")
  [ -d "$root/fuzz/corpus/$name" ] && seeds+=("$root/fuzz/corpus/$name")
  echo "fuzz: $name for ${secs}s"
  UBSAN_OPTIONS=halt_on_error=1:suppressions="$root/tests/ubsan.supp" \
    "$bin" -max_total_time="$secs" -rss_limit_mb=2048 -print_final_stats=0 "${seeds[@]}" 2>"$work/log" \
    || { tail -n 40 "$work/log"; echo "fuzz: $name FAILED"; exit 1; }
  grep -E "^#[0-9]+.*DONE" "$work/log" | tail -n 1 || true
  rm -rf "$work"
done
[ $found = 1 ] || { echo "fuzz: no fuzz targets were built" >&2; exit 1; }
