//! Corrupt metadata gives errors, never panics.

use crate::support::{mkfs, Rng};
use conclave_bd::MemBlockDevice;
use conclave_ext2::{Ext2Error, Ext2Fs, FileType, Ino};
use conclave_testkit::flip_bit_in;
use std::sync::Arc;

fn try_open(image: Vec<u8>) -> Result<Ext2Fs, Ext2Error> {
    Ext2Fs::open(Arc::new(MemBlockDevice::from_image(image)))
}

/// A small image with a directory tree, files using indirect blocks, and symlinks.
fn sample_image() -> Vec<u8> {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    std::fs::create_dir_all(root.join("d/e")).unwrap();
    std::fs::write(root.join("small"), b"small file").unwrap();
    std::fs::write(root.join("d/indirect"), vec![7u8; 60_000]).unwrap();
    std::fs::write(root.join("d/e/x"), b"x").unwrap();
    std::os::unix::fs::symlink("d/e/x", root.join("link")).unwrap();
    std::os::unix::fs::symlink("s".repeat(100), root.join("slowlink")).unwrap();
    mkfs(Some(root), "4M", &["-N", "64"])
}

/// (inode table block, inode size) of group 0.
fn inode_slot(image: &[u8], ino: u32) -> usize {
    let table = u32::from_le_bytes(image[4096 + 8..4096 + 12].try_into().unwrap()) as usize;
    table * 4096 + (ino as usize - 1) * 256
}

fn ino_of(image: &[u8], path: &str) -> u32 {
    try_open(image.to_vec()).unwrap().lookup_nofollow(path).unwrap().0
}

