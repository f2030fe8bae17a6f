//! Limits and edge cases: ENOSPC, name and link errors, triple-indirect sparse files,
//! truncation freeing indirect blocks, directory moves, unclean file systems.

use crate::support::{assert_fsck_clean, mkfs, open};
use conclave_ext2::{Ext2Error, Ext2Fs, Ino};

fn fresh(size: &str, extra: &[&str]) -> (std::sync::Arc<conclave_bd::MemBlockDevice>, Ext2Fs) {
    open(mkfs(None, size, extra))
}

#[test]
fn enospc_leaves_a_consistent_file_system() {
    let (dev, mut fs) = fresh("2M", &["-N", "64", "-m", "0"]);
    let before = fs.statfs();
    let keep = fs.create_path("/keep", 0o644).unwrap();
    fs.write(keep, 0, b"precious").unwrap();
    // One file larger than the disk: a short write, then NoSpace.
    let big = fs.create_path("/big", 0o644).unwrap();
    let chunk = vec![0xabu8; 1 << 20];
    let mut off = 0u64;
    let err = loop {
        match fs.write(big, off, &chunk) {
            Ok(n) => off += n as u64,
            Err(e) => break e,
        }
    };
    assert!(matches!(err, Ext2Error::NoSpace), "{err}");
    assert_eq!(err.errno(), 28);
    assert_eq!(fs.statfs().free_blocks, 0);
    assert_eq!(fs.stat(big).unwrap().size, off);
    assert!(
        off > 1_500_000,
        "most of the 2 MiB should have been written, got {off}"
    );
    // Directories and files that need blocks fail cleanly; those that don't still work.
    let mut made = 0;
    let err = loop {
        match fs.mkdir_path(format!("/d{made}"), 0o755) {
            Ok(_) => made += 1,
            Err(e) => break e,
        }
    };
    assert!(matches!(err, Ext2Error::NoSpace), "{err}");
    let err = loop {
        match fs.create_path(format!("/f{made}"), 0o644) {
            Ok(_) => made += 1,
            Err(e) => break e,
        }
    };
    assert!(matches!(err, Ext2Error::NoSpace), "{err}");
    fs.sync().unwrap();
    assert_fsck_clean(&dev.to_image());
    // Freeing space makes room again, and the accounting returns to where it was.
    assert_eq!(fs.read_all(keep).unwrap(), b"precious");
    fs.unlink_path("/big").unwrap();
    assert!(fs.statfs().free_blocks > 256);
    fs.write(keep, 8, b" again").unwrap();
    fs.sync().unwrap();
    assert_fsck_clean(&dev.to_image());
    for i in 0..made {
        let _ = fs.rmdir_path(format!("/d{i}"));
        let _ = fs.unlink_path(format!("/f{i}"));
    }
    fs.unlink_path("/keep").unwrap();
    fs.sync().unwrap();
    assert_eq!(fs.statfs(), before);
    assert_fsck_clean(&dev.to_image());
}

#[test]
fn inode_exhaustion_is_enospc() {
    let (dev, mut fs) = fresh("4M", &["-N", "32"]);
    let mut n = 0;
    let err = loop {
        match fs.create_path(format!("/f{n}"), 0o644) {
            Ok(_) => n += 1,
            Err(e) => break e,
        }
    };
    assert!(matches!(err, Ext2Error::NoSpace));
    assert_eq!(fs.statfs().free_inodes, 0);
    assert!(n >= 16);
    fs.sync().unwrap();
    assert_fsck_clean(&dev.to_image());
}

#[test]
fn name_errors_are_typed() {
    let (_dev, mut fs) = fresh("4M", &[]);
    let long = "x".repeat(256);
    let err = fs.create_path(format!("/{long}"), 0o644).unwrap_err();
    assert!(matches!(err, Ext2Error::NameTooLong));
    assert_eq!(err.errno(), 36);
    fs.create_path(format!("/{}", "y".repeat(255)), 0o644).unwrap();
    assert!(matches!(
        fs.lookup(format!("/{long}")),
        Err(Ext2Error::NameTooLong)
    ));
    fs.create_path("/f", 0o644).unwrap();
    assert_eq!(fs.create_path("/f", 0o644).unwrap_err().errno(), 17);
    assert_eq!(fs.mkdir_path("/f", 0o755).unwrap_err().errno(), 17);
    assert_eq!(fs.lookup("/nope").unwrap_err().errno(), 2);
    assert_eq!(fs.create_path("/nope/x", 0o644).unwrap_err().errno(), 2);
    assert_eq!(fs.create_path("/f/x", 0o644).unwrap_err().errno(), 20);
    fs.mkdir_path("/d", 0o755).unwrap();
    let d = fs.lookup("/d").unwrap();
    assert_eq!(fs.write(d, 0, b"x").unwrap_err().errno(), 21);
    assert_eq!(fs.unlink_path("/d").unwrap_err().errno(), 21);
    assert_eq!(fs.rmdir_path("/f").unwrap_err().errno(), 20);
    fs.create_path("/d/inner", 0o644).unwrap();
    assert_eq!(fs.rmdir_path("/d").unwrap_err().errno(), 39);
    assert_eq!(fs.rename_path("/f", "/d").unwrap_err().errno(), 21);
    assert_eq!(fs.rename_path("/d", "/f").unwrap_err().errno(), 20);
    assert_eq!(fs.symlink_path("z".repeat(4096), "/s").unwrap_err().errno(), 36);
    assert!(matches!(fs.stat(Ino(0)), Err(Ext2Error::Stale(0))));
}

