//! The file server as a real process: every operation, concurrent clients
//! checked against a model and `e2fsck -fn`, bad input, crash behaviour.
#![cfg(feature = "fs")]

use conclave_fs::{proto, FsClient, OpenOptions};
use conclave_rpc::Role;
use conclave_rpc::{BodyWriter, ClientOptions, Connection, Credentials, Endpoint, Status};
use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

mod common;
use common::{conclave, flip_bit, signal, wait_until, Proc};

/// A running `conclave fileserver`, killed on drop.
struct FsProc {
    proc: Proc,
    sock: PathBuf,
}

impl FsProc {
    fn start(dir: &Path, image: &Path, extra: &[&str]) -> FsProc {
        let sock = dir.join(format!("fs-{}.sock", std::process::id()));
        let _ = std::fs::remove_file(&sock);
        let child = conclave()
            .args(["fileserver", "--image"])
            .arg(image)
            .arg("--listen")
            .arg(format!("unix://{}", sock.display()))
            .arg("--certs")
            .arg(dir.join("certs"))
            // These tests exercise the protocol, not the grants
            // (least_privilege_fs.rs does): both test identities may do all.
            .args(["--grant", "client:rw:/", "--grant", "edge:rw:/"])
            .args(extra)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let p = FsProc {
            proc: Proc::new(child),
            sock,
        };
        assert!(
            wait_until(Duration::from_secs(20), || p.sock.exists()),
            "file server did not start"
        );
        p
    }

    fn endpoint(&self) -> Endpoint {
        Endpoint::Unix(self.sock.clone())
    }

    /// SIGTERM, wait, return stdout.
    fn stop(self) -> String {
        let c = self.proc.into_child();
        signal(c.id().into(), "TERM");
        let out = c.wait_with_output().unwrap();
        assert!(out.status.success(), "file server exited with {}", out.status);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// SIGKILL: a crash.
    fn kill9(self) {
        drop(self.proc);
    }
}

fn setup() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    common::certs(&tmp.path().join("certs"), &[]);
    let src = tmp.path().join("src");
    std::fs::create_dir_all(src.join("html/sub")).unwrap();
    std::fs::write(src.join("html/index.html"), b"<html>hi</html>").unwrap();
    std::fs::write(src.join("html/sub/big.bin"), vec![7u8; 300_000]).unwrap();
    let image = tmp.path().join("fs.img");
    conclave_bd::mke2fs(&src, &image, 32 << 20).expect("mke2fs (e2fsprogs) must be installed");
    (tmp, image)
}

fn client(dir: &Path, ep: Endpoint, role: Role) -> Arc<FsClient> {
    let creds = Credentials::from_dir(&dir.join("certs"), role).unwrap();
    FsClient::new(ep, ClientOptions::mtls(&creds, Role::FileServer).unwrap())
}

