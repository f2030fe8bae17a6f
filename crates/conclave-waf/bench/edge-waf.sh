#!/usr/bin/env bash
# Edge throughput with the WAF: `conclave edge` (standalone, 1 worker) with the
# seed's rule sets of 0..1M rules, and stock nginx + ModSecurity (Debian's
# libnginx-mod-http-modsecurity) with the same rule files, same certificate,
# same client: `ab -k -n N -c 32` on 1k.txt with a harmless ?testparam.
# Usage: edge-waf.sh CONCLAVE_BIN WORKDIR [N_REQUESTS] [RULE COUNTS...]
set -euo pipefail
bin=$(realpath "$1"); work=$2; n=${3:-20000}; shift 3 || true
counts=("$@"); [ ${#counts[@]} -gt 0 ] || counts=(0 1 100 10000 100000 1000000)
nginx_max=${NGINX_MAX_RULES:-10000}   # libmodsecurity loads rules in quadratic time
mkdir -p "$work"; cd "$work"; work=$(pwd)
[ -d certs ] || "$bin" certs --out certs >/dev/null
[ -d html ] || "$bin" content --out html >/dev/null
modso=/usr/lib/nginx/modules/ngx_http_modsecurity_module.so
have_nginx=yes; { command -v nginx >/dev/null && [ -f "$modso" ]; } || have_nginx=no
port=18640
url="https://127.0.0.1:$port/1k.txt?testparam=harmlessvalue"
measure() { ab -k -n "$n" -c 32 "$url" 2>/dev/null | awk '/Requests per second/{print $4} /Failed requests/{f=$3} END{if (f!=0) print "FAILED:" f > "/dev/stderr"}'; }
wait_port() { for _ in $(seq 1 600); do (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && return 0; sleep 0.1; done; echo "port $port never opened" >&2; return 1; }
printf "%-9s %-14s %-14s %-16s\n" rules "conclave_rps" "nginx_rps" "conclave_load_s"
for r in "${counts[@]}"; do
  waf=""
  if [ "$r" -gt 0 ]; then
    [ -f "rules-$r/main.conf" ] || "$bin" waf-rules "$r" --seed 42 --out "rules-$r/main.conf" >/dev/null
    waf=$'[server.waf]\nrules = "rules-'"$r"'/main.conf"'
  fi
  cat > edge.toml <<EOT
workers = 1
[[server]]
listen = "127.0.0.1:$port"
mode = "standalone"
root = "html"
[server.tls]
certificate = "certs/site/server.crt"
key = "certs/site/server.key"
protocols = ["TLSv1.2"]
$waf
EOT
  t0=$(date +%s.%N)
  "$bin" edge --config edge.toml 2>edge.log & epid=$!
  wait_port; t1=$(date +%s.%N)
  ours=$(measure); kill -TERM $epid; wait $epid 2>/dev/null || true
  theirs="-"
  if [ "$have_nginx" = yes ] && [ "$r" -le "$nginx_max" ]; then
    mkdir -p ng/logs
    modline=""; rules=""
    if [ "$r" -gt 0 ]; then modline="load_module $modso;"; rules="modsecurity on; modsecurity_rules_file $work/rules-$r/main.conf;"; fi
    cat > ng/nginx.conf <<EOT
$modline
worker_processes 1; pid $work/ng/nginx.pid; error_log /dev/null crit; user root;
events { worker_connections 4096; }
http { access_log off; sendfile on; keepalive_timeout 65; keepalive_requests 1000000;
  server { listen 127.0.0.1:$port ssl; ssl_certificate $work/certs/site/server.crt;
    ssl_certificate_key $work/certs/site/server.key; ssl_protocols TLSv1.2; ssl_ciphers HIGH:!aNULL:!MD5;
    root $work/html; $rules } }
EOT
    nginx -p "$work/ng" -c "$work/ng/nginx.conf" -g 'daemon off;' & npid=$!
    wait_port; theirs=$(measure); kill -QUIT $npid; wait $npid 2>/dev/null || true
  fi
  printf "%-9s %-14s %-14s %-16s\n" "$r" "$ours" "$theirs" "$(echo "$t1 - $t0" | bc)"
done
[ "$have_nginx" = yes ] || echo "NOTE: nginx or $modso is not installed: the nginx column was not measured"
