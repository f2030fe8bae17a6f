//! `conclave mount` as NGINX uses it (issue 19): Debian nginx with its
//! `root` and `proxy_cache_path` on a FUSE mount of a vericrypt image served
//! by `conclave fileserver`. Files come back byte-identical, cache files land
//! inside the image, `conclave fsck` is clean afterwards, and a flipped bit
//! in a file's data block makes nginx answer an error status, not wrong
//! bytes. Also the mount itself: errno mapping, --read-only, SIGTERM.
#![cfg(feature = "mount")]

mod common;

use common::{conclave, flip_bit, free_port, run_ok, signal, wait_exit, wait_port, wait_until, Proc};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// Cheap Argon2id so the tests stay fast (recorded in the image header).
const FAST_KDF: [&str; 4] = ["--kdf-memory-kib", "8192", "--kdf-passes", "1"];

/// Linux errnos the mount must give (no libc in this crate's tests).
const ENOENT: i32 = 2;
const EACCES: i32 = 13;
const EROFS: i32 = 30;
const ENOTEMPTY: i32 = 39;

/// The files served, by size.
const SIZES: [(&str, usize); 5] = [
    ("1k", 1024),
    ("10k", 10 * 1024),
    ("100k", 100 * 1024),
    ("300k", 300 * 1024),
    ("1m", 1024 * 1024),
];

