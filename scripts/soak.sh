#!/usr/bin/env bash
# The issue-16 soak: the eval's `conclave-vericrypt` deployment (vericrypt file
# server + smuf memory server + key server, cached edge) under `conclave ab`
# load, while a second process performs one attack per phase:
#
#   baseline   no attack
#   idle-tcp   ~1,030 idle TCP connections to the key server (no TLS)
#   lock-hold  `conclave mem hold` on the edge's cache-zone lock, never released
#   slow-body  HTTP/1.1 request bodies at 1 byte per 2 s
#   h2-ping    HTTP/2 connections sending only PINGs
#   publish    one client publishing ten 16 MiB segments to an smdish server
#   bad-cert   a flood of refused mTLS handshakes (another CA's certificate)
#
# and prints, per phase: requests, failed requests, non-2xx, req/s, the growth
# of all server logs, and the attack's outcome. The failures are the
# measurement: the script exits non-zero only when it cannot set up.
#
# Loopback only, ephemeral ports, a temporary directory, every process stopped
# on exit; bounded to 5 minutes in total (run under `timeout 300`).
#
# usage: scripts/soak.sh [--bin PATH] [--release] [--phase SECONDS] [--keep DIR]
#   --bin PATH     the conclave binary (default: build target/debug/conclave)
#   --release      build and use target/release/conclave instead
#   --phase N      seconds of load per phase (default 20, at most 25)
#   --keep DIR     run in DIR and keep it (logs, deploy.toml) instead of a temp dir
set -euo pipefail

# The 5-minute bound: `timeout` TERMs this script, whose trap stops everything.
if [ -z "${CONCLAVE_SOAK_BOUNDED:-}" ]; then
    CONCLAVE_SOAK_BOUNDED=1 exec timeout 300 "$0" "$@"
fi

ROOT=$(cd "$(dirname "$0")/.." && pwd)
ATTACK="$ROOT/scripts/soak_attack.py"
BIN=""
PROFILE=debug
PHASE=20
KEEP=""
while [ $# -gt 0 ]; do
    case "$1" in
        --bin) BIN=$2; shift 2 ;;
        --release) PROFILE=release; shift ;;
        --phase) PHASE=$2; shift 2 ;;
        --keep) KEEP=$2; shift 2 ;;
        -h|--help) sed -n '2,26p' "$0"; exit 0 ;;
        *) echo "soak: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done
if ! [[ "$PHASE" =~ ^[0-9]+$ ]] || [ "$PHASE" -lt 5 ] || [ "$PHASE" -gt 25 ]; then
    echo "soak: --phase must be 5..25 seconds (7 phases must fit in 5 minutes)" >&2
    exit 2
fi
command -v python3 >/dev/null || { echo "soak: python3 is required" >&2; exit 2; }

if [ -z "$BIN" ]; then
    if [ "$PROFILE" = release ]; then
        (cd "$ROOT" && cargo build --release -p conclave) >&2
    else
        (cd "$ROOT" && cargo build -p conclave) >&2
    fi
    BIN="$ROOT/target/$PROFILE/conclave"
fi
[ -x "$BIN" ] || { echo "soak: no conclave binary at $BIN" >&2; exit 2; }

if [ -n "$KEEP" ]; then
    mkdir -p "$KEEP"
    DIR=$(cd "$KEEP" && pwd)
else
    DIR=$(mktemp -d /tmp/conclave-soak.XXXXXX)
fi

PIDS=()          # background processes of this script, stopped on exit
UP_PID=""
cleanup() {
    trap - EXIT INT TERM
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    # shellcheck disable=SC2046
    [ ! -f "$DIR/publish.pids" ] || kill $(cat "$DIR/publish.pids") 2>/dev/null || true
    if [ -n "$UP_PID" ]; then
        kill -TERM "$UP_PID" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$UP_PID" 2>/dev/null || break; sleep 0.2; done
        kill -KILL "$UP_PID" 2>/dev/null || true
    fi
    wait 2>/dev/null || true
    [ -n "$KEEP" ] || rm -rf "$DIR"
}
trap cleanup EXIT
trap 'echo "soak: stopped" >&2; exit 130' INT TERM

die() { echo "soak: setup error: $*" >&2; exit 1; }

# Seven free loopback ports (kernel-chosen, released just before use).
read -r P_ORIGIN P_SITE P_KS P_MS P_FS P_SMDISH _ < <(python3 - <<'EOF'
import socket
socks = [socket.socket() for _ in range(7)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))
EOF
)

