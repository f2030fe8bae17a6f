#!/usr/bin/env bash
# A large object through a caching edge, twice (miss, then hit): conclave's
# edge and stock NGINX in the same role, in front of the same origin (NGINX
# serving a file with sendfile). Prints MB/s of each transfer, the sha256
# check and the edge worker's peak resident memory (VmHWM).
#
#   scripts/bench-stream.sh [SIZE_MIB]        (default 1024)
#
# Needs a release build (cargo build --release -p conclave), nginx and curl.
# A benchmark, not a test: the figures go in docs/benchmarks.md.
set -euo pipefail
cd "$(dirname "$0")/.."
size_mib=${1:-1024}
bin=${CONCLAVE:-target/release/conclave}
for t in nginx curl sha256sum; do
  command -v $t >/dev/null || { echo "error: $t is missing (apt-get install nginx curl)" >&2; exit 1; }
done
[ -x "$bin" ] || { echo "error: $bin missing: cargo build --release -p conclave" >&2; exit 1; }
d=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; sleep 0.5; rm -rf "$d"; }
trap cleanup EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 200); do (exec 3<>/dev/tcp/127.0.0.1/$1) 2>/dev/null && return 0; sleep 0.05; done; echo "port $1 never opened" >&2; exit 1; }

"$bin" certs --out "$d/certs" >/dev/null
mkdir -p "$d/origin" "$d/ncache" "$d/ccache" "$d/ntmp"
head -c $((size_mib << 20)) /dev/urandom > "$d/origin/big.bin"
want=$(sha256sum < "$d/origin/big.bin" | cut -d' ' -f1)
po=$(port); pc=$(port); pn=$(port)
# As root, NGINX workers would run as nobody and could not read the temp dir.
user=""; [ "$(id -u)" -eq 0 ] && user="user root;"
cat > "$d/origin.conf" <<CONF
$user daemon off; worker_processes 1; pid $d/origin.pid; error_log $d/origin.err;
events { worker_connections 1024; }
http { access_log off; sendfile on; client_body_temp_path $d/ntmp; proxy_temp_path $d/ntmp;
  fastcgi_temp_path $d/ntmp; uwsgi_temp_path $d/ntmp; scgi_temp_path $d/ntmp;
  server { listen 127.0.0.1:$po; root $d/origin; add_header Cache-Control "max-age=3600"; } }
CONF
cat > "$d/nginx.conf" <<CONF
$user daemon off; worker_processes 1; pid $d/nginx.pid; error_log $d/nginx.err;
events { worker_connections 1024; }
http { access_log off; client_body_temp_path $d/ntmp; proxy_temp_path $d/ntmp;
  fastcgi_temp_path $d/ntmp; uwsgi_temp_path $d/ntmp; scgi_temp_path $d/ntmp;
  proxy_cache_path $d/ncache levels=1:2 keys_zone=z:1m max_size=4g inactive=60m use_temp_path=off;
  server { listen 127.0.0.1:$pn ssl; server_name localhost;
    ssl_certificate $d/certs/site/server.crt; ssl_certificate_key $d/certs/site/server.key;
    location / { proxy_cache z; proxy_cache_valid 200 60m; proxy_pass http://127.0.0.1:$po; } } }
CONF
cat > "$d/edge.toml" <<CONF
workers = 1
[[server]]
listen = "127.0.0.1:$pc"
server_name = ["localhost"]
mode = "cache"
proxy_pass = "http://127.0.0.1:$po"
[server.tls]
certificate = "$d/certs/site/server.crt"
key = "$d/certs/site/server.key"
[server.cache]
path = "$d/ccache"
keys_zone = "z:1m"
max_size = "4g"
CONF
nginx -p "$d" -c "$d/origin.conf" & pids+=($!)
nginx -p "$d" -c "$d/nginx.conf" & pids+=($!)
"$bin" edge --config "$d/edge.toml" 2>"$d/edge.log" & pids+=($!)
edge_master=$!
wait_port $po; wait_port $pn; wait_port $pc

hwm() { # peak RSS (MiB) of the largest process among PIDs
  local m=0; for p in "$@"; do v=$(awk '/VmHWM/ {print $2}' /proc/$p/status 2>/dev/null || echo 0); [ "${v:-0}" -gt $m ] && m=$v; done; echo $((m / 1024)); }
get() { # edge port, label
  local out; out=$(curl -s --cacert "$d/certs/ca/root.crt" --resolve localhost:$1:127.0.0.1 \
      -w '%{http_code} %{size_download} %{time_total}' -o "$d/got" "https://localhost:$1/big.bin")
  local got; got=$(sha256sum < "$d/got" | cut -d' ' -f1)
  read -r code bytes secs <<<"$out"
  local ok=ok; [ "$got" = "$want" ] || ok=MISMATCH
  awk -v l="$2" -v c="$code" -v b="$bytes" -v s="$secs" -v ok="$ok" \
    'BEGIN { printf "%-22s %s %6.0f MB/s  (%d bytes in %.2f s, sha256 %s)\n", l, c, b / s / 1e6, b, s, ok }'
  rm -f "$d/got"
}
echo "object: $size_mib MiB; origin: nginx sendfile; client: curl over TLS (loopback)"
get $pc "conclave miss"; get $pc "conclave hit"
workers=$(pgrep -P $edge_master || true)
echo "conclave edge worker VmHWM: $(hwm $workers) MiB (master $(hwm $edge_master) MiB)"
get $pn "nginx miss"; get $pn "nginx hit"
nworkers=$(pgrep -P "$(cat $d/nginx.pid)" || true)
echo "nginx worker VmHWM: $(hwm $nworkers) MiB"
