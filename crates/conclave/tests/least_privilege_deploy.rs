//! `conclave up --users` as root: every process of a keyless deployment
//! runs under its own uid from its own 0700 directory, and the edge's user
//! cannot read the site key (in the key server's directory) or the CA key
//! (in `certs/ca/`, outside the run directory), while the key server's user
//! reads its key and HTTPS still works through the whole conclave.
//!
//! These tests need root (only root starts processes under other uids);
//! run as another user they fail and say so, like the tests that need nginx.

use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

mod common;
use common::{conclave, free_port, signal, wait_exit};

fn require_root() {
    assert!(
        nix_is_root(),
        "this test needs root: `conclave up --users` starts each process under its own uid (run the tests as root)"
    );
}

fn nix_is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| ids(&s, "Uid:"))
        .is_some_and(|u| u[1] == 0)
}

/// The four ids (real, effective, saved, fs) of a `/proc/PID/status` line.
fn ids(status: &str, field: &str) -> Option<Vec<u32>> {
    let line = status.lines().find(|l| l.starts_with(field))?;
    line[field.len()..]
        .split_whitespace()
        .map(|v| v.parse().ok())
        .collect()
}

/// A base port with the first 80 ports after it free right now.
fn base_port() -> u16 {
    loop {
        let p = free_port();
        if !(1100..=64_900).contains(&p) {
            continue;
        }
        if (0..80).all(|i| TcpListener::bind(("127.0.0.1", p + i)).is_ok()) {
            return p;
        }
    }
}

/// `cat FILE` as `uid:gid` with no supplementary groups.
fn cat_as(uid: u32, gid: u32, file: &Path) -> Output {
    Command::new("cat")
        .arg(file)
        .uid(uid)
        .gid(gid)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn assert_denied(uid: u32, gid: u32, file: &Path) {
    assert!(file.exists(), "{} should exist", file.display());
    let out = cat_as(uid, gid, file);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && out.stdout.is_empty() && err.contains("Permission denied"),
        "uid {uid} read {}: {} / {err}",
        file.display(),
        out.status
    );
}

/// A deployment directory the per-process users can traverse (a temp dir is 0700).
fn deploy_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
    dir
}

fn write_keyless(dir: &Path, base: u16, extra_top: &str) -> PathBuf {
    let deploy = dir.join("deploy.toml");
    std::fs::write(
        &deploy,
        format!(
            "name = \"least-privilege\"\n{extra_top}\
             [origin]\nkind = \"conclave\"\nlisten = \"127.0.0.1:{o}\"\n\
             [edge]\nkind = \"conclave\"\nstorage = \"nextfs\"\nshared = \"smdish\"\nkey = \"keyserver\"\n\
             [[edge.site]]\nlisten = \"127.0.0.1:{base}\"\n\
             [keyserver]\nlisten = \"127.0.0.1:{k}\"\n[memserver]\nlisten = \"127.0.0.1:{m}\"\n\
             [fileserver]\ndevice = \"vericrypt\"\nlisten = \"127.0.0.1:{f}\"\nkdf = \"cheap\"\n",
            o = base + 20,
            k = base + 30,
            m = base + 50,
            f = base + 70,
        ),
    )
    .unwrap();
    deploy
}

fn files_under(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            files_under(&p, out);
        } else {
            out.push(p);
        }
    }
}

