//! Least privilege as an attacker holding one stolen certificate sees it
//! (issue 15): file-server grants per identity and path, one admission rule
//! for certificates without a role on every server, and key files that
//! others could read refused by name.
#![cfg(all(feature = "fs", feature = "mem", feature = "keys"))]

use conclave_fs::proto::{self, flags::*};
use conclave_rpc::pki::{Ca, CertsLayout, SiteKey};
use conclave_rpc::{BodyWriter, ClientOptions, Connection, Credentials, Endpoint, Role, Status};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

mod common;
use common::{conclave, free_port, start_logged, wait_port, Proc};
use conclave_testkit::write_private as write_private_file;

/// A certs directory and an image with `/html/index.html` and an empty `/cache`.
fn setup() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    common::certs(&tmp.path().join("certs"), &["--site-key", "ecdsa-p256"]);
    let src = tmp.path().join("src");
    std::fs::create_dir_all(src.join("html")).unwrap();
    std::fs::create_dir_all(src.join("cache")).unwrap();
    std::fs::write(src.join("html/index.html"), b"<html>hi</html>").unwrap();
    let image = tmp.path().join("fs.img");
    conclave_bd::mke2fs(&src, &image, 16 << 20).expect("mke2fs (e2fsprogs) must be installed");
    (tmp, image)
}

fn start_fileserver(dir: &Path, image: &Path, extra: &[&str]) -> (Proc, Endpoint) {
    let port = free_port();
    let listen = format!("tcp://127.0.0.1:{port}");
    let certs = dir.join("certs").display().to_string();
    let image = image.display().to_string();
    let mut args = vec![
        "fileserver",
        "--image",
        &image,
        "--listen",
        &listen,
        "--certs",
        &certs,
    ];
    args.extend(extra);
    let p = start_logged(dir, "fileserver", &args);
    wait_port(port);
    (p, listen.parse().unwrap())
}

fn connect(dir: &Path, ep: &Endpoint, role: Role) -> Connection {
    let creds = Credentials::from_dir(&dir.join("certs"), role).unwrap();
    Connection::connect(ep, &ClientOptions::mtls(&creds, Role::FileServer).unwrap()).unwrap()
}

fn path_body(p: &str) -> Vec<u8> {
    let mut w = BodyWriter::new();
    w.str(p);
    w.finish()
}

fn open(c: &mut Connection, p: &str, flags: i32) -> Result<Vec<u8>, Status> {
    let mut w = BodyWriter::new();
    w.str(p).i32(flags).u32(0o644);
    c.call(proto::OPEN, &w.finish())
        .unwrap()
        .into_result()
        .map(|b| b.to_vec())
}

fn status(c: &mut Connection, code: u32, body: &[u8]) -> Status {
    c.call(code, body).unwrap().status()
}

fn two_paths(a: &str, b: &str) -> Vec<u8> {
    let mut w = BodyWriter::new();
    w.str(a).str(b);
    w.finish()
}

fn read_all(c: &mut Connection, p: &str) -> Vec<u8> {
    let mut w = BodyWriter::new();
    w.str(p).u64(0).u32(1 << 16);
    let body = c
        .call(proto::READ_PATH, &w.finish())
        .unwrap()
        .into_result()
        .unwrap();
    let mut r = conclave_rpc::BodyReader::new(&body);
    proto::Stat::decode(&mut r).unwrap();
    r.rest().to_vec()
}

