#!/bin/sh
# Sets everything up, builds with warnings as errors and runs the whole test suite.
#   tests/run.sh                       plain build in build-test/
#   BUILD_DIR=build-asan MESON_ARGS="-Db_sanitize=address,undefined" tests/run.sh
# Prints "N passed, N failed" at the end (criterion test cases, counted from their TAP output)
# and writes the two numbers to $BUILD_DIR/test-counts. Exits non-zero when a test failed.
set -eu
cd "$(dirname "$0")/.."

deploy/install-deps.sh

build=${BUILD_DIR:-build-test}
args="-Dwerror=true -Dbuildtype=debugoptimized ${MESON_ARGS:-}"
if [ -f "$build/build.ninja" ]; then
  # shellcheck disable=SC2086
  meson configure "$build" $args >/dev/null
else
  # shellcheck disable=SC2086
  meson setup "$build" $args
fi
ninja -C "$build"

# UBSan: fail on the first report; ASan: report leaks. Both print stack traces.
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1${UBSAN_OPTIONS:+:$UBSAN_OPTIONS}"
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=0${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
rc=0
meson test -C "$build" --print-errorlogs --num-processes 2 ${MESON_TEST_ARGS:-} || rc=$?
python3 tests/summarize.py "$build/meson-logs/testlog.json" "$build/test-counts" || rc=1
exit $rc
