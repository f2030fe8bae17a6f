//! Every ext2 layout `mke2fs` makes with its default features: block sizes 1 KiB to
//! 64 KiB, revision 0, image lengths that are whole 1 KiB but not 4 KiB units. Each
//! image is read through `Ext2Fs` over every device kind (memory, std file, crypt,
//! verity, vericrypt) and compared file by file with the tree it was made from; then a
//! scripted set of writes is applied to the image and to a copy of the tree, and
//! `e2fsck -fn`, `debugfs rdump` and `ext4-view` must all agree with the copy.

use crate::mkfs_images::compare;
use crate::support::{assert_fsck_clean, Rng};
use conclave_bd::{BlockDevice, CreateOptions, DeviceKind, DeviceSpec, KdfParams, MemBlockDevice, StdDevice};
use conclave_ext2::{Ext2Error, Ext2Fs};
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

/// Runs `mke2fs -t ext2 -b BS [-r 0] -d TREE` (e2fsprogs' default ext2 features:
/// ext_attr, resize_inode, dir_index, filetype, sparse_super, large_file) into a
/// fresh image of `size_kib` KiB and returns its bytes.
fn mke2fs(tree: &Path, bs: u32, rev0: bool, size_kib: u64, extra: &[&str]) -> Vec<u8> {
    let tmp = tempfile::tempdir().unwrap();
    let img = tmp.path().join("img");
    let mut cmd = Command::new("mke2fs");
    cmd.args(["-q", "-F"]);
    // ext2 unless the caller names another type (`-t ext3|ext4` in `extra`).
    if !extra.contains(&"-t") {
        cmd.args(["-t", "ext2"]);
    }
    cmd.args(["-b", &bs.to_string()]);
    if rev0 {
        cmd.args(["-r", "0"]);
    }
    cmd.args(["-E", "root_owner=0:0"]).args(extra).arg("-d").arg(tree);
    cmd.arg(&img).arg(format!("{size_kib}k"));
    let out = cmd
        .output()
        .expect("mke2fs (e2fsprogs) is required for these tests");
    assert!(
        out.status.success(),
        "mke2fs -b {bs} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::read(&img).unwrap()
}

/// File sizes around the block size, plus one that needs double-indirect blocks with
/// 1 KiB blocks (12 + 256 blocks are direct and single-indirect).
fn sizes(bs: usize) -> Vec<usize> {
    vec![0, 1, bs - 1, bs, bs + 1, 300 * 1024, 800 * 1024 + 5]
}

/// A tree: nested directories, files of `sizes(bs)`, short and long symlinks, and a
/// directory of 500 entries.
fn build_tree(root: &Path, bs: usize) {
    let mut rng = Rng(bs as u64);
    std::fs::create_dir_all(root.join("a/b/c")).unwrap();
    std::fs::create_dir_all(root.join("big")).unwrap();
    for (i, n) in sizes(bs).into_iter().enumerate() {
        std::fs::write(root.join(format!("f{i}")), rng.bytes(n)).unwrap();
        std::fs::write(root.join(format!("a/b/c/g{i}")), rng.bytes(n / 5)).unwrap();
    }
    for i in 0..500 {
        std::fs::write(root.join(format!("big/entry-{i:04}-with-a-longer-name")), b"").unwrap();
    }
    std::fs::set_permissions(root.join("f1"), std::fs::Permissions::from_mode(0o640)).unwrap();
    symlink("f2", root.join("short")).unwrap();
    symlink(format!("{}/f3", "a/../".repeat(40)), root.join("long")).unwrap();
    symlink("a/b", root.join("to_b")).unwrap();
}

/// Copies a directory tree (files, directories, symlinks, permission bits).
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let (src, dst) = (entry.path(), to.join(entry.file_name()));
        let meta = std::fs::symlink_metadata(&src).unwrap();
        if meta.file_type().is_symlink() {
            symlink(std::fs::read_link(&src).unwrap(), &dst).unwrap();
        } else if meta.is_dir() {
            copy_tree(&src, &dst);
        } else {
            std::fs::copy(&src, &dst).unwrap();
        }
        if !meta.file_type().is_symlink() {
            std::fs::set_permissions(&dst, meta.permissions()).unwrap();
        }
    }
}

