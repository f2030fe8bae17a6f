#!/usr/bin/env bash
# The OWASP CRS (Debian's modsecurity-crs, PL1, unmodified, with Debian's recommended
# modsecurity.conf) in front of the same origin, side by side in one run:
#   conclave edge + CRS        vs  the same edge without WAF
#   NGINX + ModSecurity + CRS  vs  the same NGINX without WAF
# on benign requests: GETs with a query string (`conclave ab -k`) and small JSON POSTs
# (Apache `ab -k -p`: `conclave ab` sends no bodies). Prints requests/s of each and the
# ratios the issue asks for (conclave+CRS / conclave, conclave+CRS / NGINX+ModSecurity+CRS).
#
#   scripts/bench-waf-crs.sh [SECONDS] [CONCURRENCY]     (default 10 s, 16)
#
# KEEPALIVE=0 opens a new connection (and TLS 1.3 handshake) per request, as the
# seed's ApacheBench runs did, instead of keep-alive (the issue's workload).
#
# Needs a release build (cargo build --release -p conclave), nginx,
# libnginx-mod-http-modsecurity, modsecurity-crs and apache2-utils.
# A benchmark, not a test: the figures go in docs/benchmarks-waf.md.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}
conc=${2:-16}
ka=(-k)
[ "${KEEPALIVE:-1}" = 0 ] && ka=()
bin=${CONCLAVE:-target/release/conclave}
modsec_so=/usr/lib/nginx/modules/ngx_http_modsecurity_module.so
crs_setup=/etc/modsecurity/crs/crs-setup.conf
crs_rules=/usr/share/modsecurity-crs/rules
for t in nginx ab python3; do
  command -v $t >/dev/null || { echo "error: $t is missing (apt-get install nginx apache2-utils)" >&2; exit 1; }
done
[ -x "$bin" ] || { echo "error: $bin missing: cargo build --release -p conclave" >&2; exit 1; }
[ -f "$modsec_so" ] || { echo "error: apt-get install libnginx-mod-http-modsecurity" >&2; exit 1; }
[ -f "$crs_setup" ] || { echo "error: apt-get install modsecurity-crs" >&2; exit 1; }

d=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; sleep 0.5; rm -rf "$d"; }
trap cleanup EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 400); do (exec 3<>/dev/tcp/127.0.0.1/$1) 2>/dev/null && return 0; sleep 0.05; done; echo "port $1 never opened" >&2; exit 1; }