fn e2fsck_clean(image: &Path) {
    let out = Command::new("e2fsck").arg("-fn").arg(image).output().unwrap();
    assert!(
        out.status.success(),
        "e2fsck -fn failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn every_operation_round_trips() {
    let (tmp, image) = setup();
    let srv = FsProc::start(tmp.path(), &image, &[]);
    let c = client(tmp.path(), srv.endpoint(), Role::Client);
    assert_eq!(c.read("/html/index.html").unwrap(), b"<html>hi</html>");
    assert_eq!(c.read("/html/sub/big.bin").unwrap(), vec![7u8; 300_000]);
    // write, append, seek, pread/pwrite, truncate, fstat
    let mut f = c
        .open_with(
            "/new.txt",
            OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .mode(0o640),
        )
        .unwrap();
    f.write_all(b"hello world").unwrap();
    assert_eq!(f.seek(SeekFrom::Start(6)).unwrap(), 6);
    let mut s = String::new();
    f.read_to_string(&mut s).unwrap();
    assert_eq!(s, "world");
    assert_eq!(f.write_at(b"W", 6).unwrap(), 1);
    let mut b = [0u8; 5];
    assert_eq!(f.read_at(&mut b, 6).unwrap(), 5);
    assert_eq!(&b, b"World");
    f.set_len(5).unwrap();
    assert_eq!(f.metadata().unwrap().len(), 5);
    assert_eq!(f.seek(SeekFrom::End(0)).unwrap(), 5);
    f.sync_all().unwrap();
    drop(f);
    let mut a = c.open_with("/new.txt", OpenOptions::new().append(true)).unwrap();
    a.write_all(b"!!").unwrap();
    drop(a);
    assert_eq!(c.read("/new.txt").unwrap(), b"hello!!");
    assert!(c
        .open_with("/new.txt", OpenOptions::new().write(true).create_new(true))
        .is_err());
    // large write and read chunked over several RPCs
    let big: Vec<u8> = (0..3 * 1024 * 1024 + 17).map(|i| (i % 251) as u8).collect();
    c.write("/big.dat", &big).unwrap();
    assert_eq!(c.read("/big.dat").unwrap(), big);
    // metadata with 64-bit sizes and times
    let m = c.metadata("/new.txt").unwrap();
    assert!(m.is_file() && m.len() == 7 && m.mode() & 0o777 == 0o640);
    assert!(m.mtime() > 1_700_000_000, "mtime is set: {}", m.mtime());
    // dirs, rename, link, symlink, chmod, chown, utimes, unlink, rmdir
    c.create_dir_all("/a/b/c").unwrap();
    assert!(c.metadata("/a/b/c").unwrap().is_dir());
    c.rename("/new.txt", "/a/b/moved.txt").unwrap();
    assert!(!c.exists("/new.txt").unwrap());
    c.hard_link("/a/b/moved.txt", "/a/hard.txt").unwrap();
    assert_eq!(c.metadata("/a/hard.txt").unwrap().nlink(), 2);
    c.symlink("/a/b/moved.txt", "/a/sym").unwrap();
    assert_eq!(c.read_link("/a/sym").unwrap(), "/a/b/moved.txt");
    assert!(c.symlink_metadata("/a/sym").unwrap().is_symlink());
    assert_eq!(c.read("/a/sym").unwrap(), b"hello!!");
    c.set_permissions("/a/hard.txt", 0o600).unwrap();
    c.chown("/a/hard.txt", Some(1000), Some(1001)).unwrap();
    c.set_times("/a/hard.txt", Some(1_000_000), Some(2_000_000))
        .unwrap();
    let m = c.metadata("/a/hard.txt").unwrap();
    assert_eq!(
        (m.mode() & 0o777, m.uid(), m.gid(), m.mtime()),
        (0o600, 1000, 1001, 2_000_000)
    );
    let mut names: Vec<String> = c.read_dir("/a").unwrap().into_iter().map(|e| e.name).collect();
    names.sort();
    assert_eq!(names, ["b", "hard.txt", "sym"]);
    let err = c.remove_dir("/a").unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::DirectoryNotEmpty);
    c.remove_file("/a/sym").unwrap();
    c.remove_file("/a/hard.txt").unwrap();
    c.remove_dir("/a/b/c").unwrap();
    c.truncate("/big.dat", 10).unwrap();
    assert_eq!(c.metadata("/big.dat").unwrap().len(), 10);
    let st = c.statfs().unwrap();
    assert_eq!(st.bsize, 4096);
    assert!(st.bfree > 0 && st.bfree < st.blocks);
    assert_eq!(
        c.metadata("/nope").unwrap_err().kind(),
        std::io::ErrorKind::NotFound
    );
    let out = srv.stop();
    assert!(out.contains("synced"), "{out}");
    e2fsck_clean(&image);
}

