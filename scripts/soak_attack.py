#!/usr/bin/env python3
"""The attacks of issue 16, one per run, for scripts/soak.sh.

Loopback only (every target host must be 127.0.0.1 or ::1), bounded in
connection count and in time (--duration). Standard library only, so the soak
needs nothing beyond python3. Each run prints one JSON line describing what the
attack saw (the *outcome*: how long the server tolerated it), never secrets.

  idle-tcp  HOST PORT --count 1030    TCP connections that never start TLS;
                                      ones the server closes are reopened
  slow-body HOST PORT --count 16      HTTP/1.1 POST bodies at 1 byte per 2 s
  h2-ping   HOST PORT --count 16      HTTP/2 connections sending only PINGs
  bad-cert  HOST:PORT... --cert C --key K
                                      a flood of mTLS handshakes with a
                                      certificate of another CA
"""

import argparse
import ipaddress
import json
import resource
import socket
import ssl
import struct
import sys
import threading
import time

MAX_CONNECTIONS = 2000
MAX_DURATION = 120.0
MAX_BAD_CERT_ATTEMPTS = 20000


def loopback(host):
    """Refuses any target that is not a loopback address."""
    if not ipaddress.ip_address(host).is_loopback:
        sys.exit(f"refusing non-loopback target {host}: the soak attacks only 127.0.0.1/::1")
    return host


def raise_fd_limit(need):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, max(soft, need + 64))
    if want > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    if want < need + 16:
        sys.exit(f"open-file limit {hard} is too low for {need} connections")


