#!/usr/bin/env bash
# CTest runs each Catch2 case by its name as a test spec: a name with ';' is cut there by
# catch_discover_tests and '\' does not survive the filter, so such an entry
# selects no test (and fails with --warn NoTests). Fails listing the offending names.
root=$(cd "$(dirname "$0")/.." && pwd)
if grep -rnE 'TEST_CASE\("[^"]*[;\\]' "$root/tests" "$root/bench" --include='*.cpp'; then
  echo "check_test_names: the test names above contain ';' or '\\'" >&2
  exit 1
fi
echo "check_test_names: all test names can be selected by CTest"