#[test]
fn concurrent_clients_match_a_model_and_e2fsck() {
    let (tmp, image) = setup();
    let srv = FsProc::start(tmp.path(), &image, &[]);
    let mut handles = Vec::new();
    for t in 0..4u64 {
        let c = client(tmp.path(), srv.endpoint(), Role::Edge);
        handles.push(std::thread::spawn(move || {
            let mut model: BTreeMap<String, Vec<u8>> = BTreeMap::new();
            let dir = format!("/t{t}");
            c.create_dir(&dir).unwrap();
            let mut seed = 0x9e3779b97f4a7c15u64 ^ t;
            let mut rnd = move |n: u64| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed % n
            };
            for i in 0..150 {
                let name = format!("{dir}/f{}", rnd(12));
                match rnd(5) {
                    0 | 1 => {
                        let len = rnd(20_000) as usize;
                        let data: Vec<u8> = (0..len).map(|k| (k as u64 + i) as u8).collect();
                        c.write(&name, &data).unwrap();
                        model.insert(name, data);
                    }
                    2 => {
                        let to = format!("{dir}/f{}", rnd(12));
                        let r = c.rename(&name, &to);
                        match model.remove(&name) {
                            Some(d) => {
                                r.unwrap();
                                model.insert(to, d);
                            }
                            None => assert!(r.is_err()),
                        }
                    }
                    3 => {
                        let r = c.remove_file(&name);
                        assert_eq!(r.is_ok(), model.remove(&name).is_some());
                    }
                    _ => match model.get(&name) {
                        Some(d) => assert_eq!(&c.read(&name).unwrap(), d),
                        None => assert!(c.read(&name).is_err()),
                    },
                }
            }
            model
        }));
    }
    let models: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    srv.stop();
    e2fsck_clean(&image);
    // restart and compare every file with the model
    let srv = FsProc::start(tmp.path(), &image, &[]);
    let c = client(tmp.path(), srv.endpoint(), Role::Client);
    for (t, model) in models.iter().enumerate() {
        let mut listed: Vec<String> = c
            .read_dir(&format!("/t{t}"))
            .unwrap()
            .into_iter()
            .map(|e| format!("/t{t}/{}", e.name))
            .collect();
        listed.sort();
        assert_eq!(listed, model.keys().cloned().collect::<Vec<_>>());
        for (name, data) in model {
            assert_eq!(&c.read(name).unwrap(), data, "{name}");
        }
    }
    srv.stop();
}

fn raw(dir: &Path, ep: &Endpoint) -> Connection {
    let creds = Credentials::from_dir(&dir.join("certs"), Role::Client).unwrap();
    Connection::connect(ep, &ClientOptions::mtls(&creds, Role::FileServer).unwrap()).unwrap()
}

