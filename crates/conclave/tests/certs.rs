//! `conclave certs` and `conclave content` as a user runs them, checked with
//! outside tools (openssl).

use std::path::Path;
use std::process::Command;

mod common;
use common::conclave;

fn openssl(args: &[&str], dir: &Path) -> String {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl must be installed (scripts/test.sh installs it)");
    assert!(
        out.status.success(),
        "openssl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn mode(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

/// Every file under `dir`, relative to it, sorted.
fn tree(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p.strip_prefix(dir).unwrap().display().to_string());
            }
        }
    }
    out.sort();
    out
}

#[test]
fn certs_verify_with_openssl_and_keys_are_private() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("certs");
    let st = conclave().args(["certs", "--out"]).arg(&out).status().unwrap();
    assert!(st.success());
    let roles = conclave_rpc::Role::ALL.map(conclave_rpc::Role::as_str);
    for name in roles {
        let v = openssl(
            &["verify", "-CAfile", "ca/root.crt", &format!("{name}/{name}.crt")],
            &out,
        );
        assert_eq!(v.trim(), format!("{name}/{name}.crt: OK"));
        // Each process directory trusts the same CA.
        assert_eq!(
            std::fs::read(out.join(name).join("root.crt")).unwrap(),
            std::fs::read(out.join("ca/root.crt")).unwrap()
        );
    }
    let v = openssl(&["verify", "-CAfile", "ca/root.crt", "site/server.crt"], &out);
    assert_eq!(v.trim(), "site/server.crt: OK");
    assert_eq!(mode(&out.join("site/server.key")), 0o600);
    let text = openssl(&["x509", "-in", "site/server.crt", "-noout", "-text"], &out);
    assert!(
        text.contains("Public-Key: (2048 bit)"),
        "RSA-2048 site key by default"
    );
    assert!(text.contains("DNS:localhost") && text.contains("IP Address:127.0.0.1"));
    let text = openssl(
        &["x509", "-in", "keyserver/keyserver.crt", "-noout", "-text"],
        &out,
    );
    assert!(text.contains("DNS:keyserver"));
    assert!(
        text.contains("URI:spiffe://conclave/tenant/default/role/keyserver"),
        "{text}"
    );
    assert!(text.contains("TLS Web Server Authentication") && text.contains("TLS Web Client Authentication"));
    // the key matches the certificate
    let a = openssl(&["x509", "-in", "site/server.crt", "-noout", "-pubkey"], &out);
    let b = openssl(&["pkey", "-in", "site/server.key", "-pubout"], &out);
    assert_eq!(a, b);
}

#[test]
fn certs_layout_keeps_the_ca_key_apart_and_one_private_directory_per_identity() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("certs");
    common::certs(&out, &["--tenant", "acme", "--site-key", "ecdsa-p256"]);
    let mut want = vec![
        "ca/root.crt".to_string(),
        "ca/root.key".into(),
        "site/server.crt".into(),
        "site/server.key".into(),
    ];
    let dirs = [
        ("fileserver", "fileserver"),
        ("memserver", "memserver"),
        ("keyserver", "keyserver"),
        ("edge", "edge"),
        ("client", "client"),
        ("edge@acme", "edge"),
        ("client@acme", "client"),
    ];
    for (dir, role) in dirs {
        for f in [
            "root.crt".to_string(),
            format!("{role}.crt"),
            format!("{role}.key"),
        ] {
            want.push(format!("{dir}/{f}"));
        }
        assert_eq!(mode(&out.join(dir)), 0o700, "{dir}/ must be 0700");
        assert_eq!(mode(&out.join(dir).join(format!("{role}.key"))), 0o600);
    }
    want.sort();
    assert_eq!(tree(&out), want, "exactly these files, root.key only in ca/");
    assert_eq!(mode(&out.join("ca")), 0o700);
    assert_eq!(mode(&out.join("ca/root.key")), 0o600);
    assert_eq!(mode(&out.join("site")), 0o700);
    let text = openssl(&["x509", "-in", "edge@acme/edge.crt", "-noout", "-text"], &out);
    assert!(
        text.contains("DNS:edge") && text.contains("URI:spiffe://conclave/tenant/acme/role/edge"),
        "{text}"
    );

    // One more identity from the (offline) CA, into another directory.
    let more = tmp.path().join("more");
    common::certs(
        &more,
        &["--ca", out.join("ca").to_str().unwrap(), "--issue", "edge@beta"],
    );
    assert_eq!(
        tree(&more),
        ["edge@beta/edge.crt", "edge@beta/edge.key", "edge@beta/root.crt"]
    );
    assert_eq!(mode(&more.join("edge@beta")), 0o700);
    let v = openssl(
        &["verify", "-CAfile", "ca/root.crt", "../more/edge@beta/edge.crt"],
        &out,
    );
    assert!(v.trim().ends_with(": OK"), "{v}");
    // --issue without --ca, and a bad identity, are refused by name.
    let o = conclave()
        .args(["certs", "--issue", "edge@beta", "--out"])
        .arg(&more)
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("--ca"));
    let o = conclave()
        .args(["certs", "--ca", "x", "--issue", "edge@Beta", "--out"])
        .arg(&more)
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("bad tenant name"));
}

