//! The edge's TLS features with real processes and outside clients
//! (`openssl s_client`, `curl`): sites chosen by SNI on one address (file and
//! keyless keys), 421 for a `Host` of another site, RSA and ECDSA
//! certificates on one site chosen by the client's signature algorithms,
//! stapled OCSP responses, `ciphers`/`curves`, `add_header` and `server_tokens`.
#![cfg(all(feature = "edge", feature = "keys"))]

mod common;

use common::edge::{curl, Resp};
use common::pki::{s_client, KeyType, Pki};
use common::{free_port, start_logged, wait_port, Proc};
use std::path::Path;

/// Writes `toml` as `DIR/edge.toml`, checks it with `--check`, starts the
/// edge and waits for `port`.
fn edge(dir: &Path, toml: &str, port: u16) -> Proc {
    let cfg = dir.join("edge.toml");
    std::fs::write(&cfg, toml).unwrap();
    let cfg = cfg.display().to_string();
    common::conclave_ok(&["edge", "--config", &cfg, "--check"]);
    let p = start_logged(dir, "edge", &["edge", "--config", &cfg]);
    wait_port(port);
    p
}

/// `curl` to `https://NAME:PORT/TARGET` with NAME pinned to 127.0.0.1 and the
/// test CA (at `pki/ca.crt`) trusted; `args` before the URL.
fn get(dir: &Path, name: &str, port: u16, target: &str, args: &[&str]) -> Resp {
    let resolve = format!("{name}:{port}:127.0.0.1");
    let ca = dir.join("pki/ca.crt").display().to_string();
    let mut all = vec!["--resolve", resolve.as_str(), "--cacert", ca.as_str()];
    all.extend_from_slice(args);
    curl(dir, &format!("https://{name}:{port}{target}"), &all)
}

/// The `subject=` line `s_client` printed for the server's certificate.
fn subject(out: &str) -> &str {
    out.lines()
        .find(|l| l.starts_with("subject="))
        .unwrap_or_else(|| panic!("no certificate in: {out}"))
}

fn html(dir: &Path, text: &str) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("index.html"), text).unwrap();
}