#[test]
fn bad_input_gets_errors_and_the_server_keeps_serving() {
    let (tmp, image) = setup();
    let srv = FsProc::start(tmp.path(), &image, &["--max-open", "4"]);
    let ep = srv.endpoint();
    let mut c = raw(tmp.path(), &ep);
    assert_eq!(
        c.call(20, b"").unwrap().status(),
        Status::ENOSYS,
        "the original crashed on opcode 20"
    );
    assert_eq!(c.call(999, b"").unwrap().status(), Status::ENOSYS);
    let mut w = BodyWriter::new();
    w.u32(77).u32(10);
    assert_eq!(c.call(proto::READ, &w.finish()).unwrap().status(), Status::EBADF);
    assert_eq!(
        c.call(proto::CLOSE, &[0xff, 0xff, 0xff, 0xff]).unwrap().status(),
        Status::EBADF
    );
    let mut w = BodyWriter::new();
    w.str("/html");
    let fd = c
        .call(proto::OPENDIR, &w.finish())
        .unwrap()
        .into_result()
        .unwrap();
    let mut w = BodyWriter::new();
    w.raw(&fd).u32(10);
    assert_eq!(
        c.call(proto::READ, &w.finish()).unwrap().status(),
        Status::EISDIR,
        "dir fd used for read"
    );
    for bad in ["/../etc/passwd", "/html/../../x"] {
        let mut w = BodyWriter::new();
        w.str(bad);
        assert_eq!(
            c.call(proto::STAT, &w.finish()).unwrap().status(),
            Status::EACCES,
            "{bad}"
        );
    }
    let mut w = BodyWriter::new();
    w.str(&format!("/{}", "n".repeat(300)));
    assert_eq!(
        c.call(proto::STAT, &w.finish()).unwrap().status(),
        Status::ENAMETOOLONG
    );
    let mut w = BodyWriter::new();
    w.str("/html/index.html").i32(0).u32(0);
    let fd = c.call(proto::OPEN, &w.finish()).unwrap().into_result().unwrap();
    let mut w = BodyWriter::new();
    w.raw(&fd).u32(64 * 1024 * 1024);
    assert_eq!(
        c.call(proto::READ, &w.finish()).unwrap().status(),
        Status::E2BIG,
        "read count over the limit"
    );
    let mut w = BodyWriter::new();
    w.raw(&fd).raw(b"x");
    assert_eq!(
        c.call(proto::WRITE, &w.finish()).unwrap().status(),
        Status::EBADF,
        "write on read-only fd"
    );
    assert_eq!(
        c.call(proto::STAT, &[0, 0, 0, 9, b'/']).unwrap().status(),
        Status::EPROTO,
        "truncated field"
    );
    // per-client cap on open descriptors (2 used so far, cap 4)
    let mut open = || {
        let mut w = BodyWriter::new();
        w.str("/html/index.html").i32(0).u32(0);
        c.call(proto::OPEN, &w.finish()).unwrap().status()
    };
    assert_eq!(open(), Status::OK);
    assert_eq!(open(), Status::OK);
    assert_eq!(open(), Status::EMFILE);
    // a client without a certificate is refused
    let opts = conclave_testkit::without_client_cert(&tmp.path().join("certs"), Role::FileServer);
    let anon = Connection::connect(&ep, &opts).and_then(|mut k| k.call(proto::STATFS, b""));
    assert!(anon.is_err(), "no certificate, no service");
    // a keyserver identity is not a file-server client
    let creds = Credentials::from_dir(&tmp.path().join("certs"), Role::KeyServer).unwrap();
    let mut ks = Connection::connect(&ep, &ClientOptions::mtls(&creds, Role::FileServer).unwrap()).unwrap();
    assert_eq!(ks.call(proto::STATFS, b"").unwrap().status(), Status::EACCES);
    // and a good client is still served
    let good = client(tmp.path(), ep, Role::Edge);
    assert_eq!(good.read("/html/index.html").unwrap(), b"<html>hi</html>");
    srv.stop();
}

/// The per-request write bound: a WRITE/PWRITE carrying more than
/// `--max-write` gets EFBIG and writes nothing, and the server keeps serving
/// the same connection.
#[test]
fn writes_over_the_per_request_bound_get_efbig() {
    let (tmp, image) = setup();
    let srv = FsProc::start(tmp.path(), &image, &["--max-write", "4k"]);
    let ep = srv.endpoint();
    let mut c = raw(tmp.path(), &ep);
    let mut w = BodyWriter::new();
    // O_WRONLY | O_CREAT
    w.str("/html/w.bin").i32(0o1 | 0o100).u32(0o644);
    let fd = c.call(proto::OPEN, &w.finish()).unwrap().into_result().unwrap();
    let mut w = BodyWriter::new();
    w.raw(&fd).raw(&[1u8; 4096]);
    assert_eq!(
        c.call(proto::WRITE, &w.finish()).unwrap().into_result().unwrap()[..],
        4096u32.to_be_bytes(),
        "a write at the bound is accepted"
    );
    let mut w = BodyWriter::new();
    w.raw(&fd).raw(&[2u8; 4097]);
    assert_eq!(c.call(proto::WRITE, &w.finish()).unwrap().status(), Status::EFBIG);
    let mut w = BodyWriter::new();
    w.raw(&fd).u64(0).raw(&[3u8; 4097]);
    assert_eq!(
        c.call(proto::PWRITE, &w.finish()).unwrap().status(),
        Status::EFBIG
    );
    assert_eq!(
        c.call(proto::CLOSE, &fd).unwrap().status(),
        Status::OK,
        "the connection is still served"
    );
    let good = client(tmp.path(), ep.clone(), Role::Edge);
    assert_eq!(
        good.read("/html/w.bin").unwrap(),
        vec![1u8; 4096],
        "the refused writes wrote nothing"
    );
    srv.stop();
}

