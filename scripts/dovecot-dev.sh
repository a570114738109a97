#!/usr/bin/env bash
# Starts a private dovecot on loopback (the same instance the integration tests use) for demos
# and debugging; prints ports, CA file and config path; Ctrl-C stops it. Never touches the
# system dovecot.
#   scripts/dovecot-dev.sh [--user NAME:PASSWORD]... [--corpus USER[:FOLDER]]... [--pop3] [--keep]
# Build dir: $MAILSCAN_BUILD_DIR (default: <repo>/build).
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${MAILSCAN_BUILD_DIR:-$repo/build}"
if [[ ! -f "$build/build.ninja" ]]; then
  cmake -S "$repo" -B "$build" -G Ninja >/dev/null
fi
ninja -C "$build" dovecot_dev >/dev/null
exec "$build/tests/support/dovecot_dev" "$@"
