//! The storage tools as a user runs them: `conclave mkfs` for every device,
//! `conclave fsck` (block verification + `e2fsck -fn`), `conclave mkmerkle`,
//! tampering and rollback seen from the command line, and `bench bd`.
#![cfg(feature = "storage")]

use std::path::PathBuf;
use std::process::Output;

mod common;
use common::flip_bit;

/// Cheap Argon2id so the tests stay fast (recorded in the header).
const FAST_KDF: [&str; 4] = ["--kdf-memory-kib", "8192", "--kdf-passes", "1"];

/// `conclave ARGS...`, its output whether it succeeded or not.
fn conclave(args: &[&str]) -> Output {
    common::conclave().args(args).output().expect("run conclave")
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "conclave failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

struct Site {
    dir: tempfile::TempDir,
}

impl Site {
    fn new() -> Site {
        let dir = tempfile::tempdir().unwrap();
        let content = dir.path().join("content");
        std::fs::create_dir_all(content.join("sub")).unwrap();
        std::fs::write(content.join("index.html"), b"<h1>hello</h1>\n").unwrap();
        let big: Vec<u8> = (0..300_000u32).map(|i| b'a' + (i % 26) as u8).collect();
        std::fs::write(content.join("sub/300k.txt"), big).unwrap();
        conclave_testkit::write_private(dir.path().join("secret"), b"a secret from a file\n");
        Site { dir }
    }

    fn p(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn s(&self, name: &str) -> String {
        self.p(name).display().to_string()
    }

    /// `conclave mkfs` for `device`; returns stdout (the root for tree devices).
    fn mkfs(&self, device: &str) -> String {
        let (img, secret, content) = (
            self.s(&format!("{device}.img")),
            self.s("secret"),
            self.s("content"),
        );
        let mut args = vec!["mkfs", "--device", device, "--size", "8M"];
        if device != "std" {
            args.extend(["--secret-file", &secret]);
            args.extend(FAST_KDF);
        }
        args.extend([content.as_str(), img.as_str()]);
        ok(&conclave(&args))
    }

    fn fsck(&self, device: &str, extra: &[&str]) -> Output {
        let (img, secret, scratch) = (self.s(&format!("{device}.img")), self.s("secret"), self.s(""));
        let mut args = vec!["fsck", "--device", device, "--scratch", &scratch];
        if device != "std" {
            args.extend(["--secret-file", &secret]);
        }
        args.extend(extra);
        args.push(&img);
        conclave(&args)
    }
}

#[test]
fn mkfs_then_fsck_is_clean_on_every_device() {
    let site = Site::new();
    for device in ["std", "crypt", "verity", "vericrypt"] {
        let out = site.mkfs(device);
        if device == "verity" || device == "vericrypt" {
            let root = out.trim();
            assert_eq!(root.len(), 64, "{device}: root line {out:?}");
            assert!(site.p(&format!("{device}.img.tree")).exists());
            let f = ok(&site.fsck(device, &["--expect-root", root]));
            assert!(
                f.contains("0 failed verification") && f.contains("e2fsck -fn: clean"),
                "{f}"
            );
        } else {
            assert!(out.trim().is_empty(), "{device} printed {out:?}");
            let f = ok(&site.fsck(device, &[]));
            assert!(f.contains("e2fsck -fn: clean"), "{f}");
        }
    }
    // The scratch copies are gone.
    let left: Vec<_> = std::fs::read_dir(site.dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name().to_string_lossy().contains("fsck")
                || e.file_name().to_string_lossy().contains("raw-tmp")
        })
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

#[test]
fn fsck_reports_tampering_wrong_secret_and_rollback() {
    let site = Site::new();
    let root = site.mkfs("vericrypt").trim().to_string();
    let img = site.p("vericrypt.img");
    // A flipped ciphertext byte in data block 10: fsck names the block.
    flip_bit(&img, (4096 + 10 * 4096 + 77) * 8 + 4);
    let out = site.fsck("vericrypt", &[]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("failed their integrity check: 10"),
        "{}",
        stderr(&out)
    );
    flip_bit(&img, (4096 + 10 * 4096 + 77) * 8 + 4);
    ok(&site.fsck("vericrypt", &["--expect-root", &root]));
    // Wrong secret.
    conclave_testkit::write_private(site.p("other"), b"not the secret");
    let out = conclave(&[
        "fsck",
        "--device",
        "vericrypt",
        "--secret-file",
        &site.s("other"),
        &site.s("vericrypt.img"),
    ]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("wrong secret"), "{}", stderr(&out));
    // A different expected root (an operator who saw a newer one) refuses the pair.
    let other = "00".repeat(32);
    let out = site.fsck("vericrypt", &["--expect-root", &other]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("differs from the expected root"),
        "{}",
        stderr(&out)
    );
    // Truncated tree.
    let tree = site.p("vericrypt.img.tree");
    let len = std::fs::metadata(&tree).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&tree)
        .unwrap()
        .set_len(len - 32)
        .unwrap();
    let out = site.fsck("vericrypt", &[]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("truncated"), "{}", stderr(&out));
}

#[test]
fn mkmerkle_rebuilds_a_tree_that_fsck_accepts() {
    let site = Site::new();
    site.mkfs("verity");
    let img = site.s("verity.img");
    let secret = site.s("secret");
    std::fs::remove_file(site.p("verity.img.tree")).unwrap();
    let mut args = vec!["mkmerkle", "--device", "verity", "--secret-file", &secret];
    args.extend(FAST_KDF);
    args.push(&img);
    let root = ok(&conclave(&args)).trim().to_string();
    assert_eq!(root.len(), 64);
    ok(&site.fsck("verity", &["--expect-root", &root]));
}

#[test]
fn bad_arguments_get_clear_errors() {
    let site = Site::new();
    let out = conclave(&["mkfs", "--device", "zfs", &site.s("content"), &site.s("x.img")]);
    assert!(stderr(&out).contains("unknown device"), "{}", stderr(&out));
    let out = conclave(&["mkfs", "--device", "crypt", &site.s("content"), &site.s("x.img")]);
    assert!(stderr(&out).contains("needs --secret-file"), "{}", stderr(&out));
    site.mkfs("std");
    let out = conclave(&[
        "mkfs",
        "--device",
        "std",
        "--size",
        "8M",
        &site.s("content"),
        &site.s("std.img"),
    ]);
    assert!(stderr(&out).contains("exists"), "{}", stderr(&out));
}

#[test]
fn bench_bd_runs_and_prints_json() {
    let mut args = vec![
        "bench",
        "bd",
        "--size",
        "2M",
        "--ops",
        "200",
        "--devices",
        "file,std,verity",
        "--json",
    ];
    args.extend(FAST_KDF);
    let out = ok(&conclave(&args));
    assert!(out.trim_start().starts_with('['), "{out}");
    for needle in [
        "\"device\":\"file\"",
        "\"device\":\"verity\"",
        "rand-write+flush",
        "us_per_block",
    ] {
        assert!(out.contains(needle), "{needle} missing in {out}");
    }
}