#[test]
fn killed_server_restarts_at_the_last_commit() {
    let (tmp, image) = setup();
    let srv = FsProc::start(tmp.path(), &image, &[]);
    let c = client(tmp.path(), srv.endpoint(), Role::Client);
    c.write("/synced.txt", b"kept").unwrap();
    c.sync().unwrap();
    c.write("/unsynced.txt", b"data").unwrap();
    srv.kill9();
    // Writes are committed atomically (docs/fs.md): the image is exactly the
    // last FSYNC, clean, and the same command line starts again.
    e2fsck_clean(&image);
    let srv = FsProc::start(tmp.path(), &image, &[]);
    let c = client(tmp.path(), srv.endpoint(), Role::Client);
    assert_eq!(c.read("/synced.txt").unwrap(), b"kept");
    assert!(
        !c.exists("/unsynced.txt").unwrap(),
        "an unsynced write is not committed"
    );
    srv.stop();
    // read-only serving works, writes are refused
    let srv = FsProc::start(tmp.path(), &image, &["--read-only"]);
    let c = client(tmp.path(), srv.endpoint(), Role::Client);
    assert_eq!(c.read("/html/index.html").unwrap(), b"<html>hi</html>");
    assert!(c.write("/x", b"y").is_err());
    srv.stop();
}

#[test]
fn clients_reconnect_after_a_server_restart() {
    let (tmp, image) = setup();
    let srv = FsProc::start(tmp.path(), &image, &[]);
    let c = client(tmp.path(), srv.endpoint(), Role::Client);
    let mut f = c.open("/html/index.html").unwrap();
    let mut b = [0u8; 4];
    f.read_exact(&mut b).unwrap();
    assert_eq!(c.read("/html/index.html").unwrap().len(), 15);
    srv.stop();
    let srv = FsProc::start(tmp.path(), &image, &[]);
    assert!(
        f.read(&mut b).is_err(),
        "an open handle from before the restart reports an error"
    );
    assert_eq!(
        c.read("/html/index.html").unwrap(),
        b"<html>hi</html>",
        "new operations reconnect"
    );
    srv.stop();
}

/// Block numbers of `path` in a raw ext2 image, from debugfs (e2fsprogs).
fn blocks_of(raw: &Path, path: &str) -> Vec<u64> {
    let out = Command::new("debugfs")
        .args(["-R", &format!("blocks {path}")])
        .arg(raw)
        .output()
        .unwrap();
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(|b| b.parse().unwrap())
        .collect()
}

