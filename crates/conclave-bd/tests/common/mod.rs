//! Helpers shared by the integration tests: images from `mke2fs -d`, device
//! specs, an `ext4-view` reader over any device.
#![allow(dead_code)]

use conclave_bd::{BlockDevice, CreateOptions, DeviceKind, DeviceSpec, KdfParams, BLOCK_SIZE};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Cheap KDF so tests open devices quickly.
pub fn fast_opts() -> CreateOptions {
    CreateOptions {
        kdf: KdfParams::MIN,
        journal_entries: 4096,
    }
}

/// The seeded generator every test shares (xorshift64*): sampled positions are
/// the same on every run.
pub use conclave_testkit::Rng;

/// Writes a tree of files (small, multi-block, a 1 MiB file that needs
/// indirect blocks, nested directories, an empty file) under `dir`.
pub fn make_tree(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files = Vec::new();
    let mut rng = Rng(42);
    let mut put = |rel: &str, len: usize| {
        let data: Vec<u8> = (0..len).map(|_| rng.next_u64() as u8).collect();
        let p = dir.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, &data).unwrap();
        files.push((format!("/{rel}"), data));
    };
    put("hello.txt", 13);
    put("empty", 0);
    put("a/b/c/deep.bin", 10_000);
    put("big/1m.bin", 1 << 20);
    put("big/300k.bin", 300_000);
    for i in 0..40 {
        put(&format!("many/f{i}.txt"), 100 * i + 1);
    }
    files
}

/// Runs `mke2fs -d DIR` into a new raw image of `size_mb` MiB; panics loudly if e2fsprogs is missing.
pub fn mke2fs(dir: &Path, raw: &Path, size_mb: u64) {
    conclave_bd::mke2fs(dir, raw, size_mb << 20)
        .expect("mke2fs (e2fsprogs) must be installed for these tests");
}

/// Paths of one device's files in `dir`, with a secret file written.
pub fn spec_in(dir: &Path, kind: DeviceKind) -> DeviceSpec {
    let secret = dir.join("secret");
    if !secret.exists() {
        conclave_testkit::write_private(&secret, b"correct horse battery staple");
    }
    let mut s = DeviceSpec::new(kind, dir.join(format!("{kind}.img")));
    if kind.has_tree() {
        s = s.tree(dir.join(format!("{kind}.tree")));
    }
    if kind.needs_secret() {
        s = s.secret_file(secret);
    }
    s
}

/// Where data block `b` of a device sits in its image file.
pub fn data_offset(kind: DeviceKind, b: u64) -> u64 {
    let header = if kind.encrypts() { BLOCK_SIZE as u64 } else { 0 };
    header + b * BLOCK_SIZE as u64
}

/// `ext4-view`'s reader over one of our devices.
pub struct DeviceReader(pub Arc<dyn BlockDevice>);

impl ext4_view::Ext4Read for DeviceReader {
    fn read(
        &mut self,
        start_byte: u64,
        dst: &mut [u8],
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync + 'static>> {
        let mut block = [0u8; BLOCK_SIZE];
        let mut done = 0usize;
        while done < dst.len() {
            let pos = start_byte + done as u64;
            let (idx, off) = (pos / BLOCK_SIZE as u64, (pos % BLOCK_SIZE as u64) as usize);
            self.0.read_block(idx, &mut block)?;
            let n = (BLOCK_SIZE - off).min(dst.len() - done);
            dst[done..done + n].copy_from_slice(&block[off..off + n]);
            done += n;
        }
        Ok(())
    }
}

/// A temp dir with a populated source tree and its raw image.
pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub files: Vec<(String, Vec<u8>)>,
    pub raw: PathBuf,
}

impl Fixture {
    pub fn new(size_mb: u64) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        let files = make_tree(&src);
        let raw = dir.path().join("raw.img");
        mke2fs(&src, &raw, size_mb);
        Fixture { dir, files, raw }
    }

    /// Makes device `kind` from the raw image and returns its spec.
    pub fn device(&self, kind: DeviceKind) -> DeviceSpec {
        let spec = spec_in(self.dir.path(), kind);
        conclave_bd::create(&spec, &self.raw, &fast_opts()).unwrap();
        spec
    }
}