fn set_u32(image: &mut [u8], at: usize, v: u32) {
    image[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

#[test]
fn garbage_superblock_is_an_error() {
    let mut rng = Rng(3);
    let good = sample_image();
    for _ in 0..50 {
        let mut image = good.clone();
        image[1024..2048].copy_from_slice(&rng.bytes(1024));
        assert!(try_open(image).is_err());
    }
    let mut image = good.clone();
    image[1024 + 56] = 0; // magic
    assert!(matches!(try_open(image), Err(Ext2Error::Corrupt(_))));
    let mut image = good.clone();
    set_u32(&mut image, 1024 + 4, 1 << 30); // blocks count past the device
    assert!(matches!(try_open(image), Err(Ext2Error::Corrupt(_))));
    let mut image = good.clone();
    set_u32(&mut image, 1024 + 40, 0); // inodes per group
    assert!(matches!(try_open(image), Err(Ext2Error::Corrupt(_))));
    assert!(try_open(vec![0u8; 1 << 20]).is_err());
    assert!(try_open(Vec::new()).is_err());
    let inline = mkfs(None, "4M", &["-O", "inline_data"]);
    let err = try_open(inline).unwrap_err();
    assert!(matches!(err, Ext2Error::Unsupported(_)), "{err}");
}

#[test]
fn block_pointer_out_of_range_is_an_error() {
    let good = sample_image();
    let ino = ino_of(&good, "/small");
    let mut image = good.clone();
    set_u32(&mut image, inode_slot(&good, ino) + 40, 0xFFFF_FF00);
    let fs = try_open(image).unwrap();
    let mut buf = [0u8; 16];
    let err = fs.read(Ino(ino), 0, &mut buf).unwrap_err();
    assert!(matches!(err, Ext2Error::Corrupt(_)), "{err}");
    assert_eq!(err.errno(), 5);

    // An indirect block holding a pointer past the end.
    let ino = ino_of(&good, "/d/indirect");
    let ind = u32::from_le_bytes(good[inode_slot(&good, ino) + 40 + 48..][..4].try_into().unwrap());
    assert_ne!(ind, 0, "60 KB file uses its single-indirect block");
    let mut image = good.clone();
    set_u32(&mut image, ind as usize * 4096 + 8, 0x7FFF_FFFF);
    let mut fs = try_open(image).unwrap();
    let mut buf = vec![0u8; 60_000];
    assert!(matches!(
        fs.read(Ino(ino), 0, &mut buf),
        Err(Ext2Error::Corrupt(_))
    ));
    assert!(matches!(fs.truncate(Ino(ino), 0), Err(Ext2Error::Corrupt(_))));

    // An inode number out of range, asked for directly.
    assert!(matches!(fs.stat(Ino(1_000_000)), Err(Ext2Error::Stale(_))));
}

#[test]
fn directory_entry_with_bad_rec_len_is_an_error() {
    let good = sample_image();
    let root_block =
        u32::from_le_bytes(good[inode_slot(&good, 2) + 40..][..4].try_into().unwrap()) as usize * 4096;
    for bad in [0u16, 5, 6, 4092, 8192] {
        let mut image = good.clone();
        image[root_block + 4..root_block + 6].copy_from_slice(&bad.to_le_bytes());
        let fs = try_open(image);
        let fs = match fs {
            Ok(fs) => fs,
            Err(e) => panic!("open should not read directories: {e}"),
        };
        assert!(
            matches!(fs.lookup("/small"), Err(Ext2Error::Corrupt(_))),
            "rec_len {bad}"
        );
        assert!(
            matches!(fs.readdir(Ino::ROOT), Err(Ext2Error::Corrupt(_))),
            "rec_len {bad}"
        );
    }
    // A name length longer than its record.
    let mut image = good.clone();
    image[root_block + 6] = 200;
    let fs = try_open(image).unwrap();
    assert!(matches!(fs.readdir(Ino::ROOT), Err(Ext2Error::Corrupt(_))));
}

/// Reads everything reachable, bounded, ignoring errors: must not panic.
fn walk(fs: &Ext2Fs, dir: Ino, depth: u32, budget: &mut u32) {
    if depth > 6 || *budget == 0 {
        return;
    }
    *budget -= 1;
    let Ok(entries) = fs.readdir(dir) else { return };
    for e in entries {
        if e.name == b"." || e.name == b".." {
            continue;
        }
        let _ = fs.lookup_in(dir, &e.name);
        let Ok(st) = fs.stat(e.ino) else { continue };
        match st.file_type {
            FileType::Dir => walk(fs, e.ino, depth + 1, budget),
            FileType::Symlink => {
                let _ = fs.readlink(e.ino);
            }
            _ => {
                let mut buf = vec![0u8; 65536];
                let mut off = 0u64;
                while let Ok(n) = fs.read(e.ino, off, &mut buf) {
                    if n == 0 || off > 1 << 24 {
                        break;
                    }
                    off += n as u64;
                }
            }
        }
    }
    let _ = fs.lookup("/link");
    let _ = fs.lookup("/d/e/../../link");
}

#[test]
fn random_metadata_corruption_never_panics() {
    let good = sample_image();
    let mut rng = Rng(99);
    let mut opened = 0;
    for round in 0..300 {
        let mut image = good.clone();
        for _ in 0..1 + rng.below(8) {
            let at = rng.below(40 * 4096);
            flip_bit_in(&mut image, at * 8 + rng.below(8));
        }
        let result = std::panic::catch_unwind(move || {
            let Ok(mut fs) = try_open(image) else { return false };
            let mut budget = 200;
            walk(&fs, Ino::ROOT, 0, &mut budget);
            let _ = fs
                .create_path("/new", 0o644)
                .and_then(|i| fs.write(i, 0, &[1u8; 70_000]));
            let _ = fs.mkdir_path("/d/newdir", 0o755);
            let _ = fs.rename_path("/d/e", "/moved");
            let _ = fs.unlink_path("/d/indirect");
            let _ = fs.truncate_path_for_test();
            let _ = fs.rmdir_path("/d/e");
            let _ = fs.sync();
            true
        });
        match result {
            Ok(o) => opened += usize::from(o),
            Err(_) => panic!("round {round} panicked (seed 99)"),
        }
    }
    assert!(
        opened > 100,
        "most corruptions leave an openable image ({opened} opened)"
    );
}

trait TruncateForTest {
    fn truncate_path_for_test(&mut self) -> Result<(), Ext2Error>;
}

impl TruncateForTest for Ext2Fs {
    fn truncate_path_for_test(&mut self) -> Result<(), Ext2Error> {
        let ino = self.lookup("/small")?;
        self.truncate(ino, 3)
    }
}