/// The scripted writes, applied to `fs` and to the host tree `host` alike: create,
/// append, truncate (shrink and grow), rename (file, and a directory to another
/// parent), unlink, symlink, mkdir and create in the 500-entry directory.
fn scripted_writes(fs: &mut Ext2Fs, host: &Path, bs: usize) {
    let mut rng = Rng(99);
    let new = rng.bytes(3 * bs + 17);
    let ino = fs.create_path("/new.bin", 0o644).unwrap();
    assert_eq!(fs.write(ino, 0, &new).unwrap(), new.len());
    std::fs::write(host.join("new.bin"), &new).unwrap();
    std::fs::set_permissions(host.join("new.bin"), std::fs::Permissions::from_mode(0o644)).unwrap();

    let tail = rng.bytes(2 * bs + 7);
    let f4 = fs.lookup("/f4").unwrap();
    let size = fs.stat(f4).unwrap().size;
    assert_eq!(fs.write(f4, size, &tail).unwrap(), tail.len());
    let mut data = std::fs::read(host.join("f4")).unwrap();
    data.extend_from_slice(&tail);
    std::fs::write(host.join("f4"), &data).unwrap();

    for (name, len) in [("f6", 100 * 1024 + 3), ("f5", 0), ("f2", bs as u64 + 9)] {
        let ino = fs.lookup(format!("/{name}")).unwrap();
        fs.truncate(ino, len).unwrap();
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(host.join(name))
            .unwrap();
        f.set_len(len).unwrap();
    }

    fs.rename_path("/a/b/c/g2", "/a/moved").unwrap();
    std::fs::rename(host.join("a/b/c/g2"), host.join("a/moved")).unwrap();
    fs.rename_path("/a/b", "/big/b").unwrap();
    std::fs::rename(host.join("a/b"), host.join("big/b")).unwrap();
    fs.unlink_path("/f3").unwrap();
    std::fs::remove_file(host.join("f3")).unwrap();
    fs.unlink_path("/short").unwrap();
    std::fs::remove_file(host.join("short")).unwrap();
    fs.symlink_path("big/b/c", "/to_c").unwrap();
    symlink("big/b/c", host.join("to_c")).unwrap();

    fs.mkdir_path("/big/newdir", 0o755).unwrap();
    std::fs::create_dir(host.join("big/newdir")).unwrap();
    std::fs::set_permissions(host.join("big/newdir"), std::fs::Permissions::from_mode(0o755)).unwrap();
    for i in 0..40 {
        let name = format!("big/newdir/n{i}");
        let body = rng.bytes(i * 97);
        let ino = fs.create_path(format!("/{name}"), 0o600).unwrap();
        fs.write(ino, 0, &body).unwrap();
        std::fs::write(host.join(&name), &body).unwrap();
        std::fs::set_permissions(host.join(&name), std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    for i in (0..500).step_by(7) {
        let name = format!("big/entry-{i:04}-with-a-longer-name");
        fs.unlink_path(format!("/{name}")).unwrap();
        std::fs::remove_file(host.join(name)).unwrap();
    }
    fs.sync().unwrap();
}

/// Walks the host tree and returns (path, kind, bytes) for each node, for comparing
/// with a `debugfs rdump` of the image.
fn snapshot(root: &Path) -> Vec<(String, u8, Vec<u8>, u32)> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, u8, Vec<u8>, u32)>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        entries.sort();
        for p in entries {
            let rel = p.strip_prefix(root).unwrap().display().to_string();
            if rel == "lost+found" {
                continue;
            }
            let meta = std::fs::symlink_metadata(&p).unwrap();
            let mode = meta.permissions().mode() & 0o7777;
            if meta.file_type().is_symlink() {
                let t = std::fs::read_link(&p).unwrap();
                out.push((rel, b'l', t.as_os_str().as_encoded_bytes().to_vec(), 0));
            } else if meta.is_dir() {
                out.push((rel, b'd', Vec::new(), mode));
                walk(root, &p, out);
            } else {
                out.push((rel, b'f', std::fs::read(&p).unwrap(), mode));
            }
        }
    }
    let mut out = Vec::new();
    walk(root, root, &mut out);
    out
}