#[test]
fn tampered_block_reads_as_eio_on_verity_and_vericrypt() {
    use conclave_bd::{CreateOptions, DeviceKind, DeviceSpec, KdfParams};
    let (tmp, raw) = setup();
    let secret = tmp.path().join("secret");
    conclave_testkit::write_private(&secret, b"tamper test secret");
    let blocks = blocks_of(&raw, "/html/sub/big.bin");
    assert!(blocks.len() >= 70, "{blocks:?}");
    for (kind, header_blocks) in [(DeviceKind::Verity, 0u64), (DeviceKind::Vericrypt, 1)] {
        let image = tmp.path().join(format!("{kind}.img"));
        let tree = tmp.path().join(format!("{kind}.tree"));
        let spec = DeviceSpec::new(kind, &image).tree(&tree).secret_file(&secret);
        let opts = CreateOptions {
            kdf: KdfParams::MIN,
            ..CreateOptions::default()
        };
        let root = conclave_bd::create(&spec, &raw, &opts)
            .unwrap()
            .expect("tree devices have a root");
        let root_hex = root.hex();
        let args = [
            "--device",
            kind.name(),
            "--tree",
            tree.to_str().unwrap(),
            "--secret-file",
            secret.to_str().unwrap(),
            "--expect-root",
            root_hex.as_str(),
        ];
        let srv = FsProc::start(tmp.path(), &image, &args);
        let c = client(tmp.path(), srv.endpoint(), Role::Edge);
        assert_eq!(c.read("/html/sub/big.bin").unwrap(), vec![7u8; 300_000]);
        // the host flips one bit in the file's 10th block
        let off = (blocks[10] + header_blocks) * 4096 + 123;
        flip_bit(&image, off * 8 + 4);
        let err = c.read("/html/sub/big.bin").unwrap_err();
        assert_eq!(
            err.raw_os_error().or(Some(-1)),
            Some(-1),
            "an io::Error built from the status"
        );
        assert!(err.to_string().contains("EIO"), "{kind}: {err}");
        // a ranged read that avoids the block still works, and so do other files
        let mut f = c.open("/html/sub/big.bin").unwrap();
        let mut first = [0u8; 4096];
        f.read_exact(&mut first).unwrap();
        assert_eq!(first, [7u8; 4096]);
        drop(f);
        assert_eq!(
            c.read("/html/index.html").unwrap(),
            b"<html>hi</html>",
            "server stays up"
        );
        srv.stop();
    }
}

