//! Images made by `mkfs.ext2 -d` from a generated tree read back byte-identical.

use crate::support::{assert_fsck_clean, mkfs, open, Rng};
use conclave_ext2::{Ext2Error, Ext2Fs, FileType};
use std::collections::BTreeSet;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::Path;

const SIZES: &[usize] = &[
    0,
    1,
    4095,
    4096,
    4097,
    48 * 1024 + 1,
    4 * 1024 * 1024 + 200 * 1024 + 7,
];

/// A tree with nested dirs, files of edge-case sizes, fast and slow symlinks, a
/// symlink to a directory, and a directory spanning several blocks.
fn build_tree(root: &Path) {
    let mut rng = Rng(7);
    std::fs::create_dir_all(root.join("a/b/c")).unwrap();
    std::fs::create_dir_all(root.join("many")).unwrap();
    for (i, &n) in SIZES.iter().enumerate() {
        std::fs::write(root.join(format!("f{i}")), rng.bytes(n)).unwrap();
        std::fs::write(root.join(format!("a/b/c/g{i}")), rng.bytes(n / 3)).unwrap();
    }
    for i in 0..300 {
        std::fs::write(
            root.join(format!("many/entry-with-a-longish-name-{i:04}")),
            format!("{i}"),
        )
        .unwrap();
    }
    let p = root.join("f1");
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o640)).unwrap();
    symlink("f2", root.join("fast")).unwrap();
    symlink("x".repeat(59), root.join("fast59")).unwrap();
    symlink("y".repeat(60), root.join("slow60")).unwrap();
    symlink(format!("{}/f3", "a/../".repeat(30)), root.join("slow")).unwrap();
    symlink("a/b", root.join("to_b")).unwrap();
    symlink("/nonexistent", root.join("dangling")).unwrap();
}

/// Walks the host tree and compares every entry with what `fs` reads.
pub fn compare(fs: &Ext2Fs, host: &Path, rel: &str) {
    let dir = fs.lookup(if rel.is_empty() { "/" } else { rel }).unwrap();
    let mut ours: BTreeSet<String> = fs
        .readdir(dir)
        .unwrap()
        .iter()
        .map(|e| e.name_lossy())
        .filter(|n| n != "." && n != "..")
        .collect();
    ours.remove("lost+found");
    let mut theirs = BTreeSet::new();
    for entry in std::fs::read_dir(host).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().into_string().unwrap();
        theirs.insert(name.clone());
        let path = format!("{rel}/{name}");
        let meta = std::fs::symlink_metadata(entry.path()).unwrap();
        // Every name is found through the directory (its hash index, if any).
        let st = fs.lstat_path(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        assert_eq!(
            u32::from(st.mode) & 0o7777,
            meta.permissions().mode() & 0o7777,
            "{path}"
        );
        if meta.is_dir() {
            assert_eq!(st.file_type, FileType::Dir);
            compare(fs, &entry.path(), &path);
        } else if meta.file_type().is_symlink() {
            assert_eq!(st.file_type, FileType::Symlink, "{path}");
            let target = std::fs::read_link(entry.path()).unwrap();
            assert_eq!(
                fs.readlink_path(&path).unwrap(),
                target.as_os_str().as_encoded_bytes(),
                "{path}"
            );
            assert_eq!(st.size, target.as_os_str().len() as u64);
        } else {
            assert_eq!(st.file_type, FileType::File);
            let want = std::fs::read(entry.path()).unwrap();
            assert_eq!(st.size, want.len() as u64, "{path}");
            let got = fs.read_all(st.ino).unwrap();
            assert!(got == want, "{path}: contents differ");
            // Unaligned reads across block boundaries.
            for (off, len) in [
                (1usize, 4096usize),
                (4095, 2),
                (4097, 10000),
                (want.len() / 2, 70000),
            ] {
                let mut buf = vec![0u8; len];
                let n = fs.read(st.ino, off as u64, &mut buf).unwrap();
                let end = (off + len).min(want.len());
                let expect = if off < want.len() {
                    &want[off..end]
                } else {
                    &[][..]
                };
                assert_eq!(&buf[..n], expect, "{path} at {off}+{len}");
            }
        }
    }
    assert_eq!(ours, theirs, "entries of {rel}/");
}