def client_tls(alpn=None):
    """TLS towards the edge: the attack is about time, not about trust."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if alpn:
        ctx.set_alpn_protocols(alpn)
    return ctx


def peer_closed(sock):
    """True when the peer has closed (or reset) `sock`; never blocks (and,
    unlike select(), works for descriptors above 1024)."""
    try:
        return sock.recv(4096, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
    except (BlockingIOError, InterruptedError):
        return False
    except OSError:
        return True


def idle_tcp(a):
    """Holds `count` idle TCP connections; reopens the ones the server drops."""
    raise_fd_limit(a.count)
    start = time.monotonic()
    socks = []
    refused = 0

    def connect():
        nonlocal refused
        s = socket.socket(socket.AF_INET6 if ":" in a.host else socket.AF_INET)
        s.settimeout(2)
        try:
            s.connect((a.host, a.port))
            return s
        except OSError:
            refused += 1
            s.close()
            return None

    for _ in range(a.count):
        s = connect()
        if s:
            socks.append((s, time.monotonic()))
    opened = len(socks)
    dropped = 0
    lifetimes = []
    while time.monotonic() - start < a.duration:
        time.sleep(0.5)
        alive = []
        for s, t0 in socks:
            if peer_closed(s):
                dropped += 1
                lifetimes.append(time.monotonic() - t0)
                s.close()
                n = connect()
                if n:
                    alive.append((n, time.monotonic()))
            else:
                alive.append((s, t0))
        socks = alive
    still = len(socks)
    for s, _ in socks:
        s.close()
    out = {
        "attack": "idle-tcp",
        "opened": opened,
        "connect_failures": refused,
        "dropped_by_server": dropped,
        "open_at_end": still,
    }
    if lifetimes:
        out["lifetime_s_min"] = round(min(lifetimes), 1)
        out["lifetime_s_max"] = round(max(lifetimes), 1)
    return out


def closing_times(kind, a, worker):
    """Runs `worker(index, record)` on `count` threads; summarizes how long
    the server kept each connection open."""
    results = [None] * a.count
    threads = []
    for i in range(a.count):
        t = threading.Thread(target=worker, args=(i, results), daemon=True)
        t.start()
        threads.append(t)
    for t in threads:
        t.join(a.duration + 10)
    closed = [r for r in results if r and r[0] == "closed"]
    failed = [r for r in results if r and r[0] == "error"]
    out = {
        "attack": kind,
        "connections": a.count,
        "closed_by_server": len(closed),
        "open_at_end": sum(1 for r in results if r and r[0] == "open"),
        "setup_errors": len(failed),
    }
    if closed:
        ts = sorted(r[1] for r in closed)
        out["closed_after_s_min"] = round(ts[0], 1)
        out["closed_after_s_max"] = round(ts[-1], 1)
        out["last_reply"] = closed[-1][2]
    if failed:
        out["first_error"] = failed[0][1]
    return out


def slow_body(a):
    """POSTs whose body trickles in at one byte every 2 s."""

    def worker(i, results):
        try:
            raw = socket.create_connection((a.host, a.port), timeout=5)
            s = client_tls().wrap_socket(raw, server_hostname="localhost")
        except OSError as e:
            results[i] = ("error", str(e))
            return
        t0 = time.monotonic()
        head = (
            "POST /1k.txt HTTP/1.1\r\nHost: localhost\r\n"
            "Content-Type: application/octet-stream\r\nContent-Length: 1000\r\n\r\n"
        )
        reply = ""
        try:
            s.sendall(head.encode())
            s.settimeout(2)
            while time.monotonic() - t0 < a.duration:
                try:
                    data = s.recv(4096)
                    if not data:
                        results[i] = ("closed", time.monotonic() - t0, reply or "EOF")
                        return
                    reply = reply or data.split(b"\r\n", 1)[0].decode("latin-1")
                except (socket.timeout, ssl.SSLWantReadError):
                    pass
                s.sendall(b"x")
            results[i] = ("open", time.monotonic() - t0)
        except (OSError, ssl.SSLError) as e:
            results[i] = ("closed", time.monotonic() - t0, reply or type(e).__name__)
        finally:
            s.close()

    return closing_times("slow-body", a, worker)


def h2_frame(kind, flags, stream, payload=b""):
    return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + struct.pack(">I", stream) + payload


def h2_ping(a):
    """HTTP/2 connections that send the preface, then only PING frames, one per
    second each: a keep-alive that would reset an idle timer counting any
    frame (the issue's attack). A PING *flood* is a CPU attack of its own,
    not this one (docs/robustness.md)."""

    def worker(i, results):
        try:
            raw = socket.create_connection((a.host, a.port), timeout=5)
            s = client_tls(["h2"]).wrap_socket(raw, server_hostname="localhost")
        except OSError as e:
            results[i] = ("error", str(e))
            return
        if s.selected_alpn_protocol() != "h2":
            results[i] = ("error", f"ALPN chose {s.selected_alpn_protocol()!r}, not h2")
            s.close()
            return
        t0 = time.monotonic()
        goaway = False
        try:
            s.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + h2_frame(4, 0, 0))
            n = 0
            next_ping = time.monotonic()
            while time.monotonic() - t0 < a.duration:
                s.settimeout(max(0.01, next_ping - time.monotonic()))
                try:
                    data = s.recv(65536)
                    if not data:
                        results[i] = ("closed", time.monotonic() - t0, "GOAWAY" if goaway else "EOF")
                        return
                    # frame type 7 = GOAWAY; a crude scan is enough for a report
                    goaway = goaway or b"\x07\x00\x00\x00\x00\x00" in data
                except (socket.timeout, ssl.SSLWantReadError):
                    pass
                if time.monotonic() < next_ping:
                    continue
                next_ping += 1.0
                n += 1
                s.sendall(h2_frame(6, 0, 0, struct.pack(">Q", n)))
            results[i] = ("open", time.monotonic() - t0)
        except (OSError, ssl.SSLError) as e:
            results[i] = ("closed", time.monotonic() - t0, "GOAWAY" if goaway else type(e).__name__)
        finally:
            s.close()

    return closing_times("h2-ping", a, worker)


def bad_cert(a):
    """mTLS handshakes presenting another CA's certificate, as fast as one
    thread goes, round-robin over the targets."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.load_cert_chain(a.cert, a.key)
    targets = []
    for t in a.targets:
        host, _, port = t.rpartition(":")
        targets.append((loopback(host.strip("[]")), int(port)))
    start = time.monotonic()
    attempts = refused = accepted = 0
    while time.monotonic() - start < a.duration and attempts < MAX_BAD_CERT_ATTEMPTS:
        host, port = targets[attempts % len(targets)]
        attempts += 1
        try:
            raw = socket.create_connection((host, port), timeout=2)
        except OSError:
            refused += 1
            continue
        try:
            s = ctx.wrap_socket(raw, server_hostname="localhost")
            s.settimeout(2)
            s.sendall(b"\x00")
            if s.recv(1) == b"":
                refused += 1
            else:
                accepted += 1
            s.close()
        except (OSError, ssl.SSLError):
            refused += 1
        finally:
            raw.close()
    return {
        "attack": "bad-cert",
        "attempts": attempts,
        "refused": refused,
        "accepted": accepted,
        "rate_per_s": round(attempts / max(time.monotonic() - start, 0.001)),
    }


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    for name in ("idle-tcp", "slow-body", "h2-ping"):
        q = sub.add_parser(name)
        q.add_argument("host")
        q.add_argument("port", type=int)
        q.add_argument("--count", type=int, default=16)
        q.add_argument("--duration", type=float, default=20)
    q = sub.add_parser("bad-cert")
    q.add_argument("targets", nargs="+", help="HOST:PORT of mTLS servers")
    q.add_argument("--cert", required=True)
    q.add_argument("--key", required=True)
    q.add_argument("--duration", type=float, default=20)
    a = p.parse_args()
    if a.duration > MAX_DURATION:
        sys.exit(f"--duration {a.duration} exceeds the {MAX_DURATION:.0f} s bound")
    if hasattr(a, "count"):
        if not 1 <= a.count <= MAX_CONNECTIONS:
            sys.exit(f"--count {a.count} must be between 1 and {MAX_CONNECTIONS}")
        loopback(a.host)
    run = {"idle-tcp": idle_tcp, "slow-body": slow_body, "h2-ping": h2_ping, "bad-cert": bad_cert}[a.cmd]
    print(json.dumps(run(a)), flush=True)


if __name__ == "__main__":
    main()