/// `debugfs -R "rdump / OUT"` of the image must equal the host tree.
fn assert_debugfs_matches(image: &[u8], host: &Path) {
    let tmp = tempfile::tempdir().unwrap();
    let img = tmp.path().join("img");
    std::fs::write(&img, image).unwrap();
    let out = tmp.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let res = Command::new("debugfs")
        .arg("-R")
        .arg(format!("rdump / {}", out.display()))
        .arg(&img)
        .output()
        .expect("debugfs (e2fsprogs) is required");
    assert!(res.status.success(), "{}", String::from_utf8_lossy(&res.stderr));
    let (want, got) = (snapshot(host), snapshot(&out));
    assert_eq!(want.len(), got.len(), "node count: debugfs rdump vs host tree");
    for (w, g) in want.iter().zip(&got) {
        assert_eq!((&w.0, w.1, w.3), (&g.0, g.1, g.3), "debugfs rdump node");
        assert!(w.2 == g.2, "debugfs rdump contents of {}", w.0);
    }
}

/// `ext4-view` reads the same bytes, targets and entries as the host tree.
fn assert_ext4_view_matches(image: Vec<u8>, host: &Path) {
    let fs = ext4_view::Ext4::load(Box::new(image)).expect("ext4-view loads the image");
    for (rel, kind, bytes, _) in snapshot(host) {
        let p = format!("/{rel}");
        match kind {
            b'l' => {
                let target = fs.read_link(p.as_str()).unwrap();
                let got: &[u8] = target.as_ref();
                assert_eq!(got, &bytes[..], "ext4-view link {p}");
            }
            b'd' => {
                fs.read_dir(p.as_str()).unwrap();
            }
            _ => assert!(fs.read(p.as_str()).unwrap() == bytes, "ext4-view contents of {p}"),
        }
    }
}

/// Opens `raw` (an image's bytes) on device `kind` made from it in `dir`.
fn device_from(raw: &[u8], kind: DeviceKind, dir: &Path) -> (Arc<dyn BlockDevice>, DeviceSpec) {
    let raw_path = dir.join(format!("{kind}.raw"));
    std::fs::write(&raw_path, raw).unwrap();
    let secret = dir.join("secret");
    conclave_testkit::write_private(&secret, b"correct horse battery staple");
    let mut spec = DeviceSpec::new(kind, dir.join(format!("{kind}.img")));
    if kind.has_tree() {
        spec = spec.tree(dir.join(format!("{kind}.tree")));
    }
    if kind.needs_secret() {
        spec = spec.secret_file(secret);
    }
    let opts = CreateOptions {
        kdf: KdfParams::MIN,
        journal_entries: 4096,
    };
    conclave_bd::create(&spec, &raw_path, &opts).unwrap();
    let dev: Arc<dyn BlockDevice> = match kind {
        DeviceKind::Std => Arc::new(StdDevice::open(&spec.image, false).unwrap()),
        _ => conclave_bd::open(&spec).unwrap(),
    };
    (dev, spec)
}

/// One layout end to end: every device reads the tree; writes on memory and on
/// vericrypt leave an image e2fsck, debugfs and ext4-view agree on.
fn check_layout(bs: u32, rev0: bool, size_kib: u64, extra: &[&str]) {
    let tmp = tempfile::tempdir().unwrap();
    let tree = tmp.path().join("tree");
    build_tree(&tree, bs as usize);
    let image = mke2fs(&tree, bs, rev0, size_kib, extra);
    assert_eq!(image.len() % 1024, 0);
    if size_kib % 4 != 0 && bs < 4096 {
        assert_ne!(image.len() % 4096, 0, "the image ends inside a device block");
    }

    for kind in DeviceKind::ALL {
        let dir = tmp.path().join(kind.name());
        std::fs::create_dir(&dir).unwrap();
        let (dev, _) = device_from(&image, kind, &dir);
        let fs = Ext2Fs::open(dev).unwrap_or_else(|e| panic!("{kind} -b {bs}: {e}"));
        assert_eq!(fs.block_size(), bs);
        assert_eq!(fs.geometry().revision, u32::from(!rev0));
        compare(&fs, &tree, "");
    }

    let host = tmp.path().join("host");
    copy_tree(&tree, &host);
    let dev = Arc::new(MemBlockDevice::from_image(image.clone()));
    let mut fs = Ext2Fs::open(dev.clone()).unwrap();
    scripted_writes(&mut fs, &host, bs as usize);
    compare(&fs, &host, "");
    let after = dev.to_image();
    assert_eq!(after.len(), image.len());
    assert_fsck_clean(&after);
    assert_debugfs_matches(&after, &host);
    if !rev0 {
        // ext4-view requires the `filetype` feature, which revision 0 cannot have.
        assert_ext4_view_matches(after.clone(), &host);
    }
    let (_, reopened) = (
        dev,
        Ext2Fs::open(Arc::new(MemBlockDevice::from_image(after))).unwrap(),
    );
    assert!(reopened.was_clean());
    compare(&reopened, &host, "");

    // The same writes through a protected device: read-modify-write of small blocks
    // inside encrypted, tree-checked 4 KiB device blocks.
    let dir = tmp.path().join("vericrypt-rw");
    std::fs::create_dir(&dir).unwrap();
    let (dev, spec) = device_from(&image, DeviceKind::Vericrypt, &dir);
    let mut fs = Ext2Fs::open(dev).unwrap();
    let host2 = tmp.path().join("host2");
    copy_tree(&tree, &host2);
    scripted_writes(&mut fs, &host2, bs as usize);
    drop(fs);
    let fs = Ext2Fs::open(conclave_bd::open(&spec).unwrap()).unwrap();
    assert!(fs.was_clean());
    compare(&fs, &host2, "");
}

