#!/bin/sh
# Two inferd instances behind a real nginx (deploy/nginx/inferd-http.conf) on loopback:
# completions through nginx reach both instances, and keep succeeding after one instance stops.
# Prints TAP; skips when nginx or curl is missing. Bounded: 30 + 20 requests.
set -u
src=$1 build=$2
inferd=$build/server/inferd mk=$build/engine/tools/inferd-mkmodel ctl=$build/clients/inferctl
n=0 fail=0
ok() { n=$((n + 1)); echo "ok $n - $1"; }
not_ok() { n=$((n + 1)); fail=1; echo "not ok $n - $1"; }
skip_all() { echo "1..0 # SKIP $1"; exit 0; }
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || skip_all "nginx is not installed"
command -v curl >/dev/null 2>&1 || skip_all "curl is not installed"
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

dir=$(mktemp -d /tmp/inferd-nginx-XXXXXX)
pids=""
cleanup() {
  for p in $pids; do kill "$p" 2>/dev/null; done
  [ -f "$dir/nginx.pid" ] && kill "$(cat "$dir/nginx.pid")" 2>/dev/null
  sleep 0.2
  rm -rf "$dir"
}
trap cleanup EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

"$mk" llm --out "$dir/tiny.gguf" --dim 64 --layers 2 --heads 4 --kv-heads 2 --ffn 128 \
  --vocab 512 --context 256 --seed 7 >/dev/null || { echo "Bail out! inferd-mkmodel failed"; exit 1; }
ha=$(port) hb=$(port) na=$(port) nb=$(port) front=$(port)
"$inferd" --listen "tcp://127.0.0.1:$na" --http "127.0.0.1:$ha" -m "tiny=$dir/tiny.gguf" \
  2>"$dir/a.log" & pa=$!
"$inferd" --listen "tcp://127.0.0.1:$nb" --http "127.0.0.1:$hb" -m "tiny=$dir/tiny.gguf" \
  2>"$dir/b.log" & pb=$!
pids="$pa $pb"

# The shipped example, with the test's ports and paths.
sed -e "s#server 127.0.0.1:8080 #server 127.0.0.1:$ha #" \
    -e "s#server 127.0.0.1:8081 #server 127.0.0.1:$hb #" \
    -e "s#listen 80;#listen 127.0.0.1:$front;#" \
    "$src/deploy/nginx/inferd-http.conf" > "$dir/site.conf"
cat > "$dir/nginx.conf" <<CONF
worker_processes 1;
pid $dir/nginx.pid;
error_log $dir/nginx-error.log;
events { worker_connections 256; }
http {
    access_log $dir/nginx-access.log;
    client_body_temp_path $dir/body;
    proxy_temp_path $dir/proxy;
    fastcgi_temp_path $dir/fastcgi;
    uwsgi_temp_path $dir/uwsgi;
    scgi_temp_path $dir/scgi;
    include $dir/site.conf;
}
CONF
"$NGINX" -t -c "$dir/nginx.conf" -p "$dir" >"$dir/nginx-t.log" 2>&1 && ok "nginx accepts the example configuration" \
  || { not_ok "nginx accepts the example configuration"; sed 's/^/# /' "$dir/nginx-t.log"; }
"$NGINX" -c "$dir/nginx.conf" -p "$dir" -g 'daemon on;' 2>>"$dir/nginx-t.log"

ready() { curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$1/ready"; }
for i in $(seq 1 100); do
  [ "$(ready "$ha")" = 200 ] && [ "$(ready "$hb")" = 200 ] && [ "$(ready "$front")" = 200 ] && break
  sleep 0.1
done
[ "$(ready "$front")" = 200 ] && ok "both instances and nginx are ready" || not_ok "both instances and nginx are ready"

complete() {
  curl -s -o /dev/null -w '%{http_code}' -H 'Content-Type: application/json' \
    -d '{"model": "tiny", "prompt": "hello", "max_tokens": 8, "ignore_eos": true}' \
    "http://127.0.0.1:$front/v1/completions"
}
good=0
for i in $(seq 1 30); do [ "$(complete)" = 200 ] && good=$((good + 1)); done
[ "$good" = 30 ] && ok "30 completions through nginx" || not_ok "30 completions through nginx ($good ok)"

tokens() { "$ctl" --connect "tcp://127.0.0.1:$1" --json stats | python3 -c 'import json,sys; print(json.load(sys.stdin)["tokens_generated"])'; }
ta=$(tokens "$na") tb=$(tokens "$nb")
[ "${ta:-0}" -gt 0 ] && [ "${tb:-0}" -gt 0 ] && ok "both instances generated ($ta and $tb tokens)" \
  || not_ok "both instances generated ($ta and $tb tokens)"
[ $((ta + tb)) = 240 ] && ok "tokens add up: 30 x 8 = $((ta + tb))" || not_ok "tokens add up: $((ta + tb)) of 240"

kill -TERM "$pa"; wait "$pa"; rc=$?
[ "$rc" = 0 ] && ok "instance A drained and exited 0" || not_ok "instance A exited $rc"
pids="$pb"
good=0
for i in $(seq 1 20); do [ "$(complete)" = 200 ] && good=$((good + 1)); done
[ "$good" = 20 ] && ok "20 completions after instance A stopped" || not_ok "20 completions after instance A stopped ($good ok)"
tb2=$(tokens "$nb")
[ $((tb2 - tb)) = 160 ] && ok "instance B served them all" || not_ok "instance B served $((tb2 - tb)) of 160 tokens"

echo "1..$n"
exit $fail
