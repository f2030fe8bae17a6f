//! Corrupt metadata (issue 18): random bytes of the superblock, group
//! descriptors, bitmaps, inodes, directory blocks and indirect/extent-tree
//! blocks of a std image, located with `debugfs`/`dumpe2fs` (e2fsprogs), one
//! case at a time. The file server must never panic or hang: it refuses to
//! start with a message, or serves, answering each read (under a client
//! timeout) with the right bytes, or an errno, logging "corrupt file
//! system: ..." for EIO; files the corruption did not touch read back exactly.
#![cfg(feature = "fs")]

use conclave_fs::FsClient;
use conclave_rpc::{ClientOptions, Credentials, Endpoint, Role};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

mod common;
use common::{conclave, wait_until, Proc, Rng};

/// Seeded cases; each starts a server on a freshly corrupted copy.
const CASES: u64 = 110;

/// A metadata byte range and the files whose reads it may spoil.
#[derive(Debug, Clone)]
struct Target {
    what: String,
    start: u64,
    len: u64,
    /// `None`: every file (superblock, descriptors); else these paths.
    spoils: Option<Vec<String>>,
}

fn debugfs(image: &Path, req: &str) -> String {
    let out = Command::new("debugfs")
        .args(["-R", req])
        .arg(image)
        .output()
        .unwrap();
    assert!(out.status.success(), "debugfs -R {req:?} failed");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The number after `key` in `text` (`"located at block 4,"` → 4).
fn number_after(text: &str, key: &str) -> Option<u64> {
    let rest = &text[text.find(key)? + key.len()..];
    let rest = rest.trim_start();
    if let Some(hex) = rest.strip_prefix("0x") {
        let end = hex.find(|c: char| !c.is_ascii_hexdigit()).unwrap_or(hex.len());
        return u64::from_str_radix(&hex[..end], 16).ok();
    }
    let end = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
    rest[..end].parse().ok()
}

/// Metadata blocks of `path` from `debugfs stat`: `(IND):155`, `(DIND):..`,
/// `(ETB0):..` (extent-tree blocks, once images have extents).
fn mapping_blocks(image: &Path, path: &str) -> Vec<(String, u64)> {
    let stat = debugfs(image, &format!("stat {path}"));
    let mut v = Vec::new();
    for tok in stat.split([',', ' ', '\n']) {
        let Some(rest) = tok.strip_prefix('(') else {
            continue;
        };
        let Some((label, blk)) = rest.split_once("):") else {
            continue;
        };
        if label.starts_with(|c: char| c.is_ascii_alphabetic()) {
            if let Ok(b) = blk.trim().parse() {
                v.push((label.to_string(), b));
            }
        }
    }
    v
}

/// Every metadata range of the image, with what each may spoil.
fn targets(image: &Path, files: &BTreeMap<String, Vec<u8>>, dirs: &[&str]) -> Vec<Target> {
    let dump = Command::new("dumpe2fs").arg(image).output().unwrap();
    let dump = String::from_utf8_lossy(&dump.stdout).into_owned();
    let inode_size = number_after(&dump, "Inode size:").unwrap();
    let block = number_after(&dump, "Block size:").unwrap();
    // 64 with the 64bit feature (dumpe2fs prints it then), 32 otherwise.
    let desc_size = number_after(&dump, "Group descriptor size:").unwrap_or(32);
    let blocks_per_group = number_after(&dump, "Blocks per group:").unwrap();
    let first_data_block = number_after(&dump, "First block:").unwrap_or(0);
    let mut t = vec![
        Target {
            what: "superblock".into(),
            start: 1024,
            len: 1024,
            spoils: None,
        },
        Target {
            what: "group descriptors".into(),
            start: (first_data_block + 1) * block,
            len: desc_size
                * number_after(&dump, "Block count:")
                    .unwrap()
                    .div_ceil(blocks_per_group),
            spoils: None,
        },
    ];
    for (key, name) in [
        ("Block bitmap at", "block bitmap"),
        ("Inode bitmap at", "inode bitmap"),
    ] {
        let b = number_after(&dump, key).unwrap();
        t.push(Target {
            what: name.into(),
            start: b * block,
            len: block,
            spoils: Some(Vec::new()), // reads do not use bitmaps
        });
    }
    let under = |d: &str| -> Vec<String> {
        let prefix = if d == "/" {
            "/".to_string()
        } else {
            format!("{d}/")
        };
        files.keys().filter(|f| f.starts_with(&prefix)).cloned().collect()
    };
    let all_paths: Vec<(String, Vec<String>, bool)> = dirs
        .iter()
        .map(|d| (d.to_string(), under(d), true))
        .chain(files.keys().map(|f| (f.clone(), vec![f.clone()], false)))
        .collect();
    for (path, spoils, is_dir) in all_paths {
        let imap = debugfs(image, &format!("imap {path}"));
        let b = number_after(&imap, "located at block").unwrap();
        let off = number_after(&imap, "offset").unwrap();
        t.push(Target {
            what: format!("inode of {path}"),
            start: b * block + off,
            len: inode_size.min(160),
            spoils: Some(spoils.clone()),
        });
        for (label, b) in mapping_blocks(image, &path) {
            t.push(Target {
                what: format!("{label} block of {path}"),
                start: b * block,
                len: block,
                spoils: Some(spoils.clone()),
            });
        }
        if is_dir {
            for b in debugfs(image, &format!("blocks {path}")).split_whitespace() {
                t.push(Target {
                    what: format!("directory block of {path}"),
                    start: b.parse::<u64>().unwrap() * block,
                    len: block,
                    spoils: Some(spoils.clone()),
                });
            }
        }
    }
    t
}

fn client(dir: &Path, sock: &Path) -> Arc<FsClient> {
    let creds = Credentials::from_dir(&dir.join("certs"), Role::Client).unwrap();
    let mut opts = ClientOptions::mtls(&creds, Role::FileServer).unwrap();
    // A hang is a failure: every request gets this long.
    opts.io_timeout = Duration::from_secs(10);
    opts.connect_timeout = Duration::from_secs(10);
    FsClient::new(Endpoint::Unix(sock.to_path_buf()), opts)
}

/// The errnos a read of a corrupt file may answer with (the server's status names).
const READ_ERRNOS: [&str; 10] = [
    "EIO",
    "ENOENT",
    "ENOTDIR",
    "EISDIR",
    "ESTALE",
    "ELOOP",
    "EFBIG",
    "EINVAL",
    "ENOTSUP",
    "ENAMETOOLONG",
];

#[test]
fn corrupt_metadata_never_panics_or_hangs_the_server() {
    fuzz(conclave_bd::FsType::Ext2, 0xf0_2218);
}

/// The same on Debian's default ext4 (extents, metadata_csum, 64bit, a journal),
/// with a 600-entry directory indexed by `e2fsck -fyD` (its dx root and leaves are
/// targets; the files' extent roots sit in their inodes, which are targets too).
/// metadata_csum turns every spoiled read into EIO: no wrong bytes.
#[test]
fn corrupt_ext4_metadata_never_panics_or_hangs_the_server() {
    fuzz(conclave_bd::FsType::Ext4, 0xe4_2218);
}

/// `CASES` seeded corruptions of an image of type `fs`.
fn fuzz(fs: conclave_bd::FsType, seed: u64) {
    let ext4 = fs == conclave_bd::FsType::Ext4;
    let tmp = tempfile::tempdir().unwrap();
    common::certs(&tmp.path().join("certs"), &[]);
    let src = tmp.path().join("src");
    let mut files = BTreeMap::new();
    for (d, n) in [("a", 24), ("b", 3), ("c/deep", 2)] {
        std::fs::create_dir_all(src.join(d)).unwrap();
        for i in 0..n {
            let len = if i == 0 { 300_000 } else { 10 + i * 97 };
            let data: Vec<u8> = (0..len).map(|j| (j as u8) ^ (i as u8).wrapping_mul(7)).collect();
            std::fs::write(src.join(d).join(format!("f{i}")), &data).unwrap();
            files.insert(format!("/{d}/f{i}"), data);
        }
    }
    let mut dirs = vec!["/", "/a", "/b", "/c", "/c/deep"];
    if ext4 {
        // A hashed directory (its files are not read back: only its blocks are targets).
        std::fs::create_dir_all(src.join("h")).unwrap();
        for i in 0..600 {
            std::fs::write(src.join(format!("h/entry-with-a-long-name-{i:04}")), b"h").unwrap();
        }
        dirs.push("/h");
    }
    let pristine = tmp.path().join("pristine.img");
    conclave_bd::mke2fs_as(&src, &pristine, 16 << 20, fs).expect("mke2fs (e2fsprogs) must be installed");
    if ext4 {
        let out = Command::new("e2fsck")
            .arg("-fyD")
            .arg(&pristine)
            .output()
            .unwrap();
        assert!(out.status.code().unwrap_or(8) < 4, "e2fsck -fyD: {out:?}");
    }
    let targets = targets(&pristine, &files, &dirs);
    assert!(targets.len() > 40, "{} targets", targets.len());
    let image = tmp.path().join("fs.img");
    let sock = tmp.path().join("fs.sock");
    let log = tmp.path().join("fs.log");
    let mut rng = Rng(seed);
    let (mut refused, mut eio, mut wrong, mut served) = (0, 0, 0, 0);
    for case in 0..CASES {
        let t = &targets[rng.below(targets.len() as u64) as usize];
        let mut img = std::fs::read(&pristine).unwrap();
        let n = 1 + rng.below(8);
        let mut flipped = Vec::new();
        for _ in 0..n {
            let at = (t.start + rng.below(t.len)) as usize;
            img[at] ^= 1 + rng.below(255) as u8;
            flipped.push(at);
        }
        std::fs::write(&image, &img).unwrap();
        for f in ["fs.img.state", "fs.img.redo"] {
            let _ = std::fs::remove_file(tmp.path().join(f));
        }
        let _ = std::fs::remove_file(&sock);
        let ctx = format!("case {case}: {} bytes of the {} at {flipped:?}", n, t.what);
        let child = conclave()
            .args(["fileserver", "--image"])
            .arg(&image)
            .arg("--listen")
            .arg(format!("unix://{}", sock.display()))
            .arg("--certs")
            .arg(tmp.path().join("certs"))
            .args(["--grant", "client:rw:/"])
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let mut p = Proc::new(child);
        let mut status = None;
        let up = wait_until(Duration::from_secs(30), || {
            status = p.try_wait().unwrap();
            // the socket file appears at bind(), a moment before listen()
            status.is_some() || std::os::unix::net::UnixStream::connect(&sock).is_ok()
        });
        assert!(up, "{ctx}: the server neither started nor exited (hang at open)");
        let stderr = || std::fs::read_to_string(&log).unwrap();
        if let Some(st) = status {
            let e = stderr();
            assert_eq!(
                st.code(),
                Some(1),
                "{ctx}: refused start must exit 1, not crash:\n{e}"
            );
            assert!(!e.contains("panicked"), "{ctx}: {e}");
            assert!(
                e.contains("Error") || e.contains("error"),
                "{ctx}: refusal without a message: {e}"
            );
            refused += 1;
            continue;
        }
        served += 1;
        let c = client(tmp.path(), &sock);
        for (path, want) in &files {
            let spoiled = t.spoils.as_ref().is_none_or(|s| s.contains(path));
            // One bounded request (a corrupt size could claim terabytes of holes).
            match c.read_path(path, 0, want.len() + 4096).map(|(_, b)| b.to_vec()) {
                Ok(got) if got == *want => {}
                Ok(_) if spoiled => wrong += 1,
                Ok(got) => panic!("{ctx}: untouched {path} read {} wrong bytes", got.len()),
                Err(e) => {
                    let msg = e.to_string();
                    assert!(spoiled, "{ctx}: untouched {path} failed: {msg}");
                    assert!(
                        READ_ERRNOS.iter().any(|n| msg.contains(n)),
                        "{ctx}: {path}: not an errno from the server (hang or crash?): {msg}"
                    );
                    if msg.contains("EIO") {
                        eio += 1;
                        let e = stderr();
                        assert!(
                            e.contains("corrupt file system:") || e.contains("device error:"),
                            "{ctx}: EIO without a logged reason:\n{e}"
                        );
                    }
                }
            }
        }
        // Writes over corrupt metadata: an error or success, never a crash.
        let _ = c.write(&format!("/new{case}"), b"after corruption");
        let _ = c.sync();
        let _ = c.read_dir("/");
        assert!(
            p.try_wait().unwrap().is_none(),
            "{ctx}: the server died:\n{}",
            stderr()
        );
        assert!(!stderr().contains("panicked"), "{ctx}: {}", stderr());
        drop(p);
    }
    eprintln!(
        "{fs}: {CASES} cases: {refused} refused at start, {served} served; spoiled reads: {eio} EIO, {wrong} wrong bytes"
    );
    assert!(
        served > CASES / 2,
        "most corruptions leave a server that serves: {served}"
    );
    let _: PathBuf = image;
}
