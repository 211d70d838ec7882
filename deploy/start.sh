#!/bin/sh
# Sets everything up, builds inferd and starts the daemon in the foreground on loopback with its
# default configuration (tcp://127.0.0.1:7070 and an ipc socket). Extra arguments go to inferd,
# e.g. deploy/start.sh --log-level debug. Stop it with Ctrl-C (it drains calls in flight).
set -eu
cd "$(dirname "$0")/.."

deploy/install-deps.sh
build=${BUILD_DIR:-build}
if [ ! -f "$build/build.ninja" ]; then
  meson setup "$build" -Dbuildtype=release -Dtests=false
fi
ninja -C "$build"
exec "$build/server/inferd" "$@"
