//! `conclave edge --check` finds, before a start, what would stop it: a key
//! that is not its certificate's (a file, or the key server's), a secret
//! readable by others, a held port, a WAF rule that does not load; every
//! problem at once, each naming its file and line; `ok` otherwise.
#![cfg(all(feature = "edge", feature = "keys", feature = "waf"))]

mod common;

use common::pki::{KeyType, Pki};
use common::{conclave, free_port};
use std::path::Path;
use std::process::Output;

/// `conclave edge --config DIR/edge.toml --check` of `toml`.
fn check(dir: &Path, toml: &str) -> Output {
    let cfg = dir.join("edge.toml");
    std::fs::write(&cfg, toml).unwrap();
    conclave()
        .args(["edge", "--config", &cfg.display().to_string(), "--check"])
        .output()
        .unwrap()
}

/// A standalone site on `port` with `tls` as its `[server.tls]` lines.
fn site(port: u16, tls: &str) -> String {
    format!("[[server]]\nlisten = \"127.0.0.1:{port}\"\nmode = \"standalone\"\nroot = \"html\"\n[server.tls]\n{tls}\n")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn check_lists_a_mismatched_key_a_held_port_and_a_bad_waf_line_at_once() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    std::fs::create_dir_all(d.join("html")).unwrap();
    let pki = Pki::new(&d.join("pki"));
    let (a_crt, a_key) = pki.leaf("a", "a.example", &["a.example"], KeyType::Ecdsa);
    let (_, b_key) = pki.leaf("b", "b.example", &["b.example"], KeyType::Ecdsa);
    let free = free_port();
    let good = site(
        free,
        &format!(
            "certificate = \"{}\"\nkey = \"{}\"",
            a_crt.display(),
            a_key.display()
        ),
    );
    let out = check(d, &good);
    assert!(out.status.success(), "{}", stderr(&out));
    let cfg = d.join("edge.toml");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("{}: ok (1 site(s), 1 worker(s))\n", cfg.display())
    );

    // Three problems in three places.
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let held_port = held.local_addr().unwrap().port();
    std::fs::write(
        d.join("waf.conf"),
        "# rules\nSecRuleEngine On\nSecHashEngine On\n",
    )
    .unwrap();
    let toml = format!(
        "{}{}[server.waf]\nrules = \"waf.conf\"\n",
        site(
            free,
            &format!(
                "certificate = \"{}\"\nkey = \"{}\"",
                a_crt.display(),
                b_key.display()
            )
        ),
        site(
            held_port,
            &format!(
                "certificate = \"{}\"\nkey = \"{}\"",
                a_crt.display(),
                a_key.display()
            )
        ),
    );
    let out = check(d, &toml);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("3 problem(s) found"), "{err}");
    assert!(
        err.contains(&format!(
            "  {}: this key does not match the certificate {} (their public keys differ)",
            b_key.display(),
            a_crt.display()
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "  {}:9: port {held_port} (listen 127.0.0.1:{held_port}) is held by another process (pid {}, ",
            cfg.display(),
            std::process::id()
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "  {}:3: SecHashEngine: unsupported: directive",
            d.join("waf.conf").display()
        )),
        "{err}"
    );
    drop(held);

    // A chain that does not parse, and a stapled OCSP file that is not DER.
    std::fs::write(
        d.join("junk.crt"),
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    std::fs::write(d.join("stale.ocsp"), "not DER").unwrap();
    let out = check(
        d,
        &site(
            free,
            &format!(
                "certificate = \"junk.crt\"\nkey = \"{}\"\n[[server.tls.certificates]]\ncertificate = \"{}\"\nkey = \"{}\"\nocsp_staple = \"stale.ocsp\"",
                a_key.display(),
                a_crt.display(),
                a_key.display()
            ),
        ),
    );
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("2 problem(s) found"), "{err}");
    assert!(
        err.contains(&format!(
            "  {}: certificate 1 of the chain does not parse",
            d.join("junk.crt").display()
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "  {}: not a DER OCSP response",
            d.join("stale.ocsp").display()
        )),
        "{err}"
    );

    // A key others may read is refused as a start refuses it.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&a_key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = check(d, &good);
    common::assert_refused_as_readable(&out, &a_key, "0644");
}

#[test]
fn check_names_a_key_server_key_that_is_not_the_certificates() {
    let tmp = common::edge::dir_with_certs();
    let d = tmp.path();
    std::fs::create_dir_all(d.join("html")).unwrap();
    let pki = Pki::new(&d.join("pki"));
    let (a_crt, _) = pki.leaf("a", "a.example", &["a.example"], KeyType::Ecdsa);
    let (_, b_key) = pki.leaf("b", "b.example", &["b.example"], KeyType::Ecdsa);
    let keys = d.join("keys");
    std::fs::create_dir_all(&keys).unwrap();
    std::fs::rename(&b_key, keys.join("site.key")).unwrap();
    let (_ks, kport) = common::start_keyserver(d, &keys, &d.join("certs"), &[]);
    let port = free_port();
    let toml = site(
        port,
        &format!(
            "certificate = \"{}\"\nkeyserver = \"tcp://127.0.0.1:{kport}\"\nkey_name = \"site\"\ncerts = \"certs\"",
            a_crt.display()
        ),
    );
    let out = check(d, &toml);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains(&format!(
            "  {}:7: key \"site\" for certificate {}: key server tcp://127.0.0.1:{kport}: certificate does not match key \"site\" on the key server",
            d.join("edge.toml").display(),
            a_crt.display()
        )),
        "{err}"
    );
    // A name the key server does not hold is named too.
    let toml = toml.replace("key_name = \"site\"", "key_name = \"other\"");
    let out = check(d, &toml);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("key \"other\" for certificate"),
        "{}",
        stderr(&out)
    );
}