#[test]
fn directory_moves_fix_dotdot_and_link_counts() {
    let (dev, mut fs) = fresh("8M", &[]);
    fs.mkdir_path("/a", 0o755).unwrap();
    fs.mkdir_path("/b", 0o755).unwrap();
    fs.mkdir_path("/a/sub", 0o755).unwrap();
    fs.create_path("/a/sub/file", 0o644).unwrap();
    assert_eq!(fs.stat_path("/a").unwrap().links, 3);
    assert_eq!(
        fs.rename_path("/a", "/a/sub/inside").unwrap_err().errno(),
        22,
        "a directory cannot move into its own subtree"
    );
    fs.rename_path("/a/sub", "/b/moved").unwrap();
    assert_eq!(fs.stat_path("/a").unwrap().links, 2);
    assert_eq!(fs.stat_path("/b").unwrap().links, 3);
    assert_eq!(fs.lookup("/b/moved/..").unwrap(), fs.lookup("/b").unwrap());
    assert!(fs.lookup("/b/moved/file").is_ok());
    // Replace an existing empty directory and an existing file.
    fs.mkdir_path("/a/empty", 0o755).unwrap();
    fs.rename_path("/b/moved", "/a/empty").unwrap();
    assert_eq!(fs.stat_path("/a").unwrap().links, 3);
    assert_eq!(fs.stat_path("/b").unwrap().links, 2);
    let f1 = fs.create_path("/b/one", 0o644).unwrap();
    fs.write(f1, 0, b"one").unwrap();
    let f2 = fs.create_path("/b/two", 0o644).unwrap();
    fs.write(f2, 0, &vec![2u8; 100_000]).unwrap();
    fs.rename_path("/b/one", "/b/two").unwrap();
    assert_eq!(fs.read_all(fs.lookup("/b/two").unwrap()).unwrap(), b"one");
    assert!(matches!(fs.stat(f2), Err(Ext2Error::Stale(_))));
    // Hard links count, and rename onto another link of the same file is a no-op.
    fs.link_path("/b/two", "/a/two-again").unwrap();
    assert_eq!(fs.stat(f1).unwrap().links, 2);
    fs.rename_path("/b/two", "/a/two-again").unwrap();
    assert_eq!(fs.stat(f1).unwrap().links, 2);
    fs.sync().unwrap();
    assert_fsck_clean(&dev.to_image());
}

#[test]
fn directories_grow_past_one_block_and_keep_their_entries() {
    let (dev, mut fs) = fresh("8M", &[]);
    fs.mkdir_path("/big", 0o755).unwrap();
    for i in 0..400 {
        fs.create_path(format!("/big/a-fairly-long-file-name-number-{i:05}"), 0o600)
            .unwrap();
    }
    assert!(fs.stat_path("/big").unwrap().size >= 3 * 4096);
    for i in (0..400).step_by(2) {
        fs.unlink_path(format!("/big/a-fairly-long-file-name-number-{i:05}"))
            .unwrap();
    }
    let names = fs.readdir(fs.lookup("/big").unwrap()).unwrap();
    assert_eq!(names.len(), 200 + 2);
    fs.sync().unwrap();
    assert_fsck_clean(&dev.to_image());
}