cat > "$DIR/deploy.toml" <<EOF
# the eval's conclave-vericrypt preset, written by scripts/soak.sh
name = "soak-conclave-vericrypt"
[origin]
kind = "conclave"
listen = "127.0.0.1:$P_ORIGIN"
[edge]
kind = "conclave"
workers = 2
mode = "cache"
storage = "nextfs"
shared = "smuf"
key = "keyserver"
[[edge.site]]
listen = "127.0.0.1:$P_SITE"
[keyserver]
listen = "127.0.0.1:$P_KS"
[memserver]
listen = "127.0.0.1:$P_MS"
[fileserver]
device = "vericrypt"
listen = "127.0.0.1:$P_FS"
kdf = "cheap"
EOF

echo "soak: starting the conclave-vericrypt deployment in $DIR" >&2
"$BIN" up "$DIR/deploy.toml" > "$DIR/up.out" 2>&1 &
UP_PID=$!
for _ in $(seq 600); do
    grep -q ' is up:' "$DIR/up.out" 2>/dev/null && break
    kill -0 "$UP_PID" 2>/dev/null || { cat "$DIR/up.out" >&2; die "conclave up exited"; }
    sleep 0.2
done
grep -q ' is up:' "$DIR/up.out" || { cat "$DIR/up.out" >&2; die "deployment not up after 120 s"; }
CERTS="$DIR/certs"

# The deployment has no smdish: one beside it for the publish attack.
"$BIN" memserver --kind smdish --listen "tcp://127.0.0.1:$P_SMDISH" --certs "$CERTS" \
    > "$DIR/smdish.log" 2>&1 &
SMDISH=$!
PIDS+=("$SMDISH")
python3 - "$P_SMDISH" <<'EOF' || die "smdish did not start"
import socket, sys, time
for _ in range(100):
    try:
        socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=1).close()
        sys.exit(0)
    except OSError:
        time.sleep(0.1)
sys.exit(1)
EOF

# Another CA's identities for the refused-handshake flood.
"$BIN" certs --out "$DIR/wrong-ca" > /dev/null || die "conclave certs failed"

URL="https://127.0.0.1:$P_SITE/1k.txt"
"$BIN" ab -n 20 -c 2 -s 10 --cacert "$CERTS/ca/root.crt" "$URL" > "$DIR/warmup.txt" 2>&1 \
    || die "warm-up load failed: $(tail -3 "$DIR/warmup.txt")"