/// Bytes that differ at every offset of a file and between files.
fn body(seed: usize, len: usize) -> Vec<u8> {
    let mut x = 0x9e37_79b9_7f4a_7c15u64 ^ seed as u64;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn s(p: &Path) -> String {
    p.display().to_string()
}

/// A directory with certificates, the image's tree, a vericrypt image of it
/// and a plain twin (same layout, readable by debugfs, to find a file's blocks).
struct Site {
    dir: tempfile::TempDir,
}

impl Site {
    fn new() -> Site {
        let dir = tempfile::tempdir().unwrap();
        let site = Site { dir };
        common::certs(&site.p("certs"), &[]);
        let top = site.p("tree");
        for d in ["html", "cache", "secret"] {
            std::fs::create_dir_all(top.join(d)).unwrap();
        }
        for (i, (name, len)) in SIZES.iter().enumerate() {
            std::fs::write(top.join(format!("html/{name}.bin")), body(i, *len)).unwrap();
        }
        std::fs::write(top.join("secret/s.txt"), b"not for this identity\n").unwrap();
        std::fs::create_dir_all(top.join("links")).unwrap();
        for (link, target) in [
            ("to_1k", "../html/1k.bin"),
            ("html", "../html"),
            ("dangling", "nowhere"),
        ] {
            std::os::unix::fs::symlink(target, top.join("links").join(link)).unwrap();
        }
        std::fs::create_dir_all(site.p("origin")).unwrap();
        for (i, (name, len)) in SIZES.iter().enumerate() {
            std::fs::write(site.p(&format!("origin/o{name}.bin")), body(100 + i, *len)).unwrap();
        }
        conclave_testkit::write_private(site.p("secret"), b"a secret from a file\n");
        for device in ["vericrypt", "std"] {
            let (t, img, secret) = (
                s(&top),
                s(&site.p(&format!("{device}.img"))),
                s(&site.p("secret")),
            );
            let mut args = vec!["mkfs", "--device", device, "--size", "32M"];
            if device != "std" {
                args.extend(["--secret-file", &secret]);
                args.extend(FAST_KDF);
            }
            args.extend([t.as_str(), img.as_str()]);
            run_ok(conclave().args(&args));
        }
        site
    }

    fn p(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `conclave fileserver` on the vericrypt image with `grants`.
    fn fileserver(&self, grants: &[&str]) -> (Proc, String) {
        let port = free_port();
        let url = format!("tcp://127.0.0.1:{port}");
        let (img, tree, secret, certs) = (
            s(&self.p("vericrypt.img")),
            s(&self.p("vericrypt.img.tree")),
            s(&self.p("secret")),
            s(&self.p("certs")),
        );
        let mut args = vec![
            "fileserver",
            "--image",
            &img,
            "--device",
            "vericrypt",
            "--tree",
            &tree,
            "--secret-file",
            &secret,
            "--listen",
            &url,
            "--certs",
            &certs,
        ];
        for g in grants {
            args.extend(["--grant", g]);
        }
        let p = common::start_logged(self.dir.path(), "fileserver", &args);
        wait_port(port);
        (p, url)
    }

    /// `conclave mount` of `url` at `mnt` (created), waited for until mounted.
    fn mount(&self, url: &str, mnt: &Path, extra: &[&str]) -> Proc {
        std::fs::create_dir_all(mnt).unwrap();
        let log = std::fs::File::create(self.p(&format!(
            "mount-{}.log",
            mnt.file_name().unwrap().to_string_lossy()
        )))
        .unwrap();
        let child = conclave()
            .args(["mount", "--server", url, "--certs", &s(&self.p("certs"))])
            .args(extra)
            .arg(mnt)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let p = common::server(child);
        assert!(
            wait_until(Duration::from_secs(15), || mounted(mnt)),
            "{} was not mounted",
            mnt.display()
        );
        p
    }

    /// `conclave fsck` of the vericrypt image; its stdout.
    fn fsck(&self) -> String {
        let out = run_ok(conclave().args([
            "fsck",
            "--device",
            "vericrypt",
            "--secret-file",
            &s(&self.p("secret")),
            "--scratch",
            &s(self.dir.path()),
            &s(&self.p("vericrypt.img")),
        ]));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The first data block of `path` in the image (from the plain twin).
    fn first_block(&self, path: &str) -> u64 {
        let out = run_ok(
            Command::new("debugfs")
                .arg("-R")
                .arg(format!("blocks {path}"))
                .arg(self.p("std.img")),
        );
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .next()
            .and_then(|w| w.parse().ok())
            .unwrap_or_else(|| panic!("debugfs printed no block for {path}"))
    }
}

/// Whether a FUSE file system is mounted at `mnt` (from /proc/self/mountinfo).
fn mounted(mnt: &Path) -> bool {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let want = s(mnt);
    info.lines().any(|l| {
        let f: Vec<&str> = l.split(' ').collect();
        f.get(4) == Some(&want.as_str()) && l.contains(" - fuse")
    })
}

/// Stops a mount with SIGTERM: it must exit 0 and leave nothing mounted.
fn unmount(mut p: Proc, mnt: &Path) {
    assert!(signal(p.id() as i64, "TERM"));
    let st = wait_exit(&mut p, Duration::from_secs(15));
    assert!(st.success(), "conclave mount exited with {st}");
    assert!(!mounted(mnt), "{} still mounted", mnt.display());
}

fn errno<T: std::fmt::Debug>(r: std::io::Result<T>) -> i32 {
    r.expect_err("expected an error")
        .raw_os_error()
        .expect("an errno")
}

/// nginx serving `root` and caching the origin at `cache`, its process
/// group killed on drop.
fn start_nginx(dir: &Path, port: u16, root: &Path, cache: &Path, origin: u16) -> Proc {
    let conf = format!(
        "{preamble} sendfile on;\n\
         proxy_cache_path {c} levels=1:2 keys_zone=MOUNT:1m max_size=50m inactive=60m use_temp_path=off;\n\
         server {{\n  listen 127.0.0.1:{port};\n  root {r};\n\
           location /p/ {{\n   proxy_pass http://127.0.0.1:{origin}/;\n   proxy_cache MOUNT;\n\
            proxy_cache_valid 200 60m;\n   add_header X-Cache-Status $upstream_cache_status;\n  }}\n }}\n}}\n",
        preamble = common::nginx::preamble(dir, 2),
        c = s(cache),
        r = s(root),
    );
    common::nginx::start(dir, &conf, &[port])
}

/// `curl` of `url`: (status, headers, body).
fn curl(url: &str, out: &Path) -> (u16, String, Vec<u8>) {
    let _ = std::fs::remove_file(out);
    let o = Command::new("curl")
        .args(["-s", "-D", "-", "-o"])
        .arg(out)
        .args(["-w", "\n%{http_code}", url])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    let (head, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    let body = std::fs::read(out).unwrap_or_default();
    (code.trim().parse().unwrap_or(0), head.to_ascii_lowercase(), body)
}

/// Every file name under `dir` (not following into `skip`).
fn walk(dir: &Path, skip: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p == skip {
            continue;
        }
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            walk(&p, skip, out);
        } else {
            out.push(p);
        }
    }
}

fn is_cache_key_name(p: &Path) -> bool {
    p.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.len() == 32 && n.bytes().all(|b| b.is_ascii_hexdigit()))
}

#[test]
fn nginx_serves_and_caches_through_a_mounted_vericrypt_image() {
    common::nginx::require(&["curl", "debugfs"]);
    let site = Site::new();
    let mnt = site.p("mnt");
    let origin_port = free_port();
    let _origin = common::start_logged(
        site.dir.path(),
        "origin",
        &[
            "origin",
            "--root",
            &s(&site.p("origin")),
            "--listen",
            &format!("127.0.0.1:{origin_port}"),
        ],
    );
    wait_port(origin_port);
    let out = site.p("body");

    // Phase 1: serve and cache, then stop everything and check the image.
    {
        let (mut fs, url) = site.fileserver(&["client:rw:/"]);
        let mount = site.mount(&url, &mnt, &["--allow-other"]);
        let port = free_port();
        let nginx = start_nginx(
            &site.p("nginx"),
            port,
            &mnt.join("html"),
            &mnt.join("cache"),
            origin_port,
        );
        for (i, (name, len)) in SIZES.iter().enumerate() {
            let (code, _, got) = curl(&format!("http://127.0.0.1:{port}/{name}.bin"), &out);
            assert_eq!(code, 200, "/{name}.bin");
            assert_eq!(got.len(), *len, "/{name}.bin length");
            assert!(
                got == body(i, *len),
                "/{name}.bin differs from the file in the image"
            );
        }
        for (i, (name, len)) in SIZES.iter().enumerate() {
            let u = format!("http://127.0.0.1:{port}/p/o{name}.bin");
            let (code, head, got) = curl(&u, &out);
            assert_eq!(code, 200, "{u}");
            assert!(
                head.contains("x-cache-status: miss"),
                "{u}: expected a miss in {head}"
            );
            assert!(
                got == body(100 + i, *len),
                "{u} (miss) differs from the origin's file"
            );
            // The worker that fetched it renames the cache file into place
            // after the client has its bytes; another worker sees it then.
            let mut last = String::new();
            let hit = wait_until(Duration::from_secs(10), || {
                let (code, head, got) = curl(&u, &out);
                assert_eq!(code, 200, "{u}");
                assert!(got == body(100 + i, *len), "{u} differs from the origin's file");
                last = head;
                last.contains("x-cache-status: hit")
            });
            assert!(hit, "{u}: never a hit: {last}");
        }
        // The cache files are inside the image (listed by the file server),
        // and nowhere on the host outside the mount.
        let ls = |p: &str| {
            let o =
                run_ok(conclave().args(["fs", "--server", &url, "--certs", &s(&site.p("certs")), "ls", p]));
            String::from_utf8_lossy(&o.stdout).into_owned()
        };
        let mut in_image = Vec::new();
        walk(&mnt.join("cache"), Path::new("/nonexistent"), &mut in_image);
        let keys: Vec<&PathBuf> = in_image.iter().filter(|p| is_cache_key_name(p)).collect();
        assert_eq!(keys.len(), SIZES.len(), "cache files: {in_image:?}");
        for k in &keys {
            let rel = k.strip_prefix(&mnt).unwrap();
            let parent = format!("/{}", rel.parent().unwrap().display());
            let name = rel.file_name().unwrap().to_string_lossy().into_owned();
            assert!(
                ls(&parent).contains(&name),
                "{name} not listed by `conclave fs ls {parent}`"
            );
        }
        let mut host = Vec::new();
        walk(site.dir.path(), &mnt, &mut host);
        assert!(
            !host.iter().any(|p| is_cache_key_name(p)),
            "cache files on the host: {:?}",
            host.iter().filter(|p| is_cache_key_name(p)).collect::<Vec<_>>()
        );
        drop(nginx);
        unmount(mount, &mnt);
        assert!(signal(fs.id() as i64, "TERM"));
        assert!(wait_exit(&mut fs, Duration::from_secs(15)).success());
    }
    let f = site.fsck();
    assert!(
        f.contains("0 failed verification") && f.contains("e2fsck -fn: clean"),
        "{f}"
    );

    // Phase 2: a flipped bit in the data of /html/10k.bin. nginx answers an
    // error for it (the open fails with EIO), and still serves the rest.
    let block = site.first_block("/html/10k.bin");
    flip_bit(&site.p("vericrypt.img"), (4096 + block * 4096 + 100) * 8 + 3);
    let (_fs, url) = site.fileserver(&["client:rw:/"]);
    let mount = site.mount(&url, &mnt, &["--allow-other"]);
    let port = free_port();
    let nginx = start_nginx(
        &site.p("nginx2"),
        port,
        &mnt.join("html"),
        &mnt.join("cache"),
        origin_port,
    );
    let (code, _, got) = curl(&format!("http://127.0.0.1:{port}/10k.bin"), &out);
    assert_eq!(
        code,
        500,
        "a corrupt file must not be served (got {} bytes)",
        got.len()
    );
    for (i, (name, len)) in SIZES.iter().enumerate().filter(|(_, (n, _))| *n != "10k") {
        let (code, _, got) = curl(&format!("http://127.0.0.1:{port}/{name}.bin"), &out);
        assert_eq!(code, 200, "/{name}.bin");
        assert!(got == body(i, *len), "/{name}.bin differs");
        let u = format!("http://127.0.0.1:{port}/p/o{name}.bin");
        let (code, head, got) = curl(&u, &out);
        assert_eq!(code, 200, "{u}");
        assert!(head.contains("x-cache-status: hit"), "{u}: {head}");
        assert!(got == body(100 + i, SIZES[i].1), "{u} differs");
    }
    drop(nginx);
    unmount(mount, &mnt);
}

#[test]
fn mount_maps_errnos_refuses_writes_read_only_and_unmounts_on_sigterm() {
    let site = Site::new();
    let (_fs, url) = site.fileserver(&["client:ro:/html", "client:rw:/cache"]);
    let mnt = site.p("mnt");
    let mount = site.mount(&url, &mnt, &[]);

    // ENOENT, and EACCES outside the identity's grants (read and write).
    assert_eq!(errno(std::fs::metadata(mnt.join("html/nope"))), ENOENT);
    assert_eq!(errno(std::fs::metadata(mnt.join("secret"))), EACCES);
    assert_eq!(errno(std::fs::read(mnt.join("secret/s.txt"))), EACCES);
    assert_eq!(errno(std::fs::write(mnt.join("html/new"), b"x")), EACCES);
    assert_eq!(std::fs::read(mnt.join("html/1k.bin")).unwrap(), body(0, 1024));

    // Read-write under the rw grant: create, write, read back, truncate,
    // chmod, rename, mkdir, rmdir, unlink; ENOTEMPTY from the server.
    let c = mnt.join("cache");
    std::fs::create_dir(c.join("d")).unwrap();
    std::fs::write(c.join("d/a"), body(7, 200_000)).unwrap();
    assert_eq!(std::fs::read(c.join("d/a")).unwrap(), body(7, 200_000));
    assert_eq!(errno(std::fs::remove_dir(c.join("d"))), ENOTEMPTY);
    {
        use std::io::{Seek, SeekFrom, Write};
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .open(c.join("d/a"))
            .unwrap();
        f.seek(SeekFrom::Start(10)).unwrap();
        f.write_all(b"XYZ").unwrap();
        f.set_len(100).unwrap();
    }
    let mut want = body(7, 100);
    want[10..13].copy_from_slice(b"XYZ");
    assert_eq!(std::fs::read(c.join("d/a")).unwrap(), want);
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(c.join("d/a"), std::fs::Permissions::from_mode(0o600)).unwrap();
    assert_eq!(
        std::fs::metadata(c.join("d/a")).unwrap().permissions().mode() & 0o777,
        0o600
    );
    std::fs::rename(c.join("d/a"), c.join("b")).unwrap();
    assert_eq!(errno(std::fs::metadata(c.join("d/a"))), ENOENT);
    assert_eq!(std::fs::read(c.join("b")).unwrap(), want);
    let mut names: Vec<String> = std::fs::read_dir(&c)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["b", "d"]);
    std::fs::remove_dir(c.join("d")).unwrap();
    std::fs::remove_file(c.join("b")).unwrap();
    assert_eq!(errno(std::fs::remove_file(c.join("b"))), ENOENT);

    // Through the file server, the change is there.
    let o = run_ok(conclave().args([
        "fs",
        "--server",
        &url,
        "--certs",
        &s(&site.p("certs")),
        "ls",
        "/cache",
    ]));
    assert!(String::from_utf8_lossy(&o.stdout).trim().is_empty());

    // A read-only mount beside it: every change is EROFS, reads work.
    let ro = site.p("ro");
    let ro_mount = site.mount(&url, &ro, &["--read-only"]);
    assert_eq!(errno(std::fs::write(ro.join("cache/x"), b"x")), EROFS);
    assert_eq!(errno(std::fs::create_dir(ro.join("cache/y"))), EROFS);
    assert_eq!(
        std::fs::read(ro.join("html/10k.bin")).unwrap(),
        body(1, 10 * 1024)
    );
    unmount(ro_mount, &ro);

    // SIGTERM: exit 0, nothing mounted.
    unmount(mount, &mnt);
    assert_eq!(std::fs::read_dir(&mnt).unwrap().count(), 0);
}