#[test]
fn certs_refuse_to_overwrite_without_force() {
    let tmp = tempfile::tempdir().unwrap();
    assert!(conclave()
        .args(["certs", "--out"])
        .arg(tmp.path())
        .status()
        .unwrap()
        .success());
    let before = std::fs::read(tmp.path().join("ca/root.crt")).unwrap();
    let out = conclave()
        .args(["certs", "--out"])
        .arg(tmp.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("already exists") && err.contains("--force"), "{err}");
    assert_eq!(
        std::fs::read(tmp.path().join("ca/root.crt")).unwrap(),
        before,
        "nothing overwritten"
    );
    assert!(conclave()
        .args(["certs", "--force", "--site-key", "ecdsa-p256", "--out"])
        .arg(tmp.path())
        .status()
        .unwrap()
        .success());
    assert_ne!(std::fs::read(tmp.path().join("ca/root.crt")).unwrap(), before);
    let text = openssl(&["x509", "-in", "site/server.crt", "-noout", "-text"], tmp.path());
    assert!(text.contains("prime256v1") || text.contains("P-256"), "{text}");
}

#[test]
fn content_has_the_seed_sizes_and_pattern() {
    let tmp = tempfile::tempdir().unwrap();
    let st = conclave()
        .args(["content", "--size", "odd.bin=27", "--out"])
        .arg(tmp.path())
        .status()
        .unwrap();
    assert!(st.success());
    for (name, size) in [
        ("1k.txt", 1024),
        ("10k.txt", 10240),
        ("100k.txt", 102400),
        ("1m.txt", 1048576),
        ("odd.bin", 27),
    ] {
        let data = std::fs::read(tmp.path().join(name)).unwrap();
        assert_eq!(data.len(), size, "{name}");
        assert!(
            data.iter().enumerate().all(|(i, &b)| b == b'a' + (i % 26) as u8),
            "{name} pattern"
        );
    }
    assert!(std::fs::read_to_string(tmp.path().join("index.html"))
        .unwrap()
        .contains("<html>"));
    assert!(tmp.path().join("50x.html").exists());
}

#[test]
fn bad_arguments_get_clear_errors() {
    let out = conclave()
        .args(["content", "--size", "x=abc", "--out", "/tmp/never"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("BYTES must be a whole number"));
    let out = conclave()
        .args(["certs", "--out", "/tmp/x", "--site-key", "dsa"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown site key type"));
    let out = conclave().args(["nonsense"]).output().unwrap();
    assert!(!out.status.success());
    let out = conclave()
        .args(["certs", "--out", "/tmp/x", "--bogus-flag"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--bogus-flag"));
}
