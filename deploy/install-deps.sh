#!/bin/sh
# Installs every Debian package that inferd's build, tests and runtime need.
# Idempotent and non-interactive; run as root (or through sudo) on Debian 12.
#   deploy/install-deps.sh            build + runtime + test packages
#   deploy/install-deps.sh --runtime  only what the installed daemon needs to run
set -eu

runtime_pkgs="libevent-2.1-7 libevent-pthreads-2.1-7 libnanomsg5 libprotobuf-c1 libjemalloc2
  libdnnl2 libinih1 libjansson4 libsystemd0 libxxhash0 libpcre2-8-0 libspng0 libjpeg62-turbo libssl3"
build_pkgs="build-essential pkg-config meson ninja-build protobuf-c-compiler
  libevent-dev libnanomsg-dev libprotobuf-c-dev libjemalloc-dev libdnnl-dev
  libinih-dev libjansson-dev libsystemd-dev libxxhash-dev libpcre2-dev libspng-dev
  libjpeg62-turbo-dev libssl-dev"
test_pkgs="libcriterion-dev python3 python3-numpy python3-venv nanomsg-utils clang systemd nginx-light curl
  libclang-rt-14-dev"

case "${1:-}" in
  --runtime) pkgs="$runtime_pkgs" ;;
  "") pkgs="$runtime_pkgs $build_pkgs $test_pkgs" ;;
  *) echo "usage: $0 [--runtime]" >&2; exit 2 ;;
esac

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
    echo "install-deps: run as root or install sudo" >&2; exit 1
  fi
fi

# Skip apt entirely when everything is already there (fast re-runs, offline rebuilds).
missing=""
for p in $pkgs; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -z "$missing" ]; then
  echo "install-deps: all packages present"
  exit 0
fi

echo "install-deps: installing$missing"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# shellcheck disable=SC2086
$SUDO apt-get install -y -qq --no-install-recommends $missing