#[test]
fn blocks_of_1k_on_an_image_not_whole_4k_blocks() {
    check_layout(1024, false, 16 * 1024 + 3, &[]);
}

#[test]
fn blocks_of_2k_on_an_image_not_whole_4k_blocks() {
    check_layout(2048, false, 16 * 1024 + 2, &[]);
}

#[test]
fn blocks_of_4k_with_default_ext2_features() {
    check_layout(4096, false, 16 * 1024, &[]);
}

#[test]
fn blocks_of_8k() {
    check_layout(8192, false, 16 * 1024, &[]);
}

#[test]
fn blocks_of_64k() {
    check_layout(65536, false, 32 * 1024, &["-N", "1024"]);
}

/// ext3 and ext4 as `mke2fs` makes them by default (journal, extents, flex_bg,
/// metadata_csum, 64bit when asked), on every device kind, through the same checks.
#[test]
fn ext4_and_ext3_images_on_every_device() {
    check_layout(
        4096,
        false,
        16 * 1024,
        &["-t", "ext4", "-O", "metadata_csum,64bit"],
    );
    check_layout(1024, false, 16 * 1024 + 3, &["-t", "ext4"]);
    check_layout(2048, false, 16 * 1024 + 2, &["-t", "ext3"]);
}

#[test]
fn revision_0_with_1k_and_4k_blocks() {
    check_layout(1024, true, 16 * 1024 + 1, &[]);
    check_layout(4096, true, 16 * 1024, &[]);
}

#[test]
fn truncated_and_odd_sized_images_say_what_the_superblock_expects() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir(tmp.path().join("t")).unwrap();
    let image = mke2fs(&tmp.path().join("t"), 1024, false, 4099, &[]);
    for (len, tail) in [
        (4098 * 1024, "(truncated?)"),
        (
            4099 * 1024 - 1,
            "(not a multiple of 1024: truncated or not an ext2 image)",
        ),
    ] {
        let path = tmp.path().join("cut.img");
        std::fs::write(&path, &image[..len]).unwrap();
        let dev = Arc::new(StdDevice::open(&path, true).unwrap());
        let err = Ext2Fs::open(dev).unwrap_err();
        assert!(matches!(err, Ext2Error::ImageSize { .. }), "{err}");
        assert_eq!(
            err.to_string(),
            format!("image is {len} bytes; its superblock expects 4099 blocks of 1024 bytes = 4197376 bytes {tail}")
        );
        assert_eq!(err.errno(), 117);
    }
    let err = Ext2Fs::open(Arc::new(MemBlockDevice::from_image(image[..1500].to_vec()))).unwrap_err();
    assert_eq!(
        err.to_string(),
        "corrupt file system: image of 1500 bytes is too small to hold an ext2 superblock (at bytes 1024..2048)"
    );
    // A longer image than the file system is fine (mke2fs on a partition does that).
    let mut longer = image.clone();
    longer.extend_from_slice(&[0u8; 3000]);
    Ext2Fs::open(Arc::new(MemBlockDevice::from_image(longer))).unwrap();
}