/// The mount's caching (docs/nginx.md, "Caching"): the kernel keeps a file's
/// pages across opens, yet a file rewritten through the mount reads back new
/// after a reopen (even at the same size in the same second), and a file
/// changed on the file server by another client is seen by the first open
/// after `--attr-ttl`, never as a mix of old and new bytes.
#[test]
fn mount_keeps_pages_across_opens_yet_sees_every_change() {
    let site = Site::new();
    let (_fs, url) = site.fileserver(&["client:rw:/"]);
    let mnt = site.p("mnt");
    let mount = site.mount(&url, &mnt, &[]);
    let f = mnt.join("cache/f");
    const LEN: usize = 50_000;

    // Rewritten through the mount, same size, back to back.
    for i in 0..5 {
        std::fs::write(&f, body(20 + i, LEN)).unwrap();
        assert!(
            std::fs::read(&f).unwrap() == body(20 + i, LEN),
            "rewrite {i} not read back"
        );
        assert!(
            std::fs::read(&f).unwrap() == body(20 + i, LEN),
            "rewrite {i} not read back twice"
        );
    }
    // In place through an open writer, while a reader keeps the file open.
    {
        use std::io::{Read, Seek, SeekFrom, Write};
        let mut r = std::fs::File::open(&f).unwrap();
        let mut w = std::fs::OpenOptions::new().write(true).open(&f).unwrap();
        w.seek(SeekFrom::Start(1000)).unwrap();
        w.write_all(b"through the mount").unwrap();
        let mut got = Vec::new();
        r.read_to_end(&mut got).unwrap();
        let mut want = body(24, LEN);
        want[1000..1017].copy_from_slice(b"through the mount");
        assert!(got == want, "an open reader missed a write through the mount");
        assert!(
            std::fs::read(&f).unwrap() == want,
            "a reopen missed a write through the mount"
        );
    }

    // Changed by another client of the file server (same size): the first
    // open after the TTL (1 s) sees it. Each change is made right after a
    // read, in the same second as the mount's check, so the "racy second"
    // rule is what catches the ones that keep the size and timestamps.
    let certs = s(&site.p("certs"));
    let local = site.p("new");
    let mut old = std::fs::read(&f).unwrap();
    for i in 0..3 {
        let want = body(40 + i, LEN);
        std::fs::write(&local, &want).unwrap();
        assert_eq!(std::fs::read(&f).unwrap(), old);
        run_ok(conclave().args([
            "fs",
            "--server",
            &url,
            "--certs",
            &certs,
            "put",
            &s(&local),
            "/cache/f",
        ]));
        let t0 = std::time::Instant::now();
        let seen = wait_until(Duration::from_secs(10), || {
            let got = std::fs::read(&f).unwrap();
            assert!(
                got == want || got == old,
                "change {i}: a mix of old and new bytes"
            );
            got == want
        });
        assert!(seen, "change {i} by another client never seen");
        // The TTL plus a loaded machine's slack.
        assert!(
            t0.elapsed() < Duration::from_secs(4),
            "change {i} seen after {:?}",
            t0.elapsed()
        );
        old = want;
    }

    // Once the file is older than the racy second, reopens within the TTL
    // are answered from the mount's cache, with the kernel's pages.
    std::thread::sleep(Duration::from_millis(2100));
    for _ in 0..5 {
        assert!(std::fs::read(&f).unwrap() == old);
    }
    unmount(mount, &mnt);
    let log = std::fs::read_to_string(site.p("mount-mnt.log")).unwrap();
    let cached: u64 = log
        .split("(cached ")
        .nth(1)
        .and_then(|t| t.split(')').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no FUSE request counts in the mount's log: {log}"));
    assert!(cached >= 3, "{cached} opens from the cache: {log}");
}

/// Names in `dir` that the mount uses for open files unlinked or renamed over.
fn hidden_names(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".conclave_hidden_"))
        .collect()
}

