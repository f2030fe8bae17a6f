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

#[test]
fn certs_verify_with_openssl_and_keys_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("certs");
    let st = conclave().args(["certs", "--out"]).arg(&out).status().unwrap();
    assert!(st.success());
    let roles = conclave_rpc::Role::ALL.map(conclave_rpc::Role::as_str);
    for name in std::iter::once("server").chain(roles) {
        let v = openssl(&["verify", "-CAfile", "root.crt", &format!("{name}.crt")], &out);
        assert_eq!(v.trim(), format!("{name}.crt: OK"));
        let mode = std::fs::metadata(out.join(format!("{name}.key")))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{name}.key must be 0600");
    }
    let text = openssl(&["x509", "-in", "server.crt", "-noout", "-text"], &out);
    assert!(
        text.contains("Public-Key: (2048 bit)"),
        "RSA-2048 site key by default"
    );
    assert!(text.contains("DNS:localhost") && text.contains("IP Address:127.0.0.1"));
    let text = openssl(&["x509", "-in", "keyserver.crt", "-noout", "-text"], &out);
    assert!(text.contains("DNS:keyserver"));
    assert!(text.contains("TLS Web Server Authentication") && text.contains("TLS Web Client Authentication"));
    // the key matches the certificate
    let a = openssl(&["x509", "-in", "server.crt", "-noout", "-pubkey"], &out);
    let b = openssl(&["pkey", "-in", "server.key", "-pubout"], &out);
    assert_eq!(a, b);
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
    let before = std::fs::read(tmp.path().join("root.crt")).unwrap();
    let out = conclave()
        .args(["certs", "--out"])
        .arg(tmp.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("already exists") && err.contains("--force"), "{err}");
    assert_eq!(
        std::fs::read(tmp.path().join("root.crt")).unwrap(),
        before,
        "nothing overwritten"
    );
    assert!(conclave()
        .args(["certs", "--force", "--site-key", "ecdsa-p256", "--out"])
        .arg(tmp.path())
        .status()
        .unwrap()
        .success());
    assert_ne!(std::fs::read(tmp.path().join("root.crt")).unwrap(), before);
    let text = openssl(&["x509", "-in", "server.crt", "-noout", "-text"], tmp.path());
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
