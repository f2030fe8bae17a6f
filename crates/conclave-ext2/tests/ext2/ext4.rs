//! ext3/ext4 images made by `mke2fs` (the oracle): read file by file, written with a
//! script of operations and then checked by `e2fsck -fn`, `debugfs` and `ext4-view`;
//! flipped bytes in checksummed metadata are errors naming the structure; a journal
//! holding transactions is replayed.

use conclave_bd::MemBlockDevice;
use conclave_ext2::{Ext2Error, Ext2Fs, FileType};
use std::collections::BTreeSet;
use std::os::unix::fs::symlink;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use crate::mkfs_images::compare;
use crate::support::{e2fsck, open};

/// Entries in the big (hashed) directory.
const BIG_DIR: usize = 2000;

/// Byte `i` of generated file `seed`.
fn pattern(seed: usize, i: usize) -> u8 {
    ((i * 31 + seed * 7) % 251) as u8
}

/// The tree every image is made from: nested dirs, files from 0 bytes to several
/// extents, symlinks, and a 2000-entry directory (indexed by `e2fsck -D`).
fn build_tree(root: &Path) {
    std::fs::create_dir_all(root.join("a/b/c")).unwrap();
    std::fs::create_dir_all(root.join("big")).unwrap();
    for (i, n) in [0usize, 1, 1023, 1024, 4097, 70_000, 1_300_000]
        .into_iter()
        .enumerate()
    {
        let data: Vec<u8> = (0..n).map(|j| pattern(i, j)).collect();
        std::fs::write(root.join(format!("f{i}")), &data).unwrap();
        std::fs::write(root.join(format!("a/b/c/g{i}")), &data[..n / 3]).unwrap();
    }
    for i in 0..BIG_DIR {
        std::fs::write(root.join(format!("big/entry-{i:05}")), format!("{i}")).unwrap();
    }
    symlink("f2", root.join("fast")).unwrap();
    symlink("y".repeat(80), root.join("slow")).unwrap();
}