/// POSIX keeps an open file readable after its name is unlinked or renamed
/// over; NGINX relies on it when two workers fill the same cache key and each
/// renames its file over the other's. The files are larger than the mount's
/// read-ahead, so the later reads go to the file server.
#[test]
fn an_open_file_renamed_over_or_unlinked_keeps_its_bytes_until_closed() {
    use std::io::Read;
    let site = Site::new();
    let (_fs, url) = site.fileserver(&["client:rw:/"]);
    let mnt = site.p("mnt");
    let mount = site.mount(&url, &mnt, &[]);
    let dir = mnt.join("cache");
    const LEN: usize = 300_000;
    let (a, b) = (body(60, LEN), body(61, LEN));
    std::fs::write(dir.join("a"), &a).unwrap();
    std::fs::write(dir.join("b"), &b).unwrap();

    // Renamed over while open.
    let mut r = std::fs::File::open(dir.join("a")).unwrap();
    let mut got = vec![0u8; 10];
    r.read_exact(&mut got).unwrap();
    std::fs::rename(dir.join("b"), dir.join("a")).unwrap();
    assert_eq!(hidden_names(&dir).len(), 1, "the open file keeps a hidden name");
    r.read_to_end(&mut got).unwrap();
    assert!(got == a, "a reader lost its file to a rename over it");
    assert!(
        std::fs::read(dir.join("a")).unwrap() == b,
        "the new file is not under the name"
    );
    assert!(!dir.join("b").exists());
    drop(r);
    assert!(
        wait_until(Duration::from_secs(10), || hidden_names(&dir).is_empty()),
        "the hidden file outlived its last close: {:?}",
        hidden_names(&dir)
    );

    // Unlinked while open.
    let mut r = std::fs::File::open(dir.join("a")).unwrap();
    std::fs::remove_file(dir.join("a")).unwrap();
    assert_eq!(errno(std::fs::metadata(dir.join("a"))), ENOENT);
    let mut got = Vec::new();
    r.read_to_end(&mut got).unwrap();
    assert!(got == b, "a reader lost its file to an unlink");
    drop(r);
    assert!(
        wait_until(Duration::from_secs(10), || hidden_names(&dir).is_empty()),
        "the hidden file outlived its last close: {:?}",
        hidden_names(&dir)
    );
    // Not open: removed at once, no hidden name.
    std::fs::write(dir.join("c"), b"c").unwrap();
    std::fs::remove_file(dir.join("c")).unwrap();
    assert!(hidden_names(&dir).is_empty());

    // Stopped while a renamed-over file is still open: the unmount is lazy,
    // the open file dies with the mount, and so does its hidden name.
    std::fs::write(dir.join("d"), &a).unwrap();
    std::fs::write(dir.join("e"), &b).unwrap();
    let held = std::fs::File::open(dir.join("d")).unwrap();
    std::fs::rename(dir.join("e"), dir.join("d")).unwrap();
    assert_eq!(hidden_names(&dir).len(), 1);
    unmount(mount, &mnt);
    drop(held);
    let mount = site.mount(&url, &mnt, &[]);
    assert!(
        hidden_names(&dir).is_empty(),
        "a hidden name outlived its mount: {:?}",
        hidden_names(&dir)
    );
    assert!(std::fs::read(dir.join("d")).unwrap() == b);
    unmount(mount, &mnt);
}

