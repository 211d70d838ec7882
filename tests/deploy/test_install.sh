#!/bin/sh
# `meson install` into a DESTDIR: every file an operator needs is there, the installed daemon
# runs, and the systemd unit passes `systemd-analyze verify` (with its paths pointed at the
# staged binaries). Prints TAP.
set -u
build=$1
dest=$(mktemp -d /tmp/inferd-destdir-XXXXXX)
trap 'rm -rf "$dest"' EXIT
n=0 fail=0
ok() { n=$((n + 1)); echo "ok $n - $1"; }
not_ok() { n=$((n + 1)); fail=1; echo "not ok $n - $1"; }

if meson install -C "$build" --destdir "$dest" --no-rebuild --quiet >"$dest.log" 2>&1; then
  ok "meson install --destdir"
else
  not_ok "meson install --destdir"; sed 's/^/# /' "$dest.log"
fi
rm -f "$dest.log"

for f in sbin/inferd bin/inferctl bin/inferd-bench bin/inferd-mkmodel bin/inferd-tokenize \
         include/inferd/inferd-client.h include/inferd/inferd.pb-c.h share/man/man8/inferd.8 \
         share/man/man1/inferctl.1 share/man/man1/inferd-bench.1; do
  if [ -n "$(find "$dest" -path "*/$f" -print -quit)" ]; then ok "installed $f"; else not_ok "installed $f"; fi
done
for pat in 'libinferd-client.so*' 'libinferd-client.a' 'libinferd-client.pc' 'inferd.conf' \
           'inferd.service'; do
  if [ -n "$(find "$dest" -name "$pat" -print -quit)" ]; then ok "installed $pat"; else not_ok "installed $pat"; fi
done

daemon=$(find "$dest" -path '*/sbin/inferd' -print -quit)
conf=$(find "$dest" -name inferd.conf -print -quit)
if [ -n "$daemon" ] && "$daemon" --version | grep -q '^inferd '; then ok "installed inferd runs"; else not_ok "installed inferd runs"; fi
# The shipped config is valid (its model file need not exist for the check).
if [ -n "$conf" ] && "$daemon" --config "$conf" --check-config >/dev/null; then
  ok "the shipped inferd.conf passes --check-config"
else
  not_ok "the shipped inferd.conf passes --check-config"
fi

for pat in 'inferd.socket' 'inferd-http.socket' 'inferd-tune@.service' 'inferd-gpu.conf'; do
  if [ -n "$(find "$dest" -name "$pat" -print -quit)" ]; then ok "installed $pat"; else not_ok "installed $pat"; fi
done

# Socket activation as systemd does it (systemd-socket-activate passes the fds with names):
# the first connection starts the installed daemon, which relays it to its nanomsg socket.
inferctl=$(find "$dest" -path '*/bin/inferctl' -print -quit)
lib=$(dirname "$(find "$dest" -name 'libinferd-client.so*' -print -quit)")
if command -v systemd-socket-activate >/dev/null 2>&1 && [ -n "$daemon" ] && [ -n "$inferctl" ]; then
  sock="$dest/act/inferd.sock"
  mkdir -p "$dest/act"
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  systemd-socket-activate -l "$sock" --fdname=native -E RUNTIME_DIRECTORY="$dest/act" \
    "$daemon" --listen "tcp://127.0.0.1:$port" --no-http >"$dest/act/log" 2>&1 &
  act=$!
  for i in 1 2 3 4 5 6 7 8 9 10; do [ -S "$sock" ] && break; sleep 0.2; done
  if LD_LIBRARY_PATH="$lib" "$inferctl" --connect "ipc://$sock" --timeout 20 health >/dev/null 2>&1 &&
     grep -q "adopted 'native'" "$dest/act/log"; then
    ok "systemd-socket-activate: the first connection starts inferd, which answers through the relay"
  else
    not_ok "systemd-socket-activate"; sed 's/^/# /' "$dest/act/log"
  fi
  kill "$act" 2>/dev/null; wait "$act" 2>/dev/null
else
  n=$((n + 1)); echo "ok $n - systemd-socket-activate # SKIP not installed"
fi