#[test]
fn mkfs_tree_reads_back_byte_identical_with_256_byte_inodes() {
    let tmp = tempfile::tempdir().unwrap();
    build_tree(tmp.path());
    let image = mkfs(Some(tmp.path()), "64M", &[]);
    let (_dev, fs) = open(image);
    compare(&fs, tmp.path(), "");
    let st = fs.stat_path("/f6").unwrap();
    assert_eq!(
        st.blocks,
        (SIZES[6].div_ceil(4096) as u64 + 3) * 8,
        "double-indirect block count"
    );
    assert_eq!(st.links, 1);
    assert!(st.mtime > 0 && st.atime > 0 && st.ctime > 0);
    assert_eq!(fs.stat_path("/a").unwrap().links, 3);
}

#[test]
fn mkfs_tree_reads_back_byte_identical_with_128_byte_inodes() {
    let tmp = tempfile::tempdir().unwrap();
    build_tree(tmp.path());
    let image = mkfs(Some(tmp.path()), "64M", &["-I", "128"]);
    let (_dev, fs) = open(image);
    compare(&fs, tmp.path(), "");
}

#[test]
fn symlinks_resolve_in_the_middle_of_paths_and_loops_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    build_tree(tmp.path());
    let (dev, mut fs) = open(mkfs(Some(tmp.path()), "64M", &[]));
    let via_link = fs.lookup("/to_b/c/g3").unwrap();
    assert_eq!(via_link, fs.lookup("/a/b/c/g3").unwrap());
    assert_eq!(fs.lookup("/slow").unwrap(), fs.lookup("/f3").unwrap());
    assert_eq!(
        fs.lookup("/a/b/../b/./c/../../b/c/g0").unwrap(),
        fs.lookup("/a/b/c/g0").unwrap()
    );
    assert!(matches!(fs.lookup("/dangling"), Err(Ext2Error::NotFound)));
    assert!(matches!(fs.lookup("/f1/x"), Err(Ext2Error::NotADirectory)));
    fs.symlink_path("loop2", "/loop1").unwrap();
    fs.symlink_path("loop1", "/loop2").unwrap();
    let err = fs.lookup("/loop1/x").unwrap_err();
    assert!(matches!(err, Ext2Error::Loop), "{err}");
    assert_eq!(err.errno(), 40);
    assert_eq!(
        fs.lookup_nofollow("/loop1").unwrap(),
        fs.lookup_nofollow("/loop1").unwrap()
    );
    fs.sync().unwrap();
    assert_fsck_clean(&dev.to_image());
}

#[test]
fn fifos_and_xattr_blocks_from_mkfs_are_released_cleanly() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    std::fs::write(root.join("f"), b"data").unwrap();
    std::fs::write(root.join("g"), b"other").unwrap();
    let out = std::process::Command::new("python3")
        .arg("-c")
        .arg(
            "import os,sys; d=sys.argv[1]; os.setxattr(d+'/f','user.big',b'v'*1000); \
             os.setxattr(d+'/g','user.big',b'v'*1000); os.mkfifo(d+'/fifo')",
        )
        .arg(root)
        .status()
        .expect("python3 is required to make xattrs and a FIFO");
    assert!(out.success());
    let (dev, mut fs) = open(mkfs(Some(root), "8M", &[]));
    let free0 = fs.statfs();
    let st = fs.lstat_path("/fifo").unwrap();
    assert_eq!(st.file_type, FileType::Special);
    assert_eq!(fs.read(st.ino, 0, &mut [0u8; 4]).unwrap_err().errno(), 22);
    // mkfs gives each file its own xattr block (refcount 1).
    let f = fs.stat_path("/f").unwrap();
    assert_eq!(f.blocks, 16, "one data block plus the xattr block");
    fs.unlink_path("/fifo").unwrap();
    fs.unlink_path("/f").unwrap();
    fs.sync().unwrap();
    assert_fsck_clean(&dev.to_image());
    fs.unlink_path("/g").unwrap();
    fs.sync().unwrap();
    assert_fsck_clean(&dev.to_image());
    let free1 = fs.statfs();
    assert_eq!(free1.free_inodes, free0.free_inodes + 3);
    assert_eq!(
        free1.free_blocks,
        free0.free_blocks + 4,
        "two data blocks and two xattr blocks"
    );
}