/// Symlinks in the image show as symlinks (FUSE lookups are LSTATs): the
/// kernel reads their targets and follows them, a dangling one is listed and
/// can be read as a link, and new ones can be made through the mount.
#[test]
fn mount_shows_symlinks_as_links_and_follows_them() {
    let site = Site::new();
    let (_fs, url) = site.fileserver(&["client:rw:/"]);
    let mnt = site.p("mnt");
    let mount = site.mount(&url, &mnt, &[]);
    let links = mnt.join("links");
    for name in ["to_1k", "html", "dangling"] {
        let md = std::fs::symlink_metadata(links.join(name)).unwrap();
        assert!(md.file_type().is_symlink(), "{name} is not shown as a symlink");
    }
    assert_eq!(
        std::fs::read_link(links.join("to_1k")).unwrap(),
        PathBuf::from("../html/1k.bin")
    );
    assert!(std::fs::read(links.join("to_1k")).unwrap() == body(0, 1024));
    assert!(std::fs::read(links.join("html/1k.bin")).unwrap() == body(0, 1024));
    assert!(std::fs::metadata(links.join("html")).unwrap().is_dir());
    assert_eq!(errno(std::fs::metadata(links.join("dangling"))), ENOENT);
    let mut names: Vec<String> = std::fs::read_dir(&links)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["dangling", "html", "to_1k"]);

    // Made through the mount: a relative link, read back and followed.
    std::os::unix::fs::symlink("../html/10k.bin", mnt.join("cache/ten")).unwrap();
    assert!(std::fs::symlink_metadata(mnt.join("cache/ten"))
        .unwrap()
        .file_type()
        .is_symlink());
    assert_eq!(
        std::fs::read_link(mnt.join("cache/ten")).unwrap(),
        PathBuf::from("../html/10k.bin")
    );
    assert!(std::fs::read(mnt.join("cache/ten")).unwrap() == body(1, 10 * 1024));
    std::fs::remove_file(mnt.join("cache/ten")).unwrap();
    assert_eq!(errno(std::fs::symlink_metadata(mnt.join("cache/ten"))), ENOENT);
    unmount(mount, &mnt);
}