"$bin" certs --out "$d/certs" >/dev/null
mkdir -p "$d/ntmp" "$d/ccache"
# The same main.conf for both WAFs (docs/waf.md): the audit log off, PL1.
cp crates/conclave-waf/tests/crs/modsecurity.conf "$d/modsecurity.conf"
[ -f /etc/nginx/unicode.mapping ] && cp /etc/nginx/unicode.mapping "$d/"
cat > "$d/crs.conf" <<CONF
Include $d/modsecurity.conf
SecRuleEngine On
SecAuditEngine Off
Include $crs_setup
SecAction "id:900000,phase:1,nolog,pass,t:none,setvar:tx.paranoia_level=1"
Include $crs_rules/*.conf
CONF
body='{"name":"Widget","qty":3,"tags":["a","b"],"active":true}'
printf '%s' "$body" > "$d/body.json"

po=$(port); pe=$(port); pew=$(port); pn=$(port); pnw=$(port)
user=""; [ "$(id -u)" -eq 0 ] && user="user root;"
temps="client_body_temp_path $d/ntmp; proxy_temp_path $d/ntmp; fastcgi_temp_path $d/ntmp;
  uwsgi_temp_path $d/ntmp; scgi_temp_path $d/ntmp;"
cat > "$d/origin.conf" <<CONF
$user daemon off; worker_processes 1; pid $d/origin.pid; error_log $d/origin.err;
events { worker_connections 4096; }
http { access_log off; $temps
  server { listen 127.0.0.1:$po; default_type text/plain;
    location / { add_header Cache-Control "max-age=3600"; return 200 "ok\n"; }
    location /api/ { return 200 "stored\n"; } } }
CONF
# NGINX as the front: one worker, the same TLS files, proxy_cache like the edge's cache;
# two servers, one with ModSecurity + CRS.
front() { # port, extra server lines
  cat <<CONF
  server { listen 127.0.0.1:$1 ssl; server_name localhost;
    ssl_certificate $d/certs/site/server.crt; ssl_certificate_key $d/certs/site/server.key;
    $2
    location / { proxy_cache z; proxy_cache_valid 200 60m; proxy_pass http://127.0.0.1:$po; } }
CONF
}
cat > "$d/nginx.conf" <<CONF
load_module $modsec_so;
$user daemon off; worker_processes 1; pid $d/nginx.pid; error_log $d/nginx.err;
events { worker_connections 4096; }
http { access_log off; $temps
  proxy_cache_path $d/ncache levels=1:2 keys_zone=z:1m max_size=1g inactive=60m use_temp_path=off;
$(front "$pn" "")
$(front "$pnw" "modsecurity on; modsecurity_rules_file $d/crs.conf;")
}
CONF
site() { # port, extra
  cat <<CONF
[[server]]
listen = "127.0.0.1:$1"
server_name = ["localhost"]
mode = "cache"
proxy_pass = "http://127.0.0.1:$po"
[server.tls]
certificate = "$d/certs/site/server.crt"
key = "$d/certs/site/server.key"
[server.cache]
path = "$d/ccache/$1"
keys_zone = "z$1:1m"
max_size = "1g"
$2
CONF
}
# VERDICT_CACHE=0 turns the WAF's libinjection verdict cache off (docs/waf.md): this
# script sends one request over and over, so with the cache on every value is a hit.
{ echo "workers = 1"; echo "waf_verdict_cache = ${VERDICT_CACHE:-4096}"; site "$pe" ""; site "$pew" "[server.waf]
rules = \"$d/crs.conf\"
body_limit = \"128k\""; } > "$d/edge.toml"

"$bin" edge --config "$d/edge.toml" --check >/dev/null
nginx -p "$d" -c "$d/origin.conf" & pids+=($!)
nginx -p "$d" -c "$d/nginx.conf" & pids+=($!); nginx_pid=$!
"$bin" edge --config "$d/edge.toml" 2>"$d/edge.log" & pids+=($!); edge_pid=$!
for p in $po $pe $pew $pn $pnw; do wait_port "$p"; done

ua='User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0'
accept='Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8'
query='/products?id=42&sort=price&page=2&q=summer+sale'
# Each front must answer 200 (a CRS false positive would make the comparison meaningless).
for p in $pe $pew $pn $pnw; do
  code=$(curl -s -o /dev/null -w '%{http_code}' --cacert "$d/certs/ca/root.crt" \
    --resolve localhost:$p:127.0.0.1 -H "$ua" -H "$accept" "https://localhost:$p$query")
  [ "$code" = 200 ] || { echo "error: port $p answered $code to the benign GET" >&2; exit 1; }
  code=$(curl -s -o /dev/null -w '%{http_code}' --cacert "$d/certs/ca/root.crt" \
    --resolve localhost:$p:127.0.0.1 -H "$ua" -H 'Content-Type: application/json' \
    --data-binary @"$d/body.json" "https://localhost:$p/api/items")
  [ "$code" = 200 ] || { echo "error: port $p answered $code to the benign JSON POST" >&2; exit 1; }
done
# ...and deny an attack when it has the WAF.
for p in $pew $pnw; do
  code=$(curl -s -o /dev/null -w '%{http_code}' --cacert "$d/certs/ca/root.crt" \
    --resolve localhost:$p:127.0.0.1 -H "$ua" -H "$accept" "https://localhost:$p/products?id=1%27%20OR%20%271%27%3D%271")
  [ "$code" = 403 ] || { echo "error: port $p answered $code to SQLi" >&2; exit 1; }
done

# Each prints "requests/s completed-requests".
get_rps() { # port -> GETs with a query string
  "$bin" ab "${ka[@]}" -c "$conc" -t "$secs" --cacert "$d/certs/ca/root.crt" -H "$ua" -H "$accept" \
    "https://localhost:$1$query" 2>/dev/null | awk '/Requests per second/ {r=$4} /Complete requests/ {c=$3} END {print r, c}'
}
post_rps() { # port -> small JSON POSTs
  ab "${ka[@]}" -c "$conc" -t "$secs" -n 10000000 -p "$d/body.json" -T application/json -H "$ua" \
    "https://localhost:$1/api/items" 2>/dev/null | awk '/Requests per second/ {r=$4} /Complete requests/ {c=$3} END {print r, c}'
}
# CPU ticks (user + system) of a server: its master and the workers under it.
tree_ticks() {
  local t=0 p
  for p in "$1" $(pgrep -P "$1"); do
    t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null || echo 0)))
  done
  echo "$t"
}
hz=$(getconf CLK_TCK)
# r: requests/s; cpu: CPU µs per request of the server process tree serving the cell
# (the edge's master and worker, or NGINX's master and worker; each cell has its
# server to itself: the other sites of that process are idle meanwhile).
declare -A r cpu
declare -A label=([edge]="conclave edge, no WAF" [edge_crs]="conclave edge + CRS"
  [nginx]="NGINX, no WAF" [nginx_crs]="NGINX + ModSecurity + CRS")
for what in get post; do
  for cfg in edge edge_crs nginx nginx_crs; do
    case $cfg in edge) p=$pe;; edge_crs) p=$pew;; nginx) p=$pn;; nginx_crs) p=$pnw;; esac
    case $cfg in edge*) owner=$edge_pid;; *) owner=$nginx_pid;; esac
    t0=$(tree_ticks "$owner")
    read -r rps done_n < <(${what}_rps "$p")
    t1=$(tree_ticks "$owner")
    r[$what.$cfg]=$rps
    cpu[$what.$cfg]=$(awk -v t="$((t1 - t0))" -v hz="$hz" -v n="$done_n" 'BEGIN { if (n > 0) printf "%.1f", t * 1e6 / hz / n; else print "-" }')
  done
done
# The one denial expected is the SQL injection probe above.
if grep "denied by the WAF" "$d/edge.log" | grep -qv "OR%20"; then
  echo "warning: the edge denied some benign requests:" >&2
  grep "denied by the WAF" "$d/edge.log" | grep -v "OR%20" | head -3 >&2
fi
echo "CRS PL1, benign load, $secs s per cell, concurrency $conc, keep-alive ${KEEPALIVE:-1}, $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-34s %14s %14s\n' "front" "GET ?query r/s" "JSON POST r/s"
for cfg in edge edge_crs nginx nginx_crs; do
  printf '%-34s %14s %14s\n' "${label[$cfg]}" "${r[get.$cfg]}" "${r[post.$cfg]}"
done
printf '\nCPU µs per request of the serving process (master + worker; the load generator not counted)\n'
printf '%-34s %14s %14s\n' "front" "GET ?query" "JSON POST"
for cfg in edge edge_crs nginx nginx_crs; do
  printf '%-34s %14s %14s\n' "${label[$cfg]}" "${cpu[get.$cfg]}" "${cpu[post.$cfg]}"
done
for what in get post; do
  awk -v w="$what" -v e="${cpu[$what.edge]}" -v ec="${cpu[$what.edge_crs]}" -v n="${cpu[$what.nginx]}" -v nc="${cpu[$what.nginx_crs]}" \
    'BEGIN { printf "%-4s CRS adds %.1f µs per request to the conclave edge (CPU ratio %.2f), %.1f µs to NGINX (%.2f)\n", w, ec - e, e / ec, nc - n, n / nc }'
done
echo
for what in get post; do
  awk -v w="$what" -v e="${r[$what.edge]}" -v ec="${r[$what.edge_crs]}" -v nc="${r[$what.nginx_crs]}" -v n="${r[$what.nginx]}" \
    'BEGIN { printf "%-4s conclave+CRS / conclave = %.2f (goal >= 0.8); conclave+CRS / NGINX+ModSecurity+CRS = %.2f (goal >= 3); NGINX+ModSecurity+CRS / NGINX = %.2f\n", w, ec / e, ec / nc, nc / n }'
done