#[test]
fn sparse_write_past_4_gib_uses_triple_indirect_and_allocates_only_touched_blocks() {
    let (dev, mut fs) = fresh("16M", &[]);
    let f = fs.create_path("/sparse", 0o644).unwrap();
    let free0 = fs.statfs().free_blocks;
    let off = 5u64 << 30; // logical block 1310720, past the double-indirect range
    fs.write(f, off, b"far away").unwrap();
    // data + triple + double + single indirect
    assert_eq!(free0 - fs.statfs().free_blocks, 4);
    let st = fs.stat(f).unwrap();
    assert_eq!(st.size, off + 8);
    assert_eq!(st.blocks, 4 * 8);
    let mut buf = [1u8; 16];
    assert_eq!(fs.read(f, off - 8, &mut buf).unwrap(), 16);
    assert_eq!(&buf, b"\0\0\0\0\0\0\0\0far away");
    assert_eq!(fs.read(f, 1 << 32, &mut buf).unwrap(), 16);
    assert_eq!(buf, [0u8; 16]);
    fs.write(f, 12 * 4096 + 5, b"single").unwrap();
    assert_eq!(free0 - fs.statfs().free_blocks, 6);
    fs.sync().unwrap();
    assert_fsck_clean(&dev.to_image());
    // Shrinking below the triple-indirect range frees its three blocks; to zero, all.
    fs.truncate(f, 4 << 30).unwrap();
    assert_eq!(free0 - fs.statfs().free_blocks, 2);
    fs.truncate(f, 0).unwrap();
    assert_eq!(fs.statfs().free_blocks, free0);
    assert_eq!(fs.stat(f).unwrap().blocks, 0);
    let max = fs.max_file_size();
    assert_eq!(fs.write(f, max - 1, b"xy").unwrap_err().errno(), 27);
    fs.sync().unwrap();
    assert_fsck_clean(&dev.to_image());
}

#[test]
fn truncate_frees_data_and_indirect_blocks_and_zeroes_the_tail() {
    let (dev, mut fs) = fresh("16M", &[]);
    let f = fs.create_path("/t", 0o644).unwrap();
    let free0 = fs.statfs().free_blocks;
    let data: Vec<u8> = (0..5_000_000u32).map(|i| (i % 251) as u8).collect();
    fs.write(f, 0, &data).unwrap();
    let used = free0 - fs.statfs().free_blocks;
    assert_eq!(
        used,
        1221 + 1 + 1 + 1,
        "5 MB = 1221 data blocks + ind + dind + 1 ind below dind"
    );
    fs.truncate(f, 10_000).unwrap();
    assert_eq!(free0 - fs.statfs().free_blocks, 3);
    fs.truncate(f, 20_000).unwrap();
    let back = fs.read_all(f).unwrap();
    assert_eq!(&back[..10_000], &data[..10_000]);
    assert!(
        back[10_000..].iter().all(|&b| b == 0),
        "grown region reads as zeros"
    );
    fs.sync().unwrap();
    assert_fsck_clean(&dev.to_image());
}

#[test]
fn attributes_change_and_reads_leave_atime_alone() {
    let (dev, mut fs) = fresh("4M", &[]);
    let f = fs.create_path("/f", 0o600).unwrap();
    fs.write(f, 0, b"hello").unwrap();
    fs.chmod(f, 0o4751).unwrap();
    fs.chown(f, Some(1000), Some(70000)).unwrap();
    fs.utimes(f, Some(1_000_000), Some(2_000_000)).unwrap();
    let st = fs.stat(f).unwrap();
    assert_eq!(st.mode, 0o104751);
    assert_eq!((st.uid, st.gid), (1000, 70000));
    assert_eq!((st.atime, st.mtime), (1_000_000, 2_000_000));
    let mut buf = [0u8; 5];
    fs.read(f, 0, &mut buf).unwrap();
    assert_eq!(fs.stat(f).unwrap().atime, 1_000_000);
    fs.sync().unwrap();
    let image = dev.to_image();
    assert_fsck_clean(&image);
    let view = ext4_view::Ext4::load(Box::new(image)).unwrap();
    let md = view.metadata("/f").unwrap();
    assert_eq!((md.uid(), md.gid(), md.mode()), (1000, 70000, 0o4751));
}

#[test]
fn unclean_file_system_is_readable_but_refuses_writes() {
    let (dev, mut fs) = fresh("4M", &[]);
    fs.create_path("/f", 0o644).unwrap();
    // No sync: as if the process died here.
    let (_dev2, mut crashed) = open(dev.to_image());
    assert!(!crashed.was_clean());
    assert!(crashed.lookup("/").is_ok());
    let err = crashed.create_path("/g", 0o644).unwrap_err();
    assert!(matches!(err, Ext2Error::NeedsCheck));
    assert_eq!(err.errno(), 30);
    fs.sync().unwrap();
    let (_dev3, clean) = open(dev.to_image());
    assert!(clean.was_clean());
}