#[test]
fn two_names_on_one_port_get_their_own_certificate_key_source_and_headers() {
    let tmp = common::edge::dir_with_certs();
    let d = tmp.path();
    let pki = Pki::new(&d.join("pki"));
    let (a_crt, a_key) = pki.leaf("a", "a.example", &["a.example"], KeyType::Rsa);
    let (b_crt, b_key) = pki.leaf("b", "b.example", &["*.b.example"], KeyType::Ecdsa);
    // Site b's key lives only in the key server (keyless), as key "b".
    let keys = d.join("keys");
    std::fs::create_dir_all(&keys).unwrap();
    std::fs::rename(&b_key, keys.join("b.key")).unwrap();
    let (_ks, kport) = common::start_keyserver(d, &keys, &d.join("certs"), &[]);
    html(&d.join("a"), "site a\n");
    html(&d.join("b"), "site b\n");
    let port = free_port();
    let _edge = edge(
        d,
        &format!(
            "worker_threads = 2\n\
             [[server]]\nlisten = \"127.0.0.1:{port}\"\nserver_name = [\"a.example\"]\nmode = \"standalone\"\nroot = \"a\"\n\
             add_header = {{ Strict-Transport-Security = \"max-age=63072000; includeSubDomains\", X-Site = \"a\" }}\n\
             [server.tls]\ncertificate = \"{}\"\nkey = \"{}\"\n\
             [[server]]\nlisten = \"127.0.0.1:{port}\"\nserver_name = [\"*.b.example\"]\nmode = \"standalone\"\nroot = \"b\"\n\
             server_tokens = false\ndefault_server = true\n\
             [server.tls]\ncertificate = \"{}\"\nkeyserver = \"tcp://127.0.0.1:{kport}\"\nkey_name = \"b\"\ncerts = \"certs\"\n",
            a_crt.display(),
            a_key.display(),
            b_crt.display(),
        ),
        port,
    );

    // One port, two certificates, by SNI; no SNI or an unknown name gets
    // the default_server (b), a wildcard matches any name under it.
    assert_eq!(
        subject(&s_client(port, Some("a.example"), &[])),
        "subject=CN = a.example"
    );
    assert_eq!(
        subject(&s_client(port, Some("x.b.example"), &[])),
        "subject=CN = b.example"
    );
    assert_eq!(subject(&s_client(port, None, &[])), "subject=CN = b.example");
    assert_eq!(
        subject(&s_client(port, Some("c.example"), &[])),
        "subject=CN = b.example"
    );

    // curl verifies each certificate for its name and gets each site.
    let a = get(d, "a.example", port, "/", &[]);
    assert_eq!((a.status, a.text().as_str()), (200, "site a\n"));
    assert_eq!(
        a.header("strict-transport-security"),
        Some("max-age=63072000; includeSubDomains")
    );
    assert_eq!(a.header("x-site"), Some("a"));
    assert_eq!(a.header("server"), Some("conclave"));
    let b = get(d, "www.b.example", port, "/", &["--http1.1"]);
    assert_eq!((b.status, b.text().as_str()), (200, "site b\n"));
    assert_eq!(b.header("server"), None, "server_tokens = false");
    assert_eq!(b.header("strict-transport-security"), None);

    // add_header is on errors too (NGINX `always`), and on HEAD (curl -I).
    for args in [&["-I"][..], &["--http1.1", "-I"][..]] {
        let missing = get(d, "a.example", port, "/missing", args);
        assert_eq!(missing.status, 404, "{missing:?}");
        assert_eq!(
            missing.header("strict-transport-security"),
            Some("max-age=63072000; includeSubDomains")
        );
        assert_eq!(missing.header("server"), Some("conclave"));
    }

    // A connection SNI bound to a.example may not carry requests for b.
    for v in ["--http1.1", "--http2"] {
        let wrong = get(d, "a.example", port, "/", &[v, "-H", "Host: www.b.example"]);
        assert_eq!(wrong.status, 421, "{v}");
        assert_eq!(wrong.header("x-site"), Some("a"));
    }
    // With the port in Host, and in another case, the name still matches.
    let ok = get(
        d,
        "a.example",
        port,
        "/",
        &["--http1.1", "-H", &format!("Host: A.Example:{port}")],
    );
    assert_eq!(ok.status, 200);
}