#[test]
fn mount_refuses_to_start_without_a_reachable_server() {
    let site = Site::new();
    let mnt = site.p("mnt");
    std::fs::create_dir_all(&mnt).unwrap();
    let port = free_port();
    let o = conclave()
        .args([
            "mount",
            "--server",
            &format!("tcp://127.0.0.1:{port}"),
            "--certs",
            &s(&site.p("certs")),
        ])
        .arg(&mnt)
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("is not usable"), "{err}");
    assert!(!mounted(&mnt));
}

/// A base port with the first 80 ports after it free right now (the eval
/// lays its servers out from it).
fn base_port() -> u16 {
    loop {
        let p = free_port();
        if !(1100..=64_900).contains(&p) {
            continue;
        }
        if (0..80).all(|i| std::net::TcpListener::bind(("127.0.0.1", p + i)).is_ok()) {
            return p;
        }
    }
}

/// `conclave eval` runs the nginx-fs-vericrypt preset end to end (stock
/// nginx caching on a vericrypt image through `conclave mount`) and lists
/// nginx-keyless as measured or, when the keyless module is not built, as
/// not run with a warning among the report's first lines.
#[test]
fn eval_runs_nginx_on_a_mounted_vericrypt_image() {
    common::nginx::require(&[]);
    let dir = tempfile::tempdir().unwrap();
    let base = base_port();
    let out = conclave()
        .args([
            "eval",
            "--quiet",
            "--preset",
            "nginx-fs-vericrypt",
            "--preset",
            "nginx-keyless",
        ])
        .args(["--sizes", "1k,100k", "--workers", "1", "-n", "40", "-c", "4"])
        .args(["--base-port", &base.to_string(), "--run-id", "t", "--out"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let run = dir.path().join("t");
    let csv = std::fs::read_to_string(run.join("cells.csv")).unwrap();
    let rows: Vec<&str> = csv
        .lines()
        .filter(|l| l.starts_with("nginx-fs-vericrypt,"))
        .collect();
    assert_eq!(rows.len(), 2, "{csv}");
    for row in &rows {
        assert!(row.contains(",ok,"), "nginx-fs-vericrypt cell not clean: {row}");
    }
    let md = std::fs::read_to_string(run.join("report.md")).unwrap();
    let module = Path::new(common::BIN).with_file_name("libconclave_openssl.so");
    if module.exists() {
        // The provider is built (the engine's crate is in this tree): stock
        // nginx signs through the key server in a clean cell.
        let keyless: Vec<&str> = csv.lines().filter(|l| l.starts_with("nginx-keyless,")).collect();
        assert_eq!(keyless.len(), 2, "{csv}");
        assert!(keyless.iter().all(|r| r.contains(",ok,")), "{csv}");
        assert!(md.starts_with("# conclave evaluation"), "{md}");
    } else {
        let first = md.lines().next().unwrap_or("");
        assert!(
            first.starts_with("**WARNING:") && first.ends_with("not run: nginx-keyless.**"),
            "the missing keyless module must open the report: {first}"
        );
        assert!(
            md.contains("| nginx-keyless |") && md.contains("not available yet:"),
            "{md}"
        );
    }
    // No mount is left behind by the cells.
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !info.contains(&s(dir.path())),
        "a mount under the run is left: {info}"
    );
}

/// `conclave up` with a stock-nginx edge on a vericrypt file server: the
/// mount starts after the file server and before nginx, nginx serves the
/// origin's files through a cache inside the image, and SIGTERM leaves no
/// mount behind.
#[test]
fn up_runs_stock_nginx_with_its_cache_on_a_mounted_image() {
    common::nginx::require(&[]);
    let dir = tempfile::tempdir().unwrap();
    let base = base_port();
    let deploy = dir.path().join("deploy.toml");
    std::fs::write(
        &deploy,
        format!(
            "name = \"nginx-mount\"\n[origin]\nkind = \"conclave\"\nlisten = \"127.0.0.1:{o}\"\n\
             [edge]\nkind = \"nginx\"\nstorage = \"nextfs\"\n[[edge.site]]\nlisten = \"127.0.0.1:{base}\"\n\
             [fileserver]\ndevice = \"vericrypt\"\nlisten = \"127.0.0.1:{f}\"\nkdf = \"cheap\"\n",
            o = base + 20,
            f = base + 70
        ),
    )
    .unwrap();
    let started = common::up::start(&[], &deploy);
    let names: Vec<&str> = started.procs.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(
        names,
        ["fileserver (vericrypt)", "origin", "mount", "edge (nginx)"]
    );
    let mut up = started.proc;
    let mnt = dir.path().join("run/edge/mnt");
    assert!(mounted(&mnt));
    let ca = dir.path().join("certs/ca/root.crt");
    let out = dir.path().join("body");
    for want in ["MISS", "HIT"] {
        let o = Command::new("curl")
            .args(["-s", "-o"])
            .arg(&out)
            .args(["-w", "%{http_code}", "--cacert"])
            .arg(&ca)
            .arg(format!("https://127.0.0.1:{base}/10k.txt"))
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&o.stdout), "200", "{want}");
        assert_eq!(
            std::fs::read(&out).unwrap(),
            std::fs::read(dir.path().join("html/10k.txt")).unwrap()
        );
    }
    let mut cached = Vec::new();
    walk(&mnt.join("cache0"), Path::new("/nonexistent"), &mut cached);
    assert_eq!(
        cached.iter().filter(|p| is_cache_key_name(p)).count(),
        1,
        "{cached:?}"
    );
    assert!(signal(up.id() as i64, "TERM"));
    assert!(wait_exit(&mut up, Duration::from_secs(20)).success());
    assert!(!mounted(&mnt), "the mount outlived `up`");
}
