//! Test support: real images made by `mke2fs` in a temp dir, and raw reads of their
//! structures at the offsets the format gives, so the ext4 modules are checked against
//! e2fsprogs rather than against themselves.

use crate::le::{u16_at, u32_at};
use std::path::{Path, PathBuf};
use std::process::Command;

/// An image file made by `mke2fs`, kept in memory and on disk.
pub(crate) struct TestImage {
    pub dir: tempfile::TempDir,
    pub path: PathBuf,
    pub bytes: Vec<u8>,
    pub bs: usize,
}

/// Writes the small tree every test image is made from (`-d`).
pub(crate) fn write_tree(root: &Path) {
    std::fs::create_dir_all(root.join("sub/deeper")).unwrap();
    std::fs::write(root.join("hello.txt"), b"hello, ext4\n").unwrap();
    let big: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(root.join("big.bin"), &big).unwrap();
    std::fs::write(root.join("sub/deeper/leaf.txt"), b"leaf").unwrap();
}

impl TestImage {
    /// `mke2fs -q -F <args> -b <bs> [-d tree] img <size_kib>K`.
    pub fn make(args: &[&str], bs: u32, size_kib: u32, with_tree: bool) -> TestImage {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("img");
        let mut cmd = Command::new("mke2fs");
        cmd.args(["-q", "-F"]).args(args).args(["-b", &bs.to_string()]);
        if with_tree {
            let tree = dir.path().join("tree");
            write_tree(&tree);
            cmd.arg("-d").arg(&tree);
        }
        cmd.arg(&path).arg(format!("{size_kib}K"));
        cmd.env("MKE2FS_CONFIG", "/etc/mke2fs.conf");
        let out = cmd.output().expect("mke2fs runs");
        assert!(
            out.status.success(),
            "mke2fs: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        TestImage::load(dir, path)
    }

    /// Re-reads an image file (after e2fsck/debugfs changed it).
    pub fn load(dir: tempfile::TempDir, path: PathBuf) -> TestImage {
        let bytes = std::fs::read(&path).unwrap();
        let bs = 1024usize << u32_at(&bytes[1024..], 0x18);
        TestImage { dir, path, bytes, bs }
    }

    /// Runs a tool on the image file and reloads it.
    pub fn run(self, tool: &str, args: &[&str]) -> TestImage {
        let out = Command::new(tool).args(args).arg(&self.path).output().unwrap();
        assert!(
            out.status.code().unwrap_or(8) < 4,
            "{tool}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        TestImage::load(self.dir, self.path)
    }

    pub fn superblock(&self) -> Vec<u8> {
        self.bytes[1024..2048].to_vec()
    }

    /// A superblock u32 field.
    pub fn u32(&self, off: usize) -> u32 {
        u32_at(&self.bytes[1024..], off)
    }

    pub fn incompat(&self) -> u32 {
        self.u32(0x60)
    }

    pub fn ro_compat(&self) -> u32 {
        self.u32(0x64)
    }

    pub fn desc_size(&self) -> usize {
        if self.incompat() & 0x80 != 0 {
            usize::from(u16_at(&self.bytes[1024..], 0xFE))
        } else {
            32
        }
    }

    pub fn group_count(&self) -> u32 {
        let blocks = self.u32(0x4) - self.u32(0x14);
        blocks.div_ceil(self.u32(0x20))
    }

    pub fn block(&self, b: u64) -> Vec<u8> {
        let at = b as usize * self.bs;
        self.bytes[at..at + self.bs].to_vec()
    }

    pub fn group_desc(&self, g: u32) -> Vec<u8> {
        let ds = self.desc_size();
        let at = (self.u32(0x14) as usize + 1) * self.bs + g as usize * ds;
        self.bytes[at..at + ds].to_vec()
    }

    /// A 64-bit descriptor field from its lo and hi offsets.
    pub fn gd_u64(&self, desc: &[u8], lo: usize, hi: usize) -> u64 {
        let mut v = u64::from(u32_at(desc, lo));
        if desc.len() >= hi + 4 {
            v |= u64::from(u32_at(desc, hi)) << 32;
        }
        v
    }

    /// Byte offset of inode `ino`'s slot in the image.
    pub fn inode_offset(&self, ino: u32) -> usize {
        let ipg = self.u32(0x28);
        let isz = usize::from(u16_at(&self.bytes[1024..], 0x58));
        let desc = self.group_desc((ino - 1) / ipg);
        let table = self.gd_u64(&desc, 0x8, 0x28);
        table as usize * self.bs + ((ino - 1) % ipg) as usize * isz
    }

    pub fn inode(&self, ino: u32) -> Vec<u8> {
        let isz = usize::from(u16_at(&self.bytes[1024..], 0x58));
        let at = self.inode_offset(ino);
        self.bytes[at..at + isz].to_vec()
    }

    /// The physical start of the first extent in a depth-0 extent root.
    pub fn extent_first_phys(&self, raw: &[u8]) -> u64 {
        let ib = &raw[0x28..0x28 + 60];
        assert_eq!(u16_at(ib, 0), 0xF30A, "extent magic");
        assert_eq!(u16_at(ib, 6), 0, "depth 0");
        u64::from(u16_at(ib, 12 + 6)) << 32 | u64::from(u32_at(ib, 12 + 8))
    }
}
