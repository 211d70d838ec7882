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

unit=$(find "$dest" -name inferd.service -print -quit)
if command -v systemd-analyze >/dev/null 2>&1 && [ -n "$unit" ]; then
  prefix=$(sed -n 's#^ExecStart=\(.*\)/sbin/inferd .*#\1#p' "$unit")
  staged="$dest/inferd.service"
  sed "s#$prefix/#$dest$prefix/#g" "$unit" > "$staged"
  if out=$(systemd-analyze verify --man=no "$staged" 2>&1); then
    ok "systemd-analyze verify inferd.service"
  else
    not_ok "systemd-analyze verify inferd.service"; echo "$out" | sed 's/^/# /'
  fi
  grep -q '^Type=notify' "$unit" && ok "unit: Type=notify" || not_ok "unit: Type=notify"
  grep -q '^WatchdogSec=' "$unit" && ok "unit: WatchdogSec" || not_ok "unit: WatchdogSec"
  grep -q '^ExecReload=.*HUP' "$unit" && ok "unit: ExecReload sends SIGHUP" || not_ok "unit: ExecReload"
else
  n=$((n + 1)); echo "ok $n - systemd-analyze verify # SKIP systemd-analyze is not installed"
fi
echo "1..$n"
exit $fail