#[test]
fn fs_command_line_client_works() {
    let (tmp, image) = setup();
    let srv = FsProc::start(tmp.path(), &image, &[]);
    let server = format!("unix://{}", srv.sock.display());
    let certs = tmp.path().join("certs");
    let fs = |args: &[&str]| {
        let out = conclave()
            .args(["fs", "--server", &server, "--certs"])
            .arg(&certs)
            .args(args)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let local = tmp.path().join("local.txt");
    std::fs::write(&local, b"from the host").unwrap();
    assert!(fs(&["mkdir", "-p", "/x/y"]).0);
    assert!(fs(&["put", local.to_str().unwrap(), "/x/y/f.txt"]).0);
    assert_eq!(fs(&["cat", "/x/y/f.txt"]).1, "from the host");
    assert!(fs(&["mv", "/x/y/f.txt", "/x/g.txt"]).0);
    let ls = fs(&["ls", "/x"]).1;
    assert_eq!(ls, "- g.txt\nd y\n");
    assert!(fs(&["stat", "/x/g.txt"]).1.contains("size 13"));
    let back = tmp.path().join("back.txt");
    assert!(fs(&["get", "/x/g.txt", back.to_str().unwrap()]).0);
    assert_eq!(std::fs::read(&back).unwrap(), b"from the host");
    assert!(fs(&["rm", "/x/g.txt"]).0);
    let (ok, _, err) = fs(&["cat", "/x/g.txt"]);
    assert!(!ok && err.contains("ENOENT"), "{err}");
    let (ok, _, err) = fs(&["rm", "-d", "/x"]);
    assert!(!ok && err.contains("ENOTEMPTY"), "{err}");
    srv.stop();
}

#[test]
fn read_path_returns_metadata_and_data_in_one_call() {
    let (tmp, image) = setup();
    let srv = FsProc::start(tmp.path(), &image, &[]);
    let c = client(tmp.path(), srv.endpoint(), Role::Edge);
    let (m, data) = c.read_path("/html/sub/big.bin", 1000, 5000).unwrap();
    assert_eq!(m.len(), 300_000);
    assert_eq!(data.len(), 5000);
    let (_, tail) = c.read_path("/html/sub/big.bin", 299_990, 5000).unwrap();
    assert_eq!(tail.len(), 10, "short at the end of the file");
    let (m, none) = c.read_path("/html", 0, 100).unwrap();
    assert!(m.is_dir() && none.is_empty());
    assert_eq!(
        c.read_path("/missing", 0, 1).unwrap_err().kind(),
        std::io::ErrorKind::NotFound
    );
    srv.stop();
}

/// Issue 18: a 1 KiB-block ext3 image whose length is not whole 4 KiB blocks is
/// served and written (its journal is kept clean), read-only too; a truncated copy is
/// refused with the sizes.
#[test]
fn a_1k_block_ext3_image_of_odd_length_is_served_and_written() {
    let (tmp, _) = setup();
    let image = tmp.path().join("ext3.img");
    let out = Command::new("mke2fs")
        .args([
            "-q",
            "-F",
            "-t",
            "ext3",
            "-b",
            "1024",
            "-E",
            "root_owner=0:0",
            "-d",
        ])
        .arg(tmp.path().join("src"))
        .arg(&image)
        .arg("8195k")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_ne!(std::fs::metadata(&image).unwrap().len() % 4096, 0);
    let refused = |img: &Path| {
        let out = conclave()
            .args(["fileserver", "--image"])
            .arg(img)
            .args(["--listen", "tcp://127.0.0.1:0", "--certs"])
            .arg(tmp.path().join("certs"))
            .output()
            .unwrap();
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let srv = FsProc::start(tmp.path(), &image, &[]);
    let c = client(tmp.path(), srv.endpoint(), Role::Client);
    assert_eq!(c.read("/html/index.html").unwrap(), b"<html>hi</html>");
    c.write("/x", b"y").unwrap();
    assert_eq!(c.read("/x").unwrap(), b"y");
    srv.stop();
    e2fsck_clean(&image);
    let srv = FsProc::start(tmp.path(), &image, &["--read-only"]);
    let c = client(tmp.path(), srv.endpoint(), Role::Client);
    assert_eq!(c.read("/html/index.html").unwrap(), b"<html>hi</html>");
    assert_eq!(c.read("/html/sub/big.bin").unwrap(), vec![7u8; 300_000]);
    assert!(c.write("/x", b"y").is_err());
    srv.stop();
    e2fsck_clean(&image);
    let short = tmp.path().join("short.img");
    let bytes = std::fs::read(&image).unwrap();
    std::fs::write(&short, &bytes[..bytes.len() - 1500]).unwrap();
    let err = refused(&short);
    let want = format!(
        "image is {} bytes; its superblock expects {} blocks of 1024 bytes = {} bytes (not a multiple of 1024",
        bytes.len() - 1500,
        bytes.len() / 1024,
        bytes.len()
    );
    assert!(err.contains(&want), "{err}");
}

/// Issue 18: an ext4 image with `metadata_csum,64bit` (extents, a hashed directory,
/// a clean journal) is served and written; a flipped byte in a file's inode is EIO
/// for that file while the others keep being served.
#[test]
fn an_ext4_metadata_csum_image_is_served_written_and_checked() {
    let (tmp, _) = setup();
    let src = tmp.path().join("src");
    for i in 0..300 {
        std::fs::write(src.join(format!("html/page-{i:03}.html")), format!("{i}")).unwrap();
    }
    let image = tmp.path().join("ext4.img");
    let out = Command::new("mke2fs")
        .args([
            "-q",
            "-F",
            "-t",
            "ext4",
            "-O",
            "metadata_csum,64bit",
            "-E",
            "root_owner=0:0",
            "-d",
        ])
        .arg(&src)
        .arg(&image)
        .arg("32M")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = Command::new("e2fsck").arg("-fyD").arg(&image).output().unwrap();
    assert!(out.status.code().unwrap_or(8) < 4, "e2fsck -fyD: {out:?}");
    let srv = FsProc::start(tmp.path(), &image, &[]);
    let c = client(tmp.path(), srv.endpoint(), Role::Client);
    assert_eq!(c.read("/html/sub/big.bin").unwrap(), vec![7u8; 300_000]);
    assert_eq!(c.read("/html/page-123.html").unwrap(), b"123");
    let big: Vec<u8> = (0..2 * 1024 * 1024 + 5).map(|i| (i % 253) as u8).collect();
    c.write("/html/new.bin", &big).unwrap();
    assert_eq!(c.read("/html/new.bin").unwrap(), big);
    srv.stop();
    e2fsck_clean(&image);
    // Flip the size field of index.html's inode: its checksum no longer matches.
    let dump = Command::new("debugfs")
        .args(["-R", "stat /html/index.html"])
        .arg(&image)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&dump.stdout);
    let ino: u64 = text["Inode: ".len()..]
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let imap = Command::new("debugfs")
        .args(["-R", &format!("imap <{ino}>")])
        .arg(&image)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&imap.stdout);
    // "Inode N is part of block group G\n\tlocated at block B, offset 0xOFF"
    let block: u64 = text
        .split("located at block ")
        .nth(1)
        .unwrap()
        .split(',')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let off = u64::from_str_radix(text.split("offset 0x").nth(1).unwrap().trim(), 16).unwrap();
    let mut bytes = std::fs::read(&image).unwrap();
    let bs = 1024u64 << u32::from_le_bytes(bytes[1024 + 24..1024 + 28].try_into().unwrap());
    bytes[(block * bs + off + 4) as usize] ^= 1;
    std::fs::write(&image, &bytes).unwrap();
    let srv = FsProc::start(tmp.path(), &image, &["--read-only"]);
    let c = client(tmp.path(), srv.endpoint(), Role::Client);
    let err = c.read("/html/index.html").unwrap_err();
    assert!(
        err.raw_os_error() == Some(5) || err.to_string().contains("EIO"),
        "{err}"
    );
    assert!(c.read("/html/page-7.html").is_err());
    assert_eq!(c.read("/html/page-007.html").unwrap(), b"7");
    srv.stop();
}

