#!/usr/bin/env bash
# Quick start #1: install what is missing, build, and run the demo (the embedded simulator's
# mailboxes scanned into a local RocksDB store, then a summary of what was tracked).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/scripts/setup.sh"
"$root/scripts/build.sh" main mailscan
rm -rf "$root/build/demo"
exec "$root/build/apps/mailscan/mailscan" demo --dir "$root/build/demo" "$@"