/// `mke2fs -t TYPE -b BS [-O opts] -d tree`, then `e2fsck -fyD` to index directories.
fn make_image(fs_type: &str, bs: u32, opts: Option<&str>, tree: &Path) -> Vec<u8> {
    let tmp = tempfile::tempdir().unwrap();
    let img = tmp.path().join("img");
    let mut cmd = Command::new("mke2fs");
    cmd.args([
        "-q",
        "-F",
        "-t",
        fs_type,
        "-b",
        &bs.to_string(),
        "-E",
        "root_owner=0:0",
    ]);
    if let Some(o) = opts {
        cmd.args(["-O", o]);
    }
    cmd.arg("-d").arg(tree).arg(&img).arg("32M");
    let out = cmd.output().expect("mke2fs (e2fsprogs) is required");
    assert!(
        out.status.success(),
        "mke2fs: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = Command::new("e2fsck").args(["-fyD"]).arg(&img).output().unwrap();
    assert!(out.status.code().unwrap_or(8) < 4, "e2fsck -fyD: {out:?}");
    std::fs::read(&img).unwrap()
}

/// What `debugfs -R CMD` prints.
fn debugfs_out(image: &[u8], cmd: &str) -> String {
    let tmp = tempfile::tempdir().unwrap();
    let img = tmp.path().join("img");
    std::fs::write(&img, image).unwrap();
    let out = Command::new("debugfs")
        .args(["-R", cmd])
        .arg(&img)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Names `debugfs -R 'ls -l DIR'` lists.
fn debugfs_names(image: &[u8], dir: &str) -> BTreeSet<String> {
    let tmp = tempfile::tempdir().unwrap();
    let img = tmp.path().join("img");
    std::fs::write(&img, image).unwrap();
    let out = Command::new("debugfs")
        .args(["-R", &format!("ls -l {dir}")])
        .arg(&img)
        .output()
        .unwrap();
    // `ls -l` also lists an entry freed in place with inode 0 (an unlinked
    // name that was first in its block: ext4 and we zero its inode rather
    // than merge it into a previous entry), so those lines are not names.
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.split_whitespace().next() != Some("0"))
        .filter_map(|l| l.split_whitespace().last().map(str::to_string))
        .filter(|n| n != "." && n != "..")
        .collect()
}

const CONFIGS: &[(&str, u32, Option<&str>)] = &[
    ("ext3", 1024, None),
    ("ext3", 4096, None),
    ("ext4", 1024, None),
    ("ext4", 2048, None),
    ("ext4", 4096, None),
    ("ext4", 4096, Some("metadata_csum,64bit")),
    ("ext4", 1024, Some("metadata_csum,64bit")),
    ("ext4", 4096, Some("^metadata_csum,uninit_bg")),
];

#[test]
fn mke2fs_ext3_and_ext4_images_read_file_by_file() {
    let tmp = tempfile::tempdir().unwrap();
    build_tree(tmp.path());
    for &(t, bs, opts) in CONFIGS {
        eprintln!("{t} -b {bs} -O {opts:?}");
        let image = make_image(t, bs, opts, tmp.path());
        let (_dev, fs) = open(image);
        compare(&fs, tmp.path(), "");
        assert_eq!(fs.block_size(), bs, "{t} {bs} {opts:?}");
    }
}

/// Writes every other block of `len` blocks, then fills the gaps: the first pass
/// makes one extent per block (the tree grows past the 4 the inode holds).
fn fragmented_write(fs: &mut Ext2Fs, path: &str, bs: usize, len: usize) -> Vec<u8> {
    let ino = fs.create_path(path, 0o644).unwrap();
    let data: Vec<u8> = (0..len * bs).map(|j| pattern(99, j)).collect();
    for pass in [0, 1] {
        for b in (pass..len).step_by(2) {
            let chunk = &data[b * bs..(b + 1) * bs];
            // Occupy the block after each written one so extents cannot merge.
            assert_eq!(fs.write(ino, (b * bs) as u64, chunk).unwrap(), bs);
            if pass == 0 {
                let spacer = format!("{path}.s{b}");
                let s = fs.create_path(&spacer, 0o644).unwrap();
                fs.write(s, 0, b"x").unwrap();
            }
        }
    }
    data
}

#[test]
fn scripted_writes_keep_ext4_images_fsck_clean_and_readable_by_others() {
    let tmp = tempfile::tempdir().unwrap();
    build_tree(tmp.path());
    for &(t, bs, opts) in &[
        ("ext4", 4096u32, Some("metadata_csum,64bit")),
        ("ext4", 1024, None),
        ("ext3", 4096, None),
    ] {
        eprintln!("{t} -b {bs} -O {opts:?}");
        let image = make_image(t, bs, opts, tmp.path());
        let (dev, mut fs) = open(image);
        let bsz = bs as usize;
        // Create, append past 4 extents (fragmented), truncate, rename, unlink, mkdir
        // in the hashed directory.
        let frag = fragmented_write(&mut fs, "/frag", bsz, 40);
        let f5 = fs.lookup("/f5").unwrap();
        let mut f5_data = fs.read_all(f5).unwrap();
        let tail: Vec<u8> = (0..3 * bsz + 17).map(|j| pattern(5, j + 7)).collect();
        fs.write(f5, f5_data.len() as u64, &tail).unwrap();
        f5_data.extend_from_slice(&tail);
        let f6 = fs.lookup("/f6").unwrap();
        fs.truncate(f6, 12_345).unwrap();
        fs.rename_path("/f4", "/a/b/renamed").unwrap();
        fs.unlink_path("/f3").unwrap();
        fs.unlink_path("/big/entry-00007").unwrap();
        fs.mkdir_path("/big/newdir", 0o755).unwrap();
        fs.create_path("/big/newdir/inner", 0o644).unwrap();
        fs.create_path("/big/zz-new-file", 0o644).unwrap();
        for i in 0..10 {
            fs.create_path(format!("/big/added-{i}"), 0o644).unwrap();
        }
        for i in 0..10 {
            fs.lookup(format!("/big/added-{i}")).unwrap();
        }
        // A second fragmented file cut back to 3 blocks: its tree shrinks into the inode.
        let frag2 = fragmented_write(&mut fs, "/a/frag2", bsz, 12);
        let f2 = fs.lookup("/a/frag2").unwrap();
        fs.truncate(f2, 3 * bsz as u64 - 5).unwrap();
        fs.sync().unwrap();
        let image = dev.to_image();
        if t == "ext4" {
            let stat = debugfs_out(&image, "stat /frag");
            assert!(stat.contains("(ETB0)"), "/frag has an extent tree block:\n{stat}");
            let stat = debugfs_out(&image, "stat /a/frag2");
            assert!(
                stat.contains("EXTENTS:") && !stat.contains("ETB"),
                "/a/frag2 fits in its inode again:\n{stat}"
            );
        }
        let (code, text) = e2fsck(&image);
        assert_eq!(code, 0, "{t} {bs} {opts:?}: e2fsck -fn:\n{text}");
        // debugfs lists the same names in the hashed directory.
        let names = debugfs_names(&image, "/big");
        let ours: BTreeSet<String> = fs
            .readdir(fs.lookup("/big").unwrap())
            .unwrap()
            .iter()
            .map(|e| e.name_lossy())
            .filter(|n| n != "." && n != "..")
            .collect();
        assert_eq!(names, ours);
        assert_eq!(names.len(), BIG_DIR - 1 + 12);
        // The adds went into the leaves the index names: still indexed (e2fsck -fn
        // above checked every hash range).
        let stat = debugfs_out(&image, "stat /big");
        let flags = stat.split("Flags: 0x").nth(1).unwrap();
        let flags = u32::from_str_radix(flags.split_whitespace().next().unwrap(), 16).unwrap();
        assert_ne!(flags & 0x1000, 0, "/big keeps its index:\n{stat}");
        // ext4-view reads the same bytes.
        let view = ext4_view::Ext4::load(Box::new(image)).unwrap();
        assert_eq!(view.read("/frag").unwrap(), frag);
        assert_eq!(view.read("/f5").unwrap(), f5_data);
        assert_eq!(view.read("/f6").unwrap().len(), 12_345);
        assert_eq!(view.read("/a/b/renamed").unwrap().len(), 4097);
        assert!(!view.exists("/f3").unwrap());
        assert_eq!(fs.read_all(fs.lookup("/frag").unwrap()).unwrap(), frag);
        assert_eq!(view.read("/a/frag2").unwrap(), &frag2[..3 * bsz - 5]);
    }
}

/// The byte offset of inode `ino`'s slot, read from the image's own tables.
fn inode_offset(image: &[u8], ino: u32) -> usize {
    let sb = &image[1024..2048];
    let u32_at = |b: &[u8], o: usize| u32::from_le_bytes(b[o..o + 4].try_into().unwrap());
    let bs = 1024usize << u32_at(sb, 0x18);
    let ipg = u32_at(sb, 0x28);
    let isz = usize::from(u16::from_le_bytes([sb[0x58], sb[0x59]]));
    let ds = if u32_at(sb, 0x60) & 0x80 != 0 {
        usize::from(u16::from_le_bytes([sb[0xFE], sb[0xFF]]))
    } else {
        32
    };
    let gdt = (u32_at(sb, 0x14) as usize + 1) * bs;
    let g = ((ino - 1) / ipg) as usize;
    let table = u32_at(&image[gdt + g * ds..], 8) as usize;
    table * bs + ((ino - 1) % ipg) as usize * isz
}

#[test]
fn flipped_bytes_in_checksummed_metadata_name_the_structure() {
    let tmp = tempfile::tempdir().unwrap();
    build_tree(tmp.path());
    let image = make_image("ext4", 1024, Some("metadata_csum,64bit"), tmp.path());
    let (_dev, fs) = open(image.clone());
    let f6 = fs.lookup("/f6").unwrap();
    let big = fs.lookup("/big").unwrap();
    drop(fs);
    // An inode: its size field.
    let mut bad = image.clone();
    bad[inode_offset(&image, f6.0) + 4] ^= 0x01;
    let (_d, fs) = open(bad);
    let err = fs.stat(f6).unwrap_err();
    assert_eq!(err.errno(), 5);
    assert!(err.to_string().contains(&format!("inode {f6}")), "{err}");
    // An extent tree block: f6 (1.3 MB in 1 KiB blocks, fragmented by -d? no: one
    // extent per 32768 blocks) has its tree in i_block; flip a byte of the root of
    // the big directory's first data block instead, then of an extent block if any.
    let mut bad = image.clone();
    let off = inode_offset(&image, big.0);
    let ib = off + 0x28;
    let depth = u16::from_le_bytes([image[ib + 6], image[ib + 7]]);
    let first_phys = if depth == 0 {
        u32::from_le_bytes(image[ib + 12 + 8..ib + 12 + 12].try_into().unwrap())
    } else {
        u32::from_le_bytes(image[ib + 12 + 4..ib + 12 + 8].try_into().unwrap())
    } as usize;
    bad[first_phys * 1024 + 40] ^= 0x20;
    let (_d, fs) = open(bad);
    let err = fs
        .lookup("/big/entry-00001")
        .and_then(|_| fs.readdir(big).map(|_| big));
    let err = err.unwrap_err();
    assert_eq!(err.errno(), 5);
    let msg = err.to_string();
    assert!(
        msg.contains(&format!("directory {big}")) || msg.contains(&format!("inode {big}: extent")),
        "{msg}"
    );
    // Other files are still served.
    assert_eq!(fs.read_all(fs.lookup("/f2").unwrap()).unwrap().len(), 1023);
}

#[test]
fn a_journal_with_committed_transactions_is_replayed_on_open() {
    // ext4: extent-mapped journal with checksums v3; ext3: block-mapped, no checksums.
    for (fs_type, bs, jo) in [("ext4", 4096usize, "jo -c"), ("ext3", 1024, "jo")] {
        let tmp = tempfile::tempdir().unwrap();
        let img = tmp.path().join("img");
        let st = Command::new("mke2fs")
            .args(["-q", "-F", "-t", fs_type, "-b", &bs.to_string()])
            .arg(&img)
            .arg("16M")
            .status()
            .unwrap();
        assert!(st.success());
        let data: Vec<u8> = (0..2 * bs).map(|j| pattern(3, j)).collect();
        std::fs::write(tmp.path().join("data"), &data).unwrap();
        // Blocks 3000/3001 are free data blocks; 3001 is revoked by the second
        // transaction.
        std::fs::write(
            tmp.path().join("script"),
            format!(
                "{jo}\njw -b 3000,3001 {}\njw -r 3001\njc\n",
                tmp.path().join("data").display()
            ),
        )
        .unwrap();
        let st = Command::new("debugfs")
            .arg("-w")
            .arg("-f")
            .arg(tmp.path().join("script"))
            .arg(&img)
            .output()
            .unwrap();
        assert!(st.status.success());
        let image = std::fs::read(&img).unwrap();
        assert_ne!(image[1024 + 0x60] & 0x4, 0, "{fs_type}: needs_recovery");
        let dev = Arc::new(MemBlockDevice::from_image(image.clone()));
        // Read-only opening cannot replay: refused with the way out.
        let err = Ext2Fs::open_read_only(dev.clone()).unwrap_err();
        assert!(err.to_string().contains("run e2fsck"), "{err}");
        let fs = Ext2Fs::open(dev.clone()).unwrap();
        let mut block = vec![0u8; bs];
        fs.read_fs_block(3000, &mut block).unwrap();
        assert_eq!(block, &data[..bs], "{fs_type}");
        fs.read_fs_block(3001, &mut block).unwrap();
        assert_eq!(block, &image[3001 * bs..3002 * bs], "{fs_type}: revoked");
        let (code, text) = e2fsck(&dev.to_image());
        assert_eq!(code, 0, "{fs_type}: {text}");
    }
}

#[test]
fn features_this_engine_cannot_read_are_refused_by_name() {
    let tmp = tempfile::tempdir().unwrap();
    let img = tmp.path().join("img");
    let st = Command::new("mke2fs")
        .args(["-q", "-F", "-t", "ext4", "-O", "inline_data,encrypt"])
        .arg(&img)
        .arg("16M")
        .status()
        .unwrap();
    assert!(st.success());
    let dev = Arc::new(MemBlockDevice::from_image(std::fs::read(&img).unwrap()));
    let err = Ext2Fs::open(dev).unwrap_err();
    assert!(matches!(err, Ext2Error::Unsupported(_)));
    assert_eq!(err.to_string(), "unsupported: inline_data, encrypt");
}

/// The first extent tree block of `path`, from `debugfs stat` ("(ETB0):1234").
fn first_tree_block(image: &[u8], path: &str) -> u64 {
    let stat = debugfs_out(image, &format!("stat {path}"));
    let at = stat
        .find("(ETB0):")
        .unwrap_or_else(|| panic!("no tree block:\n{stat}"));
    stat[at + 7..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect::<String>()
        .parse()
        .unwrap()
}

#[test]
fn a_flipped_byte_in_an_extent_tree_block_is_an_error_naming_it() {
    let tmp = tempfile::tempdir().unwrap();
    build_tree(tmp.path());
    let image = make_image("ext4", 4096, Some("metadata_csum,64bit"), tmp.path());
    let (dev, mut fs) = open(image);
    let frag = fragmented_write(&mut fs, "/frag", 4096, 16);
    fs.sync().unwrap();
    let ino = fs.lookup("/frag").unwrap();
    drop(fs);
    let mut image = dev.to_image();
    let etb = first_tree_block(&image, "/frag") as usize;
    image[etb * 4096 + 12 + 8] ^= 0x01; // the first extent's physical start
    let (_dev, fs) = open(image);
    let err = fs.read_all(ino).unwrap_err();
    assert_eq!(err.errno(), 5);
    assert!(
        err.to_string()
            .contains(&format!("inode {ino}: extent block: checksum mismatch")),
        "{err}"
    );
    // Everything else is still served.
    assert_eq!(fs.read_all(fs.lookup("/f5").unwrap()).unwrap().len(), 70_000);
    assert_eq!(frag.len(), 16 * 4096);
}

/// SplitMix64, so a failing case reproduces from its seed.
fn next(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Reads every file and directory it can reach; errors are fine, panics are not.
fn walk(fs: &Ext2Fs, dir: conclave_ext2::Ino, depth: usize) -> usize {
    let Ok(entries) = fs.readdir(dir) else {
        return 1;
    };
    let mut errors = 0;
    for e in entries {
        if e.name == b"." || e.name == b".." || depth > 4 {
            continue;
        }
        match fs.stat(e.ino) {
            Ok(st) if st.file_type == FileType::Dir => errors += walk(fs, e.ino, depth + 1),
            Ok(st) if st.file_type == FileType::File => errors += usize::from(fs.read_all(e.ino).is_err()),
            Ok(_) => {}
            Err(err) => {
                assert!(matches!(err.errno(), 5 | 95 | 116 | 117), "{err}");
                errors += 1;
            }
        }
        errors += usize::from(fs.lookup_in(dir, &e.name).is_err());
    }
    errors
}

#[test]
fn random_flips_in_ext4_metadata_are_errors_never_panics() {
    let tmp = tempfile::tempdir().unwrap();
    build_tree(tmp.path());
    let image = make_image("ext4", 1024, Some("metadata_csum,64bit"), tmp.path());
    // Metadata blocks: everything below the first data block of the tree's files
    // (bitmaps, inode tables, directory and htree blocks sit there after mke2fs -d).
    let meta_end = 3 * 1024 * 1024;
    let mut seed = 0x0e74_0004u64;
    let mut failed_reads = 0;
    for _ in 0..60 {
        let mut bad = image.clone();
        for _ in 0..8 {
            let at = 1024 + (next(&mut seed) as usize) % (meta_end - 1024);
            bad[at] ^= 1 << (next(&mut seed) % 8);
        }
        let dev = Arc::new(MemBlockDevice::from_image(bad));
        let Ok(mut fs) = Ext2Fs::open(dev) else {
            continue;
        };
        failed_reads += walk(&fs, conclave_ext2::Ino::ROOT, 0);
        // Writes on a damaged image fail cleanly or succeed; never panic.
        let _ = fs.create_path("/big/new-after-flip", 0o644);
        let _ = fs.sync();
    }
    assert!(failed_reads > 0, "some flips must have hit checked metadata");
}

#[test]
fn random_writes_with_holes_and_truncates_match_a_model_on_ext4() {
    use std::collections::BTreeMap;
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(tmp.path().join("d")).unwrap();
    for (bs, opts) in [
        (1024u32, "metadata_csum,64bit"),
        (2048, "metadata_csum"),
        (4096, "^metadata_csum,uninit_bg"),
    ] {
        let image = make_image("ext4", bs, Some(opts), tmp.path());
        let (dev, mut fs) = open(image);
        let mut model: BTreeMap<String, Vec<u8>> = BTreeMap::new();
        let mut seed = 0x5eed_e474u64 + u64::from(bs);
        let bsz = bs as usize;
        for step in 0..1500 {
            let r = next(&mut seed);
            let name = format!("/d/f{}", r % 12);
            match (r >> 8) % 16 {
                0..=11 => {
                    // Mostly one block at a random place (holes between extents, so
                    // trees grow past the inode), sometimes a few.
                    let off = ((next(&mut seed) % 300) as usize) * bsz + (next(&mut seed) % 7) as usize;
                    let len =
                        1 + (next(&mut seed) % if r % 5 == 0 { 3 * bsz } else { bsz / 2 } as u64) as usize;
                    let data: Vec<u8> = (0..len).map(|j| pattern(step, j)).collect();
                    let ino = match fs.lookup(&name) {
                        Ok(i) => i,
                        Err(_) => fs.create_path(&name, 0o644).unwrap(),
                    };
                    assert_eq!(fs.write(ino, off as u64, &data).unwrap(), len);
                    let m = model.entry(name.clone()).or_default();
                    if m.len() < off + len {
                        m.resize(off + len, 0);
                    }
                    m[off..off + len].copy_from_slice(&data);
                }
                12 | 13 => {
                    if let (Ok(ino), Some(m)) = (fs.lookup(&name), model.get_mut(&name)) {
                        let size = (next(&mut seed) as usize) % (m.len() + 2 * bsz);
                        fs.truncate(ino, size as u64).unwrap();
                        m.resize(size, 0);
                    }
                }
                14 => {
                    if model.remove(&name).is_some() {
                        fs.unlink_path(&name).unwrap();
                    }
                }
                _ => {
                    let to = format!("/d/f{}", next(&mut seed) % 12);
                    if to != name {
                        if let Some(data) = model.remove(&name) {
                            fs.rename_path(&name, &to).unwrap();
                            model.insert(to, data);
                        }
                    }
                }
            }
        }
        fs.sync().unwrap();
        for (name, data) in &model {
            assert!(fs.read_all(fs.lookup(name).unwrap()).unwrap() == *data, "{name}");
        }
        let image = dev.to_image();
        let (code, text) = e2fsck(&image);
        assert_eq!(code, 0, "-b {bs} {opts}: e2fsck -fn:\n{text}");
        let deep = model
            .keys()
            .filter(|n| debugfs_out(&image, &format!("stat {n}")).contains("ETB"))
            .count();
        assert!(
            deep > 0,
            "-b {bs}: some file's tree should have grown past the inode"
        );
        let view = ext4_view::Ext4::load(Box::new(image)).unwrap();
        for (name, data) in &model {
            assert!(view.read(name.as_str()).unwrap() == *data, "ext4-view {name}");
        }
    }
}

#[test]
fn a_hashed_directory_grows_by_leaf_splits_and_drops_its_index_only_when_the_root_is_full() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(tmp.path().join("big")).unwrap();
    for i in 0..BIG_DIR {
        std::fs::write(tmp.path().join(format!("big/entry-{i:05}")), b"").unwrap();
    }
    // (block size, features, names added, index kept?)
    for (bs, opts, added, kept) in [
        (4096u32, "metadata_csum,64bit", 1500usize, true),
        (4096, "^metadata_csum", 1500, true),
        (1024, "metadata_csum,64bit", 4000, false),
    ] {
        let image = make_image("ext4", bs, Some(opts), tmp.path());
        let (dev, mut fs) = open(image);
        let big = fs.lookup("/big").unwrap();
        let size_before = fs.stat(big).unwrap().size;
        for i in 0..added {
            fs.create_path(format!("/big/a-much-longer-added-name-{i:05}"), 0o644)
                .unwrap();
        }
        fs.unlink_path("/big/entry-00003").unwrap();
        fs.sync().unwrap();
        let image = dev.to_image();
        let (code, text) = e2fsck(&image);
        assert_eq!(code, 0, "-b {bs} {opts}: e2fsck -fn:\n{text}");
        let stat = debugfs_out(&image, "stat /big");
        let flags = stat.split("Flags: 0x").nth(1).unwrap();
        let flags = u32::from_str_radix(flags.split_whitespace().next().unwrap(), 16).unwrap();
        assert_eq!(flags & 0x1000 != 0, kept, "-b {bs} {opts}: index kept?\n{stat}");
        assert!(fs.stat(big).unwrap().size > size_before, "the directory grew");
        let names = debugfs_names(&image, "/big");
        assert!(
            !names.contains("entry-00003"),
            "-b {bs} {opts}: debugfs still lists the unlinked name"
        );
        assert_eq!(names.len(), BIG_DIR - 1 + added);
        for i in (0..added).step_by(37) {
            fs.lookup(format!("/big/a-much-longer-added-name-{i:05}"))
                .unwrap();
        }
        assert!(matches!(fs.lookup("/big/entry-00003"), Err(Ext2Error::NotFound)));
    }
}

#[test]
fn running_out_of_space_on_ext4_leaves_it_fsck_clean() {
    let tmp = tempfile::tempdir().unwrap();
    let img = tmp.path().join("img");
    let st = Command::new("mke2fs")
        .args([
            "-q",
            "-F",
            "-t",
            "ext4",
            "-b",
            "1024",
            "-O",
            "metadata_csum,64bit",
            "-m",
            "0",
        ])
        .arg(&img)
        .arg("4M")
        .status()
        .unwrap();
    assert!(st.success());
    let (dev, mut fs) = open(std::fs::read(&img).unwrap());
    let free_before = fs.statfs().free_blocks;
    let mut seed = 0xf11e_u64;
    let mut hit = false;
    'fill: for i in 0..400 {
        let path = format!("/f{i}");
        let Ok(ino) = fs.create_path(&path, 0o644) else {
            hit = true;
            break;
        };
        // Scattered single blocks: many extents, so trees need blocks of their own.
        for _ in 0..40 {
            let off = (next(&mut seed) % 400) * 1024;
            match fs.write(ino, off, &[0x5a; 1024]) {
                Ok(_) => {}
                Err(Ext2Error::NoSpace) => {
                    hit = true;
                    break 'fill;
                }
                Err(e) => panic!("{path}: {e}"),
            }
        }
    }
    assert!(hit, "the image should fill up");
    fs.sync().unwrap();
    let (code, text) = e2fsck(&dev.to_image());
    assert_eq!(code, 0, "e2fsck -fn after ENOSPC:\n{text}");
    // Freeing everything gives every block back.
    let names: Vec<_> = fs
        .readdir(conclave_ext2::Ino::ROOT)
        .unwrap()
        .into_iter()
        .filter(|e| e.name.starts_with(b"f"))
        .collect();
    for e in names {
        fs.unlink(conclave_ext2::Ino::ROOT, &e.name).unwrap();
    }
    fs.sync().unwrap();
    assert_eq!(fs.statfs().free_blocks, free_before);
    let (code, text) = e2fsck(&dev.to_image());
    assert_eq!(code, 0, "e2fsck -fn after freeing:\n{text}");
}