#[test]
fn a_directory_flagged_hashed_without_an_index_is_read_and_written_linearly() {
    let (dev, fs) = fresh("4M", &[]);
    drop(fs);
    // Set EXT2_INDEX_FL on the root inode (inode 2, group 0) by hand.
    let mut image = dev.to_image();
    let table = u32::from_le_bytes(image[4096 + 8..4096 + 12].try_into().unwrap()) as usize;
    let flags_at = table * 4096 + 256 + 32;
    image[flags_at + 1] |= 0x10;
    let (dev, mut fs) = open(image);
    assert!(fs.lookup("/lost+found").is_ok(), "reading stays possible");
    // As the kernel does: a bad index is read linearly, and the first write drops the
    // flag (real indexes: ext4.rs).
    fs.create_path("/x", 0o644).unwrap();
    fs.sync().unwrap();
    let image = dev.to_image();
    let root_flags = u32::from_le_bytes(image[flags_at..flags_at + 4].try_into().unwrap());
    assert_eq!(root_flags & 0x1000, 0);
    assert_fsck_clean(&image);
}

/// A device that counts block reads, to pin the metadata cache's effect.
struct CountingDevice {
    inner: conclave_bd::MemBlockDevice,
    reads: std::sync::atomic::AtomicU64,
}

impl conclave_bd::BlockDevice for CountingDevice {
    fn block_count(&self) -> u64 {
        self.inner.block_count()
    }
    fn read_block(&self, idx: u64, buf: &mut [u8; 4096]) -> Result<(), conclave_bd::BdError> {
        self.reads.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.inner.read_block(idx, buf)
    }
    fn write_block(&self, idx: u64, buf: &[u8; 4096]) -> Result<(), conclave_bd::BdError> {
        self.inner.write_block(idx, buf)
    }
    fn flush(&self) -> Result<(), conclave_bd::BdError> {
        Ok(())
    }
}

#[test]
fn sequential_reads_in_small_calls_read_each_metadata_block_once() {
    let tmp = tempfile::tempdir().unwrap();
    let data: Vec<u8> = (0..8_000_000u32).map(|i| (i * 7 % 253) as u8).collect();
    std::fs::write(tmp.path().join("big"), &data).unwrap();
    let image = mkfs(Some(tmp.path()), "32M", &[]);
    let dev = std::sync::Arc::new(CountingDevice {
        inner: conclave_bd::MemBlockDevice::from_image(image),
        reads: Default::default(),
    });
    let fs = Ext2Fs::open(dev.clone()).unwrap();
    let ino = fs.lookup("/big").unwrap();
    let start = dev.reads.load(std::sync::atomic::Ordering::Relaxed);
    let mut buf = vec![0u8; 4096];
    let mut off = 0u64;
    let mut back = Vec::new();
    loop {
        let n = fs.read(ino, off, &mut buf).unwrap();
        if n == 0 {
            break;
        }
        back.extend_from_slice(&buf[..n]);
        off += n as u64;
    }
    assert!(back == data);
    let reads = dev.reads.load(std::sync::atomic::Ordering::Relaxed) - start;
    let data_blocks = data.len().div_ceil(4096) as u64;
    // 1954 data blocks; metadata: ind + dind + 1 ind below it (cached), inode table block (cached).
    assert!(
        reads <= data_blocks + 4,
        "{reads} device reads for {data_blocks} data blocks"
    );
}

#[test]
fn writes_on_128_byte_inode_images_pass_e2fsck() {
    let (dev, mut fs) = fresh("8M", &["-I", "128"]);
    fs.mkdir_path("/d", 0o700).unwrap();
    let f = fs.create_path("/d/f", 0o644).unwrap();
    fs.write(f, 0, &vec![9u8; 70_000]).unwrap();
    fs.symlink_path("d/f", "/fast").unwrap();
    fs.symlink_path("q".repeat(200), "/slow").unwrap();
    fs.link_path("/d/f", "/hard").unwrap();
    fs.chown(f, Some(70_000), Some(5)).unwrap();
    fs.sync().unwrap();
    let image = dev.to_image();
    assert_fsck_clean(&image);
    let (_d, again) = open(image);
    assert_eq!(
        again.read_all(again.lookup("/fast").unwrap()).unwrap(),
        vec![9u8; 70_000]
    );
    assert_eq!(again.stat(f).unwrap().uid, 70_000);
}

#[test]
fn ext2fs_can_be_shared_between_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Ext2Fs>();
}