#[test]
fn the_edge_reads_html_writes_only_its_cache_and_an_ungranted_client_gets_nothing() {
    let (tmp, image) = setup();
    // One grant on the command line, one from a file.
    let grants = tmp.path().join("grants");
    std::fs::write(&grants, "# the edge's cache\nedge:rw:/cache\n").unwrap();
    let (_fs, ep) = start_fileserver(
        tmp.path(),
        &image,
        &[
            "--grant",
            "edge:ro:/html",
            "--grants-file",
            grants.to_str().unwrap(),
        ],
    );
    let mut edge = connect(tmp.path(), &ep, Role::Edge);
    let index = "/html/index.html";
    // Reading is granted.
    assert_eq!(read_all(&mut edge, index), b"<html>hi</html>");
    let fd = open(&mut edge, index, O_RDONLY).unwrap();
    assert_eq!(status(&mut edge, proto::CLOSE, &fd), Status::OK);
    assert_eq!(status(&mut edge, proto::STAT, &path_body(index)), Status::OK);
    assert_eq!(status(&mut edge, proto::OPENDIR, &path_body("/html")), Status::OK);
    // Every change to /html is EACCES.
    for fl in [
        O_WRONLY,
        O_RDWR,
        O_RDONLY | O_TRUNC,
        O_WRONLY | O_APPEND,
        O_WRONLY | O_CREAT,
    ] {
        assert_eq!(
            open(&mut edge, index, fl),
            Err(Status::EACCES),
            "open flags {fl:#o}"
        );
    }
    let mut w = BodyWriter::new();
    w.str(index).u64(0);
    assert_eq!(status(&mut edge, proto::TRUNCATE, &w.finish()), Status::EACCES);
    assert_eq!(
        status(&mut edge, proto::UNLINK, &path_body(index)),
        Status::EACCES
    );
    let mut w = BodyWriter::new();
    w.str(index).u32(0o7777);
    assert_eq!(status(&mut edge, proto::CHMOD, &w.finish()), Status::EACCES);
    let mut w = BodyWriter::new();
    w.str(index).u32(0).u32(0);
    assert_eq!(status(&mut edge, proto::CHOWN, &w.finish()), Status::EACCES);
    assert_eq!(
        status(&mut edge, proto::RENAME, &two_paths(index, "/cache/stolen")),
        Status::EACCES
    );
    // A hard link would make /html/index.html writable through /cache.
    assert_eq!(
        status(&mut edge, proto::LINK, &two_paths(index, "/cache/link")),
        Status::EACCES
    );
    // A symbolic link's target is resolved at use: only rw on / may make one.
    assert_eq!(
        status(&mut edge, proto::SYMLINK, &two_paths(index, "/cache/sym")),
        Status::EACCES
    );
    let mut w = BodyWriter::new();
    w.str("/html/d").u32(0o755);
    assert_eq!(status(&mut edge, proto::MKDIR, &w.finish()), Status::EACCES);
    // Outside any grant: nothing, not even reading; `/cachex` is not `/cache`.
    assert_eq!(
        open(&mut edge, "/cachex", O_WRONLY | O_CREAT),
        Err(Status::EACCES)
    );
    assert_eq!(open(&mut edge, "/other", O_RDONLY), Err(Status::EACCES));
    // ... but the directories above its grants may be stat'ed, and
    // "created" when they exist, so `mkdir -p /cache/a` works.
    assert_eq!(status(&mut edge, proto::STAT, &path_body("/")), Status::OK);
    let mut w = BodyWriter::new();
    w.str("/").u32(0o755);
    assert_eq!(status(&mut edge, proto::MKDIR, &w.finish()), Status::EEXIST);
    // The cache is the edge's: create, write, rename, read, remove.
    let fd = open(&mut edge, "/cache/tmp.1", O_WRONLY | O_CREAT | O_TRUNC).unwrap();
    let mut w = BodyWriter::new();
    w.raw(&fd).raw(b"cached body");
    assert_eq!(
        edge.call(proto::WRITE, &w.finish())
            .unwrap()
            .into_result()
            .unwrap()[..],
        11u32.to_be_bytes()
    );
    assert_eq!(status(&mut edge, proto::CLOSE, &fd), Status::OK);
    let mut w = BodyWriter::new();
    w.str("/cache/d").u32(0o755);
    assert_eq!(status(&mut edge, proto::MKDIR, &w.finish()), Status::OK);
    assert_eq!(
        status(
            &mut edge,
            proto::RENAME,
            &two_paths("/cache/tmp.1", "/cache/d/obj")
        ),
        Status::OK
    );
    assert_eq!(read_all(&mut edge, "/cache/d/obj"), b"cached body");
    let mut w = BodyWriter::new();
    w.str("/cache/d/obj").u32(0o600);
    assert_eq!(status(&mut edge, proto::CHMOD, &w.finish()), Status::OK);
    assert_eq!(
        status(&mut edge, proto::UNLINK, &path_body("/cache/d/obj")),
        Status::OK
    );
    // Nothing in /html changed.
    assert_eq!(read_all(&mut edge, index), b"<html>hi</html>");
    // A client with no grant gets EACCES for everything, reading included.
    let mut client = connect(tmp.path(), &ep, Role::Client);
    assert_eq!(open(&mut client, index, O_RDONLY), Err(Status::EACCES));
    let mut w = BodyWriter::new();
    w.str(index).u64(0).u32(16);
    assert_eq!(status(&mut client, proto::READ_PATH, &w.finish()), Status::EACCES);
    assert_eq!(status(&mut client, proto::STAT, &path_body("/")), Status::EACCES);
    assert_eq!(
        status(&mut client, proto::OPENDIR, &path_body("/")),
        Status::EACCES
    );
    assert_eq!(status(&mut client, proto::STATFS, b""), Status::EACCES);
}

#[test]
fn without_grants_every_client_is_denied_and_the_server_says_so() {
    let (tmp, image) = setup();
    let (fs, ep) = start_fileserver(tmp.path(), &image, &[]);
    let mut edge = connect(tmp.path(), &ep, Role::Edge);
    assert_eq!(open(&mut edge, "/html/index.html", O_RDONLY), Err(Status::EACCES));
    drop(fs);
    let log = std::fs::read_to_string(tmp.path().join("fileserver.log")).unwrap();
    assert!(log.contains("no --grant given"), "{log}");
    // A malformed grant is refused at start, by name.
    let out = conclave()
        .args(["fileserver", "--image"])
        .arg(&image)
        .args(["--listen", "tcp://127.0.0.1:1", "--certs"])
        .arg(tmp.path().join("certs"))
        .args(["--grant", "edge:wr:/cache"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad grant \"edge:wr:/cache\"") && err.contains("not ro or rw"),
        "{err}"
    );
}