#[test]
fn dual_certificate_site_serves_ecdsa_and_rsa_clients_and_staples_ocsp() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let pki = Pki::new(&d.join("pki"));
    let (rsa_crt, rsa_key) = pki.leaf("rsa", "rsa.example", &["localhost"], KeyType::Rsa);
    let (ec_crt, ec_key) = pki.leaf("ec", "ecdsa.example", &["localhost"], KeyType::Ecdsa);
    let rsa_ocsp = pki.ocsp(&rsa_crt, "rsa");
    let ec_ocsp = pki.ocsp(&ec_crt, "ec");
    html(&d.join("html"), "dual\n");
    let port = free_port();
    let _edge = edge(
        d,
        &format!(
            "[[server]]\nlisten = \"127.0.0.1:{port}\"\nmode = \"standalone\"\nroot = \"html\"\n\
             [server.tls]\ncertificate = \"{}\"\nkey = \"{}\"\nocsp_staple = \"{}\"\n\
             ciphers = [\"TLS13_AES_256_GCM_SHA384\", \"TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384\", \"TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384\"]\n\
             curves = [\"secp384r1\"]\n\
             [[server.tls.certificates]]\ncertificate = \"{}\"\nkey = \"{}\"\nocsp_staple = \"{}\"\n",
            rsa_crt.display(),
            rsa_key.display(),
            rsa_ocsp.display(),
            ec_crt.display(),
            ec_key.display(),
            ec_ocsp.display(),
        ),
        port,
    );
    for version in ["-tls1_2", "-tls1_3"] {
        let ec = s_client(
            port,
            Some("localhost"),
            &[version, "-sigalgs", "ECDSA+SHA256", "-status"],
        );
        assert_eq!(subject(&ec), "subject=CN = ecdsa.example", "{version}: {ec}");
        assert!(ec.contains("Peer signature type: ECDSA"), "{version}: {ec}");
        assert!(
            ec.contains("OCSP Response Status: successful (0x0)"),
            "{version}: {ec}"
        );
        let rsa = s_client(
            port,
            Some("localhost"),
            &[version, "-sigalgs", "RSA-PSS+SHA256", "-status"],
        );
        assert_eq!(subject(&rsa), "subject=CN = rsa.example", "{version}: {rsa}");
        assert!(rsa.contains("Peer signature type: RSA-PSS"), "{version}: {rsa}");
        assert!(
            rsa.contains("OCSP Response Status: successful (0x0)"),
            "{version}: {rsa}"
        );
        // Only the configured suites and group.
        let want = if version == "-tls1_3" {
            "Cipher is TLS_AES_256_GCM_SHA384"
        } else {
            "Cipher is ECDHE-ECDSA-AES256-GCM-SHA384"
        };
        assert!(ec.contains(want), "{version}: {ec}");
        let x25519_only = s_client(port, Some("localhost"), &[version, "-groups", "X25519"]);
        assert!(!x25519_only.contains("subject="), "{version}: {x25519_only}");
    }
}

#[test]
fn prefer_server_ciphers_picks_the_sites_order_instead_of_the_clients() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let pki = Pki::new(&d.join("pki"));
    let (crt, key) = pki.leaf("site", "site.example", &["localhost"], KeyType::Rsa);
    html(&d.join("html"), "order\n");
    // The same suites, ChaCha20 first, on two ports: the server's order
    // decides on the first, the client's on the second (the default).
    let (server_order, client_order) = (free_port(), free_port());
    let site = |port: u16, prefer: bool| {
        format!(
            "[[server]]\nlisten = \"127.0.0.1:{port}\"\nmode = \"standalone\"\nroot = \"html\"\n\
             [server.tls]\ncertificate = \"{}\"\nkey = \"{}\"\n\
             ciphers = [\"TLS13_CHACHA20_POLY1305_SHA256\", \"TLS13_AES_256_GCM_SHA384\", \
             \"TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256\", \"TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384\"]\n\
             prefer_server_ciphers = {prefer}\n",
            crt.display(),
            key.display(),
        )
    };
    let toml = site(server_order, true) + &site(client_order, false);
    let _edge = edge(d, &toml, server_order);
    wait_port(client_order);
    // The client lists AES-256-GCM first, ChaCha20 second.
    let tls13 = [
        "-tls1_3",
        "-ciphersuites",
        "TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256",
    ];
    let tls12 = [
        "-tls1_2",
        "-cipher",
        "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-RSA-CHACHA20-POLY1305",
    ];
    let cipher = |port: u16, args: &[&str]| {
        let out = s_client(port, Some("localhost"), args);
        out.lines()
            .find_map(|l| l.split_once("Cipher is ").map(|(_, c)| c.trim().to_string()))
            .unwrap_or_else(|| panic!("no cipher in: {out}"))
    };
    assert_eq!(cipher(server_order, &tls13), "TLS_CHACHA20_POLY1305_SHA256");
    assert_eq!(cipher(server_order, &tls12), "ECDHE-RSA-CHACHA20-POLY1305");
    assert_eq!(cipher(client_order, &tls13), "TLS_AES_256_GCM_SHA384");
    assert_eq!(cipher(client_order, &tls12), "ECDHE-RSA-AES256-GCM-SHA384");
}
