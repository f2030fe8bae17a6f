#!/usr/bin/env bash
# Side-by-side benchmark: stock Debian nginx vs `conclave edge`, cache mode, the
# seed's nginx.conf settings (reference doc §2), same certificate, same origin,
# same client: `ab -n 10000 -c 128` with and without -k, 1k and 100k files,
# 1 and 2 workers. Prints a Markdown table (for docs/benchmarks-edge.md).
# nginx 1.22 without ssl_protocols offers TLS 1.0-1.2 only (like the seed's 1.14),
# so conclave is limited to TLS 1.2 too unless PROTOCOLS='"TLSv1.2", "TLSv1.3"'.
#
# usage: nginx-vs-conclave.sh PATH/TO/conclave [WORKDIR]
set -euo pipefail
BIN=$(readlink -f "$1")
W=${2:-$(mktemp -d /tmp/edge-bench.XXXXXX)}
N=${N:-10000}
C=${C:-128}
PROTO=${PROTOCOLS:-'"TLSv1.2"'}
mkdir -p "$W"
cd "$W"
[ -f certs/site/server.crt ] || "$BIN" certs --out certs >/dev/null
[ -f html/1k.txt ] || "$BIN" content --out html >/dev/null
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 200); do (exec 3<>/dev/tcp/127.0.0.1/$1) 2>/dev/null && return 0; sleep 0.05; done; echo "port $1 never opened" >&2; exit 1; }
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

OP=$(port)
"$BIN" origin --root html --listen 127.0.0.1:$OP & PIDS+=($!)
wait_port $OP

echo "| workers | file | keep-alive | nginx req/s | conclave req/s | ratio | failed (nginx/conclave) |"
echo "|---|---|---|---|---|---|---|"
for workers in 1 2; do
  NP=$(port); CP=$(port)
  rm -rf nginx-cache conclave-cache; mkdir -p nginx-logs
  cat > nginx.conf <<NGX
user root;
worker_processes $workers;
worker_rlimit_nofile 8192;
pid $W/nginx.pid;
error_log /dev/null crit;
events { worker_connections 4096; }
http {
  include /etc/nginx/mime.types;
  default_type application/octet-stream;
  access_log off;
  sendfile on; tcp_nopush on; tcp_nodelay on; keepalive_timeout 65;
  client_body_temp_path $W/nginx-logs/body; proxy_temp_path $W/nginx-logs/proxy;
  fastcgi_temp_path $W/nginx-logs/fcgi; uwsgi_temp_path $W/nginx-logs/uwsgi; scgi_temp_path $W/nginx-logs/scgi;
  proxy_cache_path $W/nginx-cache levels=1:2 keys_zone=ZONE_ONE:16k max_size=10m inactive=60m use_temp_path=off;
  server {
    listen 127.0.0.1:$NP ssl;
    server_name localhost "";
    ssl_certificate $W/certs/site/server.crt;
    ssl_certificate_key $W/certs/site/server.key;
    ssl_ciphers HIGH:!aNULL:!MD5;
    ssl_prefer_server_ciphers on;
    location / {
      proxy_pass http://127.0.0.1:$OP;
      proxy_cache ZONE_ONE;
      proxy_cache_min_uses 1;
      proxy_cache_valid 200 60m;
    }
  }
}
NGX
  cat > edge.toml <<TOML
workers = $workers
worker_connections = 4096
worker_threads = ${THREADS:-1}
access_log = "off"
[[server]]
listen = "127.0.0.1:$CP"
server_name = ["localhost"]
mode = "cache"
proxy_pass = "http://127.0.0.1:$OP"
[server.tls]
certificate = "certs/site/server.crt"
key = "certs/site/server.key"
protocols = [$PROTO]
[server.cache]
path = "conclave-cache"
keys_zone = "ZONE_ONE:16k"
max_size = "10m"
inactive = "60m"
valid = "60m"
min_uses = 1
TOML
  nginx -p "$W" -c "$W/nginx.conf" -g 'daemon off;' & NPID=$!; PIDS+=($NPID)
  "$BIN" edge --config edge.toml 2>edge.log & EPID=$!; PIDS+=($EPID)
  wait_port $NP; wait_port $CP
  for f in 1k.txt 100k.txt; do
    for p in $NP $CP; do
      for _ in 1 2 3; do curl -sk -o /dev/null "https://127.0.0.1:$p/$f"; done
      for _ in $(seq $workers); do curl -sk -o /dev/null "https://127.0.0.1:$p/$f"; done
    done
  done
  for f in 1k.txt 100k.txt; do
    for k in "" "-k"; do
      declare -A RPS FAIL
      # Alternate who goes first: runs slow down as TIME_WAIT sockets pile up.
      ORDER="nginx conclave"; CELL=$((${CELL:-0} + 1)); [ $((CELL % 2)) = 0 ] && ORDER="conclave nginx"
      for who in $ORDER; do
        p=$NP; [ $who = conclave ] && p=$CP
        out=$(ab $k -n $N -c $C "https://127.0.0.1:$p/$f" 2>&1 || true)
        RPS[$who]=$(echo "$out" | awk '/^Requests per second/ {print $4}')
        FAIL[$who]=$(echo "$out" | awk '/^Failed requests/ {print $3}')
        echo "$out" > "ab-$who-w$workers-$f${k}.txt"
      done
      ratio=$(python3 -c "n=float('${RPS[nginx]:-0}' or 0); c=float('${RPS[conclave]:-0}' or 0); print(f'{c/n:.2f}' if n else '-')")
      echo "| $workers | ${f%.txt} | ${k:-no} | ${RPS[nginx]} | ${RPS[conclave]} | $ratio | ${FAIL[nginx]}/${FAIL[conclave]} |"
    done
  done
  kill $NPID $EPID; wait $NPID $EPID 2>/dev/null || true
  PIDS=("${PIDS[0]}")
done