logs_size() { cat "$DIR"/*.log 2>/dev/null | wc -c; }
rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
mem_spec_smuf="smuf+tcp://127.0.0.1:$P_MS?dir=$DIR/memfiles"
mem_spec_smdish="smdish+tcp://127.0.0.1:$P_SMDISH"
# Ten 16 MiB segments from one client identity: more than the issue's six, so
# the per-identity quota (128 MiB by default) is reached within the phase.
SEGMENTS=10

# Starts the attack of phase $1 in the background; sets ATTACK_PID / OUTCOME_FILE.
start_attack() {
    local name=$1 dur=$((PHASE + 3))
    OUTCOME_FILE="$DIR/attack-$name.out"
    : > "$OUTCOME_FILE"
    ATTACK_PID=""
    case "$name" in
        baseline) ;;
        idle-tcp)
            python3 "$ATTACK" idle-tcp 127.0.0.1 "$P_KS" --count 1030 --duration "$dur" \
                > "$OUTCOME_FILE" 2>&1 &
            ATTACK_PID=$! ;;
        lock-hold)
            "$BIN" mem --spec "$mem_spec_smuf" --certs "$CERTS" hold ZONE0 --size 16384 \
                > "$OUTCOME_FILE" 2>&1 &
            ATTACK_PID=$! ;;
        slow-body)
            python3 "$ATTACK" slow-body 127.0.0.1 "$P_SITE" --count 16 --duration "$dur" \
                > "$OUTCOME_FILE" 2>&1 &
            ATTACK_PID=$! ;;
        h2-ping)
            python3 "$ATTACK" h2-ping 127.0.0.1 "$P_SITE" --count 16 --duration "$dur" \
                > "$OUTCOME_FILE" 2>&1 &
            ATTACK_PID=$! ;;
        publish)
            (
                before=$(rss_kib "$SMDISH")
                ok=0; refused=0; first=""
                hp=()
                for i in $(seq "$SEGMENTS"); do
                    out="$DIR/publish-$i.out"
                    "$BIN" mem --spec "$mem_spec_smdish" --certs "$CERTS" --role client \
                        hold "soak-seg-$i" --size 16777216 > "$out" 2>&1 &
                    hp+=($!)
                    echo "$!" >> "$DIR/publish.pids"
                    for _ in $(seq 100); do
                        grep -q locked "$out" && break
                        kill -0 "${hp[-1]}" 2>/dev/null || break
                        sleep 0.1
                    done
                    if grep -q locked "$out"; then ok=$((ok + 1)); else
                        refused=$((refused + 1))
                        [ -n "$first" ] || first=$(tail -1 "$out" | sed "s/^conclave: error: //" | cut -c1-160)
                    fi
                done
                after=$(rss_kib "$SMDISH")
                echo "$SEGMENTS x 16 MiB: $ok accepted, $refused refused${first:+ ($first)}; smdish RSS $((before / 1024)) -> $((after / 1024)) MiB"
            ) > "$OUTCOME_FILE" 2>&1 &
            ATTACK_PID=$! ;;
        bad-cert)
            python3 "$ATTACK" bad-cert "127.0.0.1:$P_KS" "127.0.0.1:$P_MS" "127.0.0.1:$P_FS" \
                "127.0.0.1:$P_SMDISH" --cert "$DIR/wrong-ca/edge.crt" --key "$DIR/wrong-ca/edge.key" \
                --duration "$dur" > "$OUTCOME_FILE" 2>&1 &
            ATTACK_PID=$! ;;
    esac
    [ -z "$ATTACK_PID" ] || PIDS+=("$ATTACK_PID")
}

# One line describing what the attack of phase $1 saw.
finish_attack() {
    local name=$1
    case "$name" in
        baseline) echo "-" ;;
        lock-hold)
            if grep -q locked "$OUTCOME_FILE"; then
                if kill -0 "$ATTACK_PID" 2>/dev/null; then
                    echo "ZONE0 lock taken; holder still running at phase end (killed)"
                else
                    echo "ZONE0 lock taken; holder ended: $(tail -1 "$OUTCOME_FILE" | cut -c1-80)"
                fi
            else
                echo "lock not taken: $(tail -1 "$OUTCOME_FILE" | cut -c1-80)"
            fi
            kill "$ATTACK_PID" 2>/dev/null || true ;;
        publish)
            wait "$ATTACK_PID" 2>/dev/null || true
            # the holders keep their segments (and smdish its memory) until here
            # shellcheck disable=SC2046
            kill $(cat "$DIR/publish.pids" 2>/dev/null) 2>/dev/null || true
            tail -1 "$OUTCOME_FILE" ;;
        *)
            for _ in $(seq 150); do kill -0 "$ATTACK_PID" 2>/dev/null || break; sleep 0.2; done
            kill "$ATTACK_PID" 2>/dev/null || true
            wait "$ATTACK_PID" 2>/dev/null || true
            tail -1 "$OUTCOME_FILE" | sed 's/"attack": "[a-z0-9-]*", //' | tr -d '{}"' ;;
    esac
}

ab_summary() {
    python3 - "$1" <<'EOF'
import json, sys
try:
    r = json.load(open(sys.argv[1]))
except Exception as e:
    print("-\t-\t-\t-\tab did not report (%s)" % type(e).__name__)
    sys.exit(0)
print("%d\t%d\t%d\t%.1f\t" % (r["complete"], r["failed"], r["non_2xx"], r["requests_per_sec"]))
EOF
}

ROWS=()
for phase in baseline idle-tcp lock-hold slow-body h2-ping publish bad-cert; do
    echo "soak: phase $phase ($PHASE s)" >&2
    log0=$(logs_size)
    start_attack "$phase"
    case "$phase" in
        idle-tcp|publish) sleep 4 ;;   # let the connections / segments land first
        lock-hold)
            for _ in $(seq 50); do grep -q locked "$OUTCOME_FILE" && break; sleep 0.2; done ;;
        baseline) ;;
        *) sleep 1 ;;
    esac
    timeout $((PHASE + 20)) "$BIN" ab -t "$PHASE" -c 8 -s 5 --json --cacert "$CERTS/ca/root.crt" "$URL" \
        > "$DIR/ab-$phase.json" 2> "$DIR/ab-$phase.err" || true
    outcome=$(finish_attack "$phase")
    log1=$(logs_size)
    IFS=$'\t' read -r req failed non2xx rps note < <(ab_summary "$DIR/ab-$phase.json")
    ROWS+=("$(printf '| %-9s | %8s | %6s | %7s | %7s | %+9d | %s%s |' \
        "$phase" "$req" "$failed" "$non2xx" "$rps" $((log1 - log0)) "$outcome" "${note:+ [$note]}")")
done

echo
echo "conclave soak: $(nproc) cores, loopback, conclave-vericrypt, ab -c 8 -s 5 (full TLS handshake per request), $PHASE s per phase, $(basename "$(dirname "$(dirname "$BIN")")")/$(basename "$(dirname "$BIN")") binary"
echo
echo "| phase     | requests | failed | non-2xx |   req/s | log bytes | attack outcome |"
echo "|-----------|---------:|-------:|--------:|--------:|----------:|----------------|"
printf '%s\n' "${ROWS[@]}"