#[test]
fn unsupported_features_are_refused_by_name() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path().join("t");
    std::fs::create_dir(&t).unwrap();
    std::fs::write(t.join("f"), b"data").unwrap();
    let open = |image: Vec<u8>| Ext2Fs::open(Arc::new(MemBlockDevice::from_image(image)));
    // ext4 with mke2fs' defaults opens (ext4.rs); multi-mount protection does not.
    let mut cmd = Command::new("mke2fs");
    let img = tmp.path().join("ext4");
    let out = cmd
        .args(["-q", "-F", "-t", "ext4", "-O", "^has_journal,mmp", "-d"])
        .arg(&t)
        .arg(&img)
        .arg("8M")
        .output()
        .unwrap();
    assert!(out.status.success());
    let err = open(std::fs::read(&img).unwrap()).unwrap_err();
    assert_eq!(err.to_string(), "unsupported: mmp");
    assert_eq!(err.errno(), 95);
    // Incompat bits set by hand, known and unknown.
    let mut image = mke2fs(&t, 4096, false, 8192, &[]);
    let incompat = u32::from_le_bytes(image[1024 + 96..1024 + 100].try_into().unwrap());
    image[1024 + 96..1024 + 100].copy_from_slice(&(incompat | 0x8000 | 0x10000 | 0x100_0000).to_le_bytes());
    assert_eq!(
        open(image).unwrap_err().to_string(),
        "unsupported: inline_data, encrypt, incompat_0x1000000"
    );
    // A journal that needs recovery.
    let mut image = mke2fs(&t, 4096, false, 8192, &[]);
    image[1024 + 96] |= 0x4;
    assert_eq!(
        open(image).unwrap_err().to_string(),
        "needs journal recovery, run e2fsck"
    );
}

#[test]
fn unknown_ro_compat_features_open_read_only_only() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path().join("t");
    std::fs::create_dir(&t).unwrap();
    std::fs::write(t.join("f"), b"data").unwrap();
    let mut image = mke2fs(&t, 1024, false, 4096, &[]);
    let ro = u32::from_le_bytes(image[1024 + 100..1024 + 104].try_into().unwrap());
    image[1024 + 100..1024 + 104].copy_from_slice(&(ro | 0x100 | 0x100_0000).to_le_bytes());
    let dev = Arc::new(MemBlockDevice::from_image(image.clone()));
    let err = Ext2Fs::open(dev.clone()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "writing is not supported with features quota, ro_compat_0x1000000: open read-only (--read-only)"
    );
    assert_eq!(err.errno(), 30);
    let mut fs = Ext2Fs::open_read_only(dev.clone()).unwrap();
    assert_eq!(fs.read_all(fs.lookup("/f").unwrap()).unwrap(), b"data");
    assert!(fs.feature_names().contains(&"quota".to_string()));
    let err = fs.create_path("/g", 0o644).unwrap_err();
    assert_eq!(err.errno(), 30);
    fs.sync().unwrap();
    assert!(dev.to_image() == image, "a read-only open never writes");
}

#[test]
fn flex_bg_sparse_super2_and_the_ext4_inode_features_are_read_and_written() {
    // Five groups of 1 KiB blocks whose bitmaps and inode tables flex_bg packs into
    // group 0, backups only where sparse_super2 puts them, 256-byte inodes.
    check_layout(
        1024,
        false,
        40 * 1024 + 1,
        &[
            "-I",
            "256",
            "-O",
            "flex_bg,sparse_super2,huge_file,dir_nlink,extra_isize",
        ],
    );
}