#[cfg(all(feature = "fs", feature = "mem", feature = "keys", feature = "edge"))]
#[test]
fn up_with_users_keeps_the_site_key_and_the_ca_key_out_of_the_edges_reach() {
    require_root();
    let dir = deploy_dir();
    let base = base_port();
    let deploy = write_keyless(dir.path(), base, "tenant = \"acme\"\nbase_uid = 64100\n");
    let started = common::up::start(&["--users"], &deploy);
    let procs = started.procs.clone();
    let mut up = started.proc;
    let by_name = |n: &str| {
        let p = procs
            .iter()
            .find(|p| p.name.split(' ').next() == Some(n))
            .unwrap_or_else(|| panic!("no {n} in {procs:?}"));
        let (uid, gid) = p
            .ids
            .unwrap_or_else(|| panic!("{n} started without its own uid: {p:?}"));
        (p.pid, uid, gid)
    };
    let (edge_pid, edge_uid, edge_gid) = by_name("edge");
    let (_, key_uid, key_gid) = by_name("keyserver");
    // base_uid + the part's index: fileserver, memserver, keyserver, origin, edge.
    assert_eq!((key_uid, key_gid), (64102, 64102));
    assert_eq!((edge_uid, edge_gid), (64104, 64104));
    let uids: Vec<u32> = procs.iter().map(|p| p.ids.map_or(0, |(u, _)| u)).collect();
    assert_eq!(uids, [64100, 64101, 64102, 64103, 64104], "{procs:?}");

    // The kernel says so too: every id of the edge is its own, no supplementary group.
    let status = std::fs::read_to_string(format!("/proc/{edge_pid}/status")).unwrap();
    assert_eq!(ids(&status, "Uid:").unwrap(), [64104; 4], "{status}");
    assert_eq!(ids(&status, "Gid:").unwrap(), [64104; 4], "{status}");
    let groups = status.lines().find(|l| l.starts_with("Groups:")).unwrap();
    assert_eq!(groups.trim_end(), "Groups:", "{status}");

    // The layout: each process's directory is 0700 and its own.
    let run = dir.path().join("run");
    for (part, uid) in [
        ("fileserver", 64100),
        ("memserver", 64101),
        ("keyserver", 64102),
        ("origin", 64103),
        ("edge", 64104),
    ] {
        let m = std::fs::metadata(run.join(part)).unwrap();
        use std::os::unix::fs::MetadataExt;
        assert_eq!((m.mode() & 0o777, m.uid(), m.gid()), (0o700, uid, uid), "{part}");
    }
    let site_key = run.join("keyserver/keys/server.key");
    let ca_key = dir.path().join("certs/ca/root.key");
    assert!(
        !dir.path().join("certs/site/server.key").exists(),
        "the site key is moved, not copied"
    );
    let mut edge_files = Vec::new();
    files_under(&run.join("edge"), &mut edge_files);
    let (site_bytes, ca_bytes) = (std::fs::read(&site_key).unwrap(), std::fs::read(&ca_key).unwrap());
    for f in &edge_files {
        let b = std::fs::read(f).unwrap();
        assert!(
            b != site_bytes && b != ca_bytes,
            "{} is a secret the edge must not hold",
            f.display()
        );
    }

    // As the edge's user: neither the site key nor the CA key (nor the key server's identity) opens.
    assert_denied(edge_uid, edge_gid, &site_key);
    assert_denied(edge_uid, edge_gid, &ca_key);
    assert_denied(edge_uid, edge_gid, &run.join("keyserver/keyserver.key"));
    assert_denied(edge_uid, edge_gid, &run.join("fileserver/fs.secret"));
    // As the key server's user: its key reads.
    let out = cat_as(key_uid, key_gid, &site_key);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.stdout, site_bytes);
    // ... but not the edge's identity.
    assert_denied(key_uid, key_gid, &run.join("edge/edge.key"));

    // HTTPS through the whole conclave (edge@acme signing on the key server, caching on the file server).
    let ab = conclave()
        .args(["ab", "-n", "20", "-c", "2", "--cacert"])
        .arg(dir.path().join("certs/ca/root.crt"))
        .arg(format!("https://127.0.0.1:{base}/10k.txt"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&ab.stdout);
    assert!(
        text.contains("Failed requests:        0") && text.contains("Document Length:        10240"),
        "{text}{}",
        String::from_utf8_lossy(&ab.stderr)
    );
    signal(up.id().into(), "TERM");
    let status = wait_exit(&mut up, Duration::from_secs(20));
    assert!(status.success(), "up exited with {status}");
}

#[test]
fn up_with_users_as_another_user_is_refused_and_says_why() {
    require_root();
    let dir = deploy_dir();
    let deploy = write_keyless(dir.path(), base_port(), "");
    std::fs::set_permissions(&deploy, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = conclave()
        .arg("up")
        .arg("--users")
        .arg(&deploy)
        .uid(64199)
        .gid(64199)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("needs root") && err.contains("uid 64199"), "{err}");
}
