#!/usr/bin/env bash
# conclave's test command: installs what a fresh Debian 12 machine lacks
# (the peers and oracles the tests use), then checks formatting and lints
# and runs every test. CI runs exactly this (see .ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."

# Peers and oracles: nginx and ab (edge/eval comparisons), curl and openssl
# (TLS clients), e2fsprogs (mke2fs -d, e2fsck -fn), strace (the keyless
# test proves the edge never opens the key), libmodsecurity-dev and
# pkg-config (WAF differential tests), libpcre2-dev (the WAF's @rx fallback
# links Debian's PCRE2, as libmodsecurity does), modsecurity-crs (the CRS tests and
# the CRS differential test), libnginx-mod-http-modsecurity (scripts/bench-waf-crs.sh), chromium (the report renders),
# python3-cryptography (XTS known answers from OpenSSL), fonts for plots,
# python3-prometheus-client (the reference OpenMetrics parser reads /metrics),
# systemd (systemd-analyze verify on the units), libssl-dev (libcrypto to
# link crates/conclave-openssl, the provider stock NGINX loads), fuse3
# (fusermount3 for `conclave mount` when not root).
PACKAGES=(nginx apache2-utils curl openssl e2fsprogs strace pkg-config libmodsecurity-dev fuse3
          libpcre2-dev modsecurity-crs libnginx-mod-http-modsecurity
          chromium fonts-dejavu-core python3-cryptography python3-prometheus-client
          systemd libssl-dev)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "== installing missing packages: ${missing[*]}"
  if [ "$(id -u)" -ne 0 ]; then
    echo "error: need root (or sudo) to apt-get install: ${missing[*]}" >&2
    exit 1
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# Debian's nginx package may start a daemon on port 80; the tests start their own.
if command -v service >/dev/null 2>&1; then service nginx stop >/dev/null 2>&1 || true; fi

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings
cargo clippy -p conclave-waf --features modsecurity --all-targets -- -D warnings
cargo clippy -p conclave-bench --features modsecurity --all-targets -- -D warnings
# Kubernetes manifests and the Helm chart against pinned schemas, the
# systemd units, the .deb (installs kubernetes-validate, helm and cargo-deb
# under target/packaging on first use; see the script's header).
echo "== packaging"
bash scripts/check-packaging.sh
log=$(mktemp)
trap 'rm -f "$log"' EXIT
echo "== cargo test"
cargo test --workspace --no-fail-fast -- --test-threads=2 2>&1 | tee -a "$log"
# The long ext2 model run (3 seeds x 12000 operations against a model, e2fsck
# and ext4-view; #[ignore]d in the default run): about 2.5 min on 2 cores.
echo "== ext2 long model test"
cargo test -p conclave-ext2 --test ext2 -- --ignored --test-threads=2 2>&1 | tee -a "$log"
# The 1 GiB object through the cache twice (sha256, worker VmHWM < 64 MiB;
# #[ignore]d in the default run): about 90 s in a debug build on 2 cores.
echo "== cache 1 GiB streaming test"
cargo test -p conclave --test cache_stream -- --ignored 2>&1 | tee -a "$log"
echo "== WAF differential tests against libmodsecurity"
cargo test -p conclave-waf --features modsecurity -- --test-threads=2 2>&1 | tee -a "$log"

# One closing line for the whole run (the last runner's own line is often
# an empty doc-test run).
awk '/^test result:/ { p += $4; f += $6; i += $8 } END { printf "summary: %d passed, %d failed, %d skipped\n", p, f, i }' "$log"
