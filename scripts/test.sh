#!/usr/bin/env bash
# Quick start #2: install what is missing, build, and run the whole test suite under CTest:
#   1. the ASan+UBSan build's unit tests,
#   2. every libFuzzer target for a short run (clang),
#   3. the full suite (unit + integration against a private dovecot) of the normal build —
#      its CTest summary is the closing line.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/scripts/setup.sh"

if [ "${MAILSCAN_SKIP_SANITIZE:-0}" != 1 ]; then
  echo "== sanitizer build (ASan + UBSan): unit tests"
  "$root/scripts/build.sh" sanitize unit_tests
  ctest --test-dir "$root/build-sanitize" -L unit --output-on-failure -j2 --no-tests=error | tail -n 6
fi

if [ "${MAILSCAN_SKIP_FUZZ:-0}" != 1 ]; then
  echo "== fuzz smoke run"
  "$root/scripts/fuzz.sh" "${MAILSCAN_FUZZ_SECONDS:-20}"
fi

echo "== full suite"
"$root/scripts/build.sh" main
ctest --test-dir "$root/build" --output-on-failure -j2 --no-tests=error