/// A certificate from the conclave's CA that names no role (only
/// `localhost`), presented to the file, memory and key servers: each
/// answers the first request with EACCES, before its service sees it.
#[test]
fn a_certificate_without_a_role_is_refused_by_every_server_the_same_way() {
    let (tmp, image) = setup();
    let layout = CertsLayout::new(tmp.path().join("certs"));
    let ca = Ca::load(&layout.ca_dir()).unwrap();
    let (pem, key) = ca.issue(&["localhost"], SiteKey::EcdsaP256).unwrap();
    let roleless = tmp.path().join("roleless");
    std::fs::create_dir(&roleless).unwrap();
    std::fs::write(roleless.join("localhost.crt"), pem).unwrap();
    write_private_file(roleless.join("localhost.key"), key.as_bytes());
    let creds = Credentials::load(
        &layout.ca_cert(),
        &roleless.join("localhost.crt"),
        &roleless.join("localhost.key"),
        Role::Client,
    )
    .unwrap();

    let (_fs, fs_ep) = start_fileserver(
        tmp.path(),
        &image,
        &["--grant", "edge@*:rw:/", "--grant", "client@*:rw:/"],
    );
    let mport = free_port();
    let mem_listen = format!("tcp://127.0.0.1:{mport}");
    let certs = layout.root().display().to_string();
    let _mem = start_logged(
        tmp.path(),
        "memserver",
        &[
            "memserver",
            "--kind",
            "smdish",
            "--listen",
            &mem_listen,
            "--certs",
            &certs,
        ],
    );
    let keys = tmp.path().join("keys");
    std::fs::create_dir(&keys).unwrap();
    std::fs::set_permissions(&keys, std::fs::Permissions::from_mode(0o700)).unwrap();
    std::fs::rename(layout.site_key(), keys.join("server.key")).unwrap();
    let kport = free_port();
    let key_listen = format!("tcp://127.0.0.1:{kport}");
    let _ks = start_logged(
        tmp.path(),
        "keyserver",
        &[
            "keyserver",
            "--keys",
            keys.to_str().unwrap(),
            "--certs",
            &certs,
            "--listen",
            &key_listen,
        ],
    );
    wait_port(mport);
    wait_port(kport);
    for (ep, server) in [
        (fs_ep, Role::FileServer),
        (mem_listen.parse::<Endpoint>().unwrap(), Role::MemServer),
        (key_listen.parse::<Endpoint>().unwrap(), Role::KeyServer),
    ] {
        let opts = ClientOptions::mtls(&creds, server).unwrap();
        let mut c = Connection::connect(&ep, &opts).unwrap();
        // Any first request: the refusal is the reply.
        let reply = c.call(1, b"").unwrap();
        assert_eq!(reply.status(), Status::EACCES, "{server}");
        // The same certificate's peers with a role are served (sanity).
        let good = Credentials::from_dir(layout.root(), Role::Edge).unwrap();
        let mut g = Connection::connect(&ep, &ClientOptions::mtls(&good, server).unwrap()).unwrap();
        assert_ne!(g.call(1, b"").unwrap().status(), Status::EACCES, "{server}");
    }
}

fn chmod(p: &Path, mode: u32) {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[test]
fn key_and_secret_files_others_can_read_are_refused_by_name() {
    let (tmp, image) = setup();
    // The file server's own identity key, made 0644.
    let key = tmp.path().join("certs/fileserver/fileserver.key");
    chmod(&key, 0o644);
    let out = conclave()
        .args(["fileserver", "--image"])
        .arg(&image)
        .args(["--listen", "tcp://127.0.0.1:1", "--certs"])
        .arg(tmp.path().join("certs"))
        .output()
        .unwrap();
    common::assert_refused_as_readable(&out, &key, "0644");
    chmod(&key, 0o600);
    // A block-device secret file, 0640.
    let secret = tmp.path().join("fs.secret");
    write_private_file(&secret, b"a device secret of some length");
    chmod(&secret, 0o640);
    let out = conclave()
        .args(["mkfs", "--device", "crypt", "--size", "8M", "--secret-file"])
        .arg(&secret)
        .args(["--kdf-memory-kib", "8192", "--kdf-passes", "1"])
        .arg(tmp.path().join("src"))
        .arg(tmp.path().join("crypt.img"))
        .output()
        .unwrap();
    common::assert_refused_as_readable(&out, &secret, "0640");
    // Fixed as the message says, both work.
    chmod(&secret, 0o600);
    let out = conclave()
        .args(["mkfs", "--device", "crypt", "--size", "8M", "--secret-file"])
        .arg(&secret)
        .args(["--kdf-memory-kib", "8192", "--kdf-passes", "1"])
        .arg(tmp.path().join("src"))
        .arg(tmp.path().join("crypt.img"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let (_fs, ep) = start_fileserver(tmp.path(), &image, &["--grant", "edge:ro:/html"]);
    let mut edge = connect(tmp.path(), &ep, Role::Edge);
    assert_eq!(read_all(&mut edge, "/html/index.html"), b"<html>hi</html>");
}