# systemd-analyze verify, with the units' paths pointed at the staged binaries. It only warns
# about bad lines (exit 0), so any output fails the check. Units in one directory find each
# other (Service=, Conflicts=) and inferd.service.d/ drop-ins there apply.
verify() { # NAME UNIT...
  name=$1; shift
  if out=$(systemd-analyze verify --man=no "$@" 2>&1) && [ -z "$out" ]; then
    ok "systemd-analyze verify $name"
  else
    not_ok "systemd-analyze verify $name"; echo "$out" | sed 's/^/# /'
  fi
}
unit=$(find "$dest" -name inferd.service -print -quit)
if command -v systemd-analyze >/dev/null 2>&1 && [ -n "$unit" ]; then
  unitdir=$(dirname "$unit")
  prefix=$(sed -n 's#^ExecStart=\(.*\)/sbin/inferd .*#\1#p' "$unit")
  staged="$dest/staged-units"
  mkdir -p "$staged/plain" "$staged/gpu/inferd.service.d"
  for f in inferd.service inferd.socket inferd-http.socket inferd-tune@.service; do
    [ -f "$unitdir/$f" ] || continue
    sed "s#$prefix/#$dest$prefix/#g" "$unitdir/$f" > "$staged/plain/$f"
    cp "$staged/plain/$f" "$staged/gpu/$f"
  done
  # The GPU variant: the drop-in as meson installs it with the CUDA backend (or the example).
  gpu=$(find "$dest" -path '*/inferd.service.d/gpu.conf' -print -quit)
  [ -n "$gpu" ] || gpu=$(find "$dest" -name inferd-gpu.conf -print -quit)
  [ -n "$gpu" ] && cp "$gpu" "$staged/gpu/inferd.service.d/gpu.conf"
  # Without the drop-in (a CUDA build installs it next to the unit: leave it out here).
  verify "inferd.service" "$staged/plain/inferd.service"
  verify "inferd.socket and inferd-http.socket" "$staged/plain/inferd.socket" \
    "$staged/plain/inferd-http.socket"
  verify "inferd-tune@default.service" "$staged/plain/inferd-tune@default.service"
  verify "inferd.service with inferd-gpu.conf" "$staged/gpu/inferd.service"
  grep -q '^Type=notify' "$unit" && ok "unit: Type=notify" || not_ok "unit: Type=notify"
  grep -q '^WatchdogSec=' "$unit" && ok "unit: WatchdogSec" || not_ok "unit: WatchdogSec"
  grep -q '^ExecReload=.*HUP' "$unit" && ok "unit: ExecReload sends SIGHUP" || not_ok "unit: ExecReload"
  grep -q '^FileDescriptorName=native' "$staged/plain/inferd.socket" &&
    ok "socket: FileDescriptorName=native" || not_ok "socket: FileDescriptorName=native"
  if [ -n "$gpu" ] && grep -q '^PrivateDevices=no' "$gpu" && grep -q '^DeviceAllow=char-nvidia' "$gpu"; then
    ok "gpu drop-in: PrivateDevices=no, DeviceAllow for the NVIDIA devices"
  else
    not_ok "gpu drop-in: PrivateDevices=no, DeviceAllow for the NVIDIA devices"
  fi
  # The merged GPU unit as systemd sees it: the drop-in's device ACL applies, and the unit
  # stays well hardened ("OK" or better).
  if sec=$(systemd-analyze --man=no security --offline=true "$staged/gpu/inferd.service" 2>&1); then
    if echo "$sec" | grep -q 'DeviceAllow=.*char-nvidia\*:rw' &&
       echo "$sec" | grep -Eq 'Overall exposure level .*(OK|SAFE)'; then
      ok "systemd-analyze security: the GPU unit allows the NVIDIA devices, exposure OK"
    else
      not_ok "systemd-analyze security: the GPU unit"; echo "$sec" | sed 's/^/# /'
    fi
  else
    n=$((n + 1)); echo "ok $n - systemd-analyze security --offline # SKIP not supported here"
  fi
else
  n=$((n + 1)); echo "ok $n - systemd-analyze verify # SKIP systemd-analyze is not installed"
fi
echo "1..$n"
exit $fail
