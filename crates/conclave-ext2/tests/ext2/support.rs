//! Helpers: building images with mkfs.ext2, checking them with e2fsck, a seeded RNG.

use conclave_bd::MemBlockDevice;
use conclave_ext2::Ext2Fs;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

/// Builds an image of `size` (mkfs syntax, e.g. "64M") from `dir` (None: empty) with
/// the project's standard options plus `extra`.
pub fn mkfs(dir: Option<&Path>, size: &str, extra: &[&str]) -> Vec<u8> {
    let tmp = tempfile::tempdir().unwrap();
    let img = tmp.path().join("img");
    let mut cmd = Command::new("mkfs.ext2");
    cmd.args(["-q", "-F"]);
    if !extra.contains(&"-b") {
        cmd.args(["-b", "4096"]);
    }
    cmd.args(["-O", "^resize_inode,^dir_index", "-E", "root_owner=0:0"]);
    if !extra.contains(&"-I") {
        cmd.args(["-I", "256"]);
    }
    cmd.args(extra);
    if let Some(d) = dir {
        cmd.arg("-d").arg(d);
    }
    cmd.arg(&img).arg(size);
    let out = cmd
        .output()
        .expect("mkfs.ext2 is required for these tests (apt-get install e2fsprogs)");
    assert!(
        out.status.success(),
        "mkfs.ext2 failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::read(&img).unwrap()
}

/// Runs `e2fsck -fn` on a copy of `image`; returns (exit code, output).
pub fn e2fsck(image: &[u8]) -> (i32, String) {
    let tmp = tempfile::tempdir().unwrap();
    let img = tmp.path().join("img");
    std::fs::write(&img, image).unwrap();
    let out = Command::new("e2fsck")
        .args(["-fn"])
        .arg(&img)
        .output()
        .expect("e2fsck is required for these tests (apt-get install e2fsprogs)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

/// Asserts that `e2fsck -fn` finds nothing wrong with `image`.
pub fn assert_fsck_clean(image: &[u8]) {
    let (code, text) = e2fsck(image);
    assert_eq!(code, 0, "e2fsck -fn found problems:\n{text}");
}

/// Opens `image` in memory.
pub fn open(image: Vec<u8>) -> (Arc<MemBlockDevice>, Ext2Fs) {
    let dev = Arc::new(MemBlockDevice::from_image(image));
    let fs = Ext2Fs::open(dev.clone()).expect("open image");
    (dev, fs)
}

/// SplitMix64: a small deterministic generator, so failures reproduce from the seed.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next() % n
        }
    }
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}