/// Issue 18: `conclave mkfs --fs-type ext4` puts Debian's default ext4 (extents,
/// metadata_csum, 64bit, a journal) on every protected device; the file server
/// serves and writes it, a restart with the same command line reads the writes
/// back, and `conclave fsck` (blocks, then `e2fsck -fn` on the plaintext) is clean.
#[test]
fn mkfs_ext4_on_each_protected_device_is_served_written_and_fsck_clean() {
    let (tmp, _) = setup();
    let secret = tmp.path().join("secret");
    conclave_testkit::write_private(&secret, b"ext4 on protected devices");
    let big: Vec<u8> = (0..1024 * 1024 + 7).map(|i| (i % 251) as u8).collect();
    for kind in ["crypt", "verity", "vericrypt"] {
        let image = tmp.path().join(format!("{kind}-ext4.img"));
        let tree = tmp.path().join(format!("{kind}-ext4.tree"));
        let mut dev = vec!["--device", kind, "--secret-file", secret.to_str().unwrap()];
        if kind != "crypt" {
            dev.extend(["--tree", tree.to_str().unwrap()]);
        }
        let mut mkfs = vec!["mkfs", "--fs-type", "ext4", "--size", "32M"];
        mkfs.extend(["--kdf-memory-kib", "8192", "--kdf-passes", "1"]);
        mkfs.extend(&dev);
        let out = conclave()
            .args(&mkfs)
            .arg(tmp.path().join("src"))
            .arg(&image)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{kind}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let srv = FsProc::start(tmp.path(), &image, &dev);
        let c = client(tmp.path(), srv.endpoint(), Role::Client);
        assert_eq!(c.read("/html/sub/big.bin").unwrap(), vec![7u8; 300_000], "{kind}");
        c.write("/html/new.bin", &big).unwrap();
        c.create_dir("/html/d").unwrap();
        c.write("/html/d/x", b"x").unwrap();
        srv.stop();
        let srv = FsProc::start(tmp.path(), &image, &dev);
        let c = client(tmp.path(), srv.endpoint(), Role::Client);
        assert_eq!(c.read("/html/new.bin").unwrap(), big, "{kind}");
        assert_eq!(c.read("/html/d/x").unwrap(), b"x", "{kind}");
        srv.stop();
        dev.insert(0, "fsck");
        let out = conclave().args(&dev).arg(&image).output().unwrap();
        assert!(
            out.status.success(),
            "{kind}: conclave fsck: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