#[test]
fn sparse_writes_reach_triple_indirect_blocks_with_1k_and_64k_blocks() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path().join("t");
    std::fs::create_dir(&t).unwrap();
    for (bs, size_kib, extra) in [
        (1024u32, 8 * 1024, &[][..]),
        (65536, 16 * 1024, &["-N", "256"][..]),
    ] {
        let image = mke2fs(&t, bs, false, size_kib, extra);
        let dev = Arc::new(MemBlockDevice::from_image(image));
        let mut fs = Ext2Fs::open(dev.clone()).unwrap();
        let f = fs.create_path("/sparse", 0o644).unwrap();
        let free0 = fs.statfs().free_blocks;
        let p = u64::from(bs / 4);
        let tind = (12 + p + p * p) * u64::from(bs);
        assert_eq!(fs.write(f, tind + 3, b"tail").unwrap(), 4);
        assert_eq!(
            free0 - fs.statfs().free_blocks,
            4,
            "-b {bs}: data + triple + double + single indirect"
        );
        let mut buf = [1u8; 16];
        assert_eq!(fs.read(f, tind - 9, &mut buf).unwrap(), 16);
        assert_eq!(&buf, b"\0\0\0\0\0\0\0\0\0\0\0\0tail");
        assert_eq!(fs.stat(f).unwrap().blocks, 4 * u64::from(bs / 512));
        let max = fs.max_file_size();
        assert_eq!(max, conclave_ext2::max_blocks(bs) * u64::from(bs));
        assert_eq!(fs.write(f, max - 1, b"xy").unwrap_err().errno(), 27);
        fs.sync().unwrap();
        assert_fsck_clean(&dev.to_image());
        fs.truncate(f, tind).unwrap();
        assert_eq!(
            fs.statfs().free_blocks,
            free0,
            "-b {bs}: truncation frees all four"
        );
        fs.sync().unwrap();
        assert_fsck_clean(&dev.to_image());
    }
}

/// Counts device block reads.
struct Counting {
    inner: MemBlockDevice,
    reads: std::sync::atomic::AtomicU64,
    writes: std::sync::atomic::AtomicU64,
}

impl BlockDevice for Counting {
    fn block_count(&self) -> u64 {
        self.inner.block_count()
    }
    fn byte_len(&self) -> u64 {
        self.inner.byte_len()
    }
    fn read_block(&self, idx: u64, buf: &mut [u8; 4096]) -> Result<(), conclave_bd::BdError> {
        self.reads.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.inner.read_block(idx, buf)
    }
    fn write_block(&self, idx: u64, buf: &[u8; 4096]) -> Result<(), conclave_bd::BdError> {
        self.writes.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.inner.write_block(idx, buf)
    }
    fn flush(&self) -> Result<(), conclave_bd::BdError> {
        Ok(())
    }
}

#[test]
fn small_blocks_read_and_write_each_device_block_once_in_a_contiguous_file() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path().join("t");
    std::fs::create_dir(&t).unwrap();
    let data = Rng(5).bytes(300 * 1024);
    std::fs::write(t.join("f"), &data).unwrap();
    let image = mke2fs(&t, 1024, false, 4096, &[]);
    let dev = Arc::new(Counting {
        inner: MemBlockDevice::from_image(image),
        reads: Default::default(),
        writes: Default::default(),
    });
    let mut fs = Ext2Fs::open(dev.clone()).unwrap();
    let f = fs.lookup("/f").unwrap();
    let start = dev.reads.load(std::sync::atomic::Ordering::Relaxed);
    assert!(fs.read_all(f).unwrap() == data);
    let reads = dev.reads.load(std::sync::atomic::Ordering::Relaxed) - start;
    // 300 KiB = 75 device blocks of data (mke2fs lays the file out contiguously,
    // around its indirect blocks), plus the inode and indirect blocks.
    assert!(
        reads <= 75 + 12,
        "{reads} device reads for 75 device blocks of data"
    );
    // Writing it again as a new file: whole blocks go down in runs.
    let g = fs.create_path("/g", 0o644).unwrap();
    let (r0, w0) = (
        dev.reads.load(std::sync::atomic::Ordering::Relaxed),
        dev.writes.load(std::sync::atomic::Ordering::Relaxed),
    );
    assert_eq!(fs.write(g, 0, &data).unwrap(), data.len());
    let reads = dev.reads.load(std::sync::atomic::Ordering::Relaxed) - r0;
    let writes = dev.writes.load(std::sync::atomic::Ordering::Relaxed) - w0;
    eprintln!("300 KiB at 1 KiB blocks: {writes} device writes, {reads} reads");
    assert!(
        writes <= 75 + 12 && reads <= 12,
        "{writes} device writes and {reads} reads for 75 device blocks of data"
    );
    fs.sync().unwrap();
    assert!(fs.read_all(g).unwrap() == data);
    assert_fsck_clean(&dev.inner.to_image());
}
