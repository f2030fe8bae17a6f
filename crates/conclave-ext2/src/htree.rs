//! Hashed (htree, `dir_index`) directories: the name hashes, the index blocks,
//! finding the leaf block that holds a name, and keeping the index valid on writes.
//!
//! A new entry goes into the leaf its hash belongs to; a full leaf is split by hash
//! into a new block and its parent index block gains an entry (as the kernel does).
//! Only when that parent is full too (growing the tree a level is not implemented),
//! or every name in the leaf has one hash, is the index dropped: `EXT4_INDEX_FL`
//! cleared and the index blocks rewritten as plain blocks. Every leaf of an htree is
//! already a valid linear block, so the directory stays valid either way and
//! `e2fsck -fn` accepts it. Removing an entry never touches the index.

use crate::csum;
use crate::error::{corrupt, Ext2Error};
use crate::le::{put_u16, put_u32, u32_at};

mod dir;

/// Superblock offset of `s_hash_seed` (4 little-endian words).
const SB_HASH_SEED: usize = 0xEC;
/// Superblock offset of `s_flags`.
const SB_FLAGS: usize = 0x160;
/// `s_flags`: names hash with unsigned chars.
const FLAGS_UNSIGNED_HASH: u32 = 0x2;
/// The deepest index the kernel reads without `largedir` (root + 1 level).
const MAX_LEVELS: u8 = 2;
/// With `largedir`.
const MAX_LEVELS_LARGEDIR: u8 = 3;

/// A directory hash function, as stored in `dx_root_info.hash_version`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HashVersion {
    /// `dx_hack_hash`.
    Legacy,
    /// Half MD4.
    HalfMd4,
    /// Tiny Encryption Algorithm.
    Tea,
}

/// What hashing a name needs: the function, the seed and the char signedness.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hasher {
    /// The function.
    pub version: HashVersion,
    /// `s_hash_seed` (all zeros means the default seed).
    pub seed: [u32; 4],
    /// Whether name bytes are taken as unsigned (from `s_flags`).
    pub unsigned: bool,
}

impl Hasher {
    /// The hasher for a directory whose root says `version`, on the file system whose
    /// superblock is `sb`.
    pub fn new(sb: &[u8], version: u8, ino: u32) -> Result<Hasher, Ext2Error> {
        let version = match version {
            0 => HashVersion::Legacy,
            1 => HashVersion::HalfMd4,
            2 => HashVersion::Tea,
            v => {
                return Err(Ext2Error::Unsupported(format!(
                    "directory {ino}: htree hash version {v}"
                )))
            }
        };
        let mut seed = [0u32; 4];
        for (i, s) in seed.iter_mut().enumerate() {
            *s = u32_at(sb, SB_HASH_SEED + 4 * i);
        }
        Ok(Hasher {
            version,
            seed,
            unsigned: u32_at(sb, SB_FLAGS) & FLAGS_UNSIGNED_HASH != 0,
        })
    }

    /// The (major, minor) hash of `name`; the major hash has its low bit clear.
    pub fn hash(&self, name: &[u8]) -> (u32, u32) {
        let mut buf = if self.seed.iter().any(|&s| s != 0) {
            self.seed
        } else {
            [0x6745_2301, 0xefcd_ab89, 0x98ba_dcfe, 0x1032_5476]
        };
        let (hash, minor) = match self.version {
            HashVersion::Legacy => (dx_hack_hash(name, self.unsigned), 0),
            HashVersion::HalfMd4 => {
                for chunk in chunks_or_empty(name, 32) {
                    let mut input = [0u32; 8];
                    str2hashbuf(chunk, name_left(name, chunk), &mut input, self.unsigned);
                    half_md4_transform(&mut buf, &input);
                }
                (buf[1], buf[2])
            }
            HashVersion::Tea => {
                for chunk in chunks_or_empty(name, 16) {
                    let mut input = [0u32; 4];
                    str2hashbuf(chunk, name_left(name, chunk), &mut input, self.unsigned);
                    tea_transform(&mut buf, &input);
                }
                (buf[0], buf[1])
            }
        };
        (hash & !1, minor)
    }
}

/// The 16- or 32-byte pieces the block hashes consume (none for an empty name).
fn chunks_or_empty(name: &[u8], n: usize) -> std::slice::Chunks<'_, u8> {
    name.chunks(n)
}

/// Bytes of `name` from the start of `chunk` to the end (the length `str2hashbuf` pads
/// with, as e2fsprogs passes the remaining length, not the chunk's).
fn name_left(name: &[u8], chunk: &[u8]) -> usize {
    let start = chunk.as_ptr() as usize - name.as_ptr() as usize;
    name.len() - start
}

fn char_of(b: u8, unsigned: bool) -> u32 {
    if unsigned {
        u32::from(b)
    } else {
        i32::from(b as i8) as u32
    }
}

fn dx_hack_hash(name: &[u8], unsigned: bool) -> u32 {
    let (mut hash0, mut hash1) = (0x12a3_fe2du32, 0x37ab_e8f9u32);
    for &b in name {
        let c = char_of(b, unsigned);
        let mut hash = hash1.wrapping_add(hash0 ^ c.wrapping_mul(7_152_373));
        if hash & 0x8000_0000 != 0 {
            hash = hash.wrapping_sub(0x7fff_ffff);
        }
        hash1 = hash0;
        hash0 = hash;
    }
    hash0 << 1
}

/// Packs up to `out.len() * 4` bytes of `msg` into words, padded with the length.
fn str2hashbuf(msg: &[u8], len: usize, out: &mut [u32], unsigned: bool) {
    let pad = (len as u32) | (len as u32) << 8;
    let pad = pad | pad << 16;
    let mut val = pad;
    let take = len.min(out.len() * 4);
    let mut w = 0;
    for (i, &b) in msg.iter().take(take).enumerate() {
        val = char_of(b, unsigned).wrapping_add(val << 8);
        if i % 4 == 3 {
            out[w] = val;
            w += 1;
            val = pad;
        }
    }
    if w < out.len() {
        out[w] = val;
        w += 1;
    }
    for o in out.iter_mut().skip(w) {
        *o = pad;
    }
}

fn half_md4_transform(buf: &mut [u32; 4], x: &[u32; 8]) {
    let f = |x: u32, y: u32, z: u32| z ^ (x & (y ^ z));
    let g = |x: u32, y: u32, z: u32| (x & y).wrapping_add((x ^ y) & z);
    let h = |x: u32, y: u32, z: u32| x ^ y ^ z;
    const K2: u32 = 0o13240474631;
    const K3: u32 = 0o15666365641;
    let [mut a, mut b, mut c, mut d] = *buf;
    macro_rules! round {
        ($f:ident, $a:ident, $b:ident, $c:ident, $d:ident, $x:expr, $s:expr) => {
            $a = $a
                .wrapping_add($f($b, $c, $d))
                .wrapping_add($x)
                .rotate_left($s);
        };
    }
    round!(f, a, b, c, d, x[0], 3);
    round!(f, d, a, b, c, x[1], 7);
    round!(f, c, d, a, b, x[2], 11);
    round!(f, b, c, d, a, x[3], 19);
    round!(f, a, b, c, d, x[4], 3);
    round!(f, d, a, b, c, x[5], 7);
    round!(f, c, d, a, b, x[6], 11);
    round!(f, b, c, d, a, x[7], 19);
    round!(g, a, b, c, d, x[1].wrapping_add(K2), 3);
    round!(g, d, a, b, c, x[3].wrapping_add(K2), 5);
    round!(g, c, d, a, b, x[5].wrapping_add(K2), 9);
    round!(g, b, c, d, a, x[7].wrapping_add(K2), 13);
    round!(g, a, b, c, d, x[0].wrapping_add(K2), 3);
    round!(g, d, a, b, c, x[2].wrapping_add(K2), 5);
    round!(g, c, d, a, b, x[4].wrapping_add(K2), 9);
    round!(g, b, c, d, a, x[6].wrapping_add(K2), 13);
    round!(h, a, b, c, d, x[3].wrapping_add(K3), 3);
    round!(h, d, a, b, c, x[7].wrapping_add(K3), 9);
    round!(h, c, d, a, b, x[2].wrapping_add(K3), 11);
    round!(h, b, c, d, a, x[6].wrapping_add(K3), 15);
    round!(h, a, b, c, d, x[1].wrapping_add(K3), 3);
    round!(h, d, a, b, c, x[5].wrapping_add(K3), 9);
    round!(h, c, d, a, b, x[0].wrapping_add(K3), 11);
    round!(h, b, c, d, a, x[4].wrapping_add(K3), 15);
    buf[0] = buf[0].wrapping_add(a);
    buf[1] = buf[1].wrapping_add(b);
    buf[2] = buf[2].wrapping_add(c);
    buf[3] = buf[3].wrapping_add(d);
}

fn tea_transform(buf: &mut [u32; 4], x: &[u32; 4]) {
    const DELTA: u32 = 0x9E37_79B9;
    let (mut sum, mut b0, mut b1) = (0u32, buf[0], buf[1]);
    let [a, b, c, d] = *x;
    for _ in 0..16 {
        sum = sum.wrapping_add(DELTA);
        b0 = b0
            .wrapping_add(((b1 << 4).wrapping_add(a)) ^ (b1.wrapping_add(sum)) ^ ((b1 >> 5).wrapping_add(b)));
        b1 = b1
            .wrapping_add(((b0 << 4).wrapping_add(c)) ^ (b0.wrapping_add(sum)) ^ ((b0 >> 5).wrapping_add(d)));
    }
    buf[0] = buf[0].wrapping_add(b0);
    buf[1] = buf[1].wrapping_add(b1);
}

/// `dx_root_info` of a directory's first block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DxRootInfo {
    /// Hash function number (0..=2).
    pub hash_version: u8,
    /// Index levels below the root (0: the root points at leaves).
    pub indirect_levels: u8,
}

/// Parses the root block's info, checking the `.`/`..` layout around it.
pub fn root_info(block: &[u8], ino: u32, largedir: bool) -> Result<DxRootInfo, Ext2Error> {
    let Some((0x20, _, _)) = csum::dx_countlimit(block) else {
        return Err(corrupt(format!("directory {ino}: htree root block is malformed")));
    };
    if u32_at(block, 0x18) != 0 {
        return Err(corrupt(format!("directory {ino}: htree root reserved field set")));
    }
    let info = DxRootInfo {
        hash_version: block[0x1C],
        indirect_levels: block[0x1E],
    };
    let max = if largedir { MAX_LEVELS_LARGEDIR } else { MAX_LEVELS };
    if info.indirect_levels >= max {
        return Err(corrupt(format!(
            "directory {ino}: htree of {} levels",
            info.indirect_levels
        )));
    }
    Ok(info)
}

/// The `(hash, logical block)` entries of a root or node block; entry 0's hash is 0.
fn entries(block: &[u8], ino: u32, lb: u64, dir_blocks: u64) -> Result<Vec<(u32, u32)>, Ext2Error> {
    let (co, limit, count) = csum::dx_countlimit(block)
        .ok_or_else(|| corrupt(format!("directory {ino} block {lb}: not an htree node")))?;
    if count == 0 || count > limit || co + limit * 8 > block.len() {
        return Err(corrupt(format!(
            "directory {ino} block {lb}: htree count {count} limit {limit}"
        )));
    }
    let mut out: Vec<(u32, u32)> = Vec::with_capacity(count);
    for i in 0..count {
        let at = co + i * 8;
        let hash = if i == 0 { 0 } else { u32_at(block, at) };
        let child = u32_at(block, at + 4);
        if u64::from(child) >= dir_blocks || child == 0 {
            return Err(corrupt(format!(
                "directory {ino} block {lb}: htree entry points at block {child}"
            )));
        }
        if i > 1 && hash < out[i - 1].0 {
            return Err(corrupt(format!(
                "directory {ino} block {lb}: htree hashes out of order"
            )));
        }
        out.push((hash, child));
    }
    Ok(out)
}

/// The leaf blocks (directory logical blocks) that may hold a name of hash `hash`: the
/// one the index points at, then following leaves while their first hash equals `hash`
/// with the collision bit set. `read` returns directory block `lb` (checksums are the
/// caller's).
pub fn candidate_leaves(
    root: &[u8],
    info: DxRootInfo,
    hash: u32,
    ino: u32,
    dir_blocks: u64,
    read: &mut dyn FnMut(u64) -> Result<Vec<u8>, Ext2Error>,
) -> Result<Vec<u32>, Ext2Error> {
    let mut node = entries(root, ino, 0, dir_blocks)?;
    let mut level = 0;
    let mut path: Vec<(Vec<(u32, u32)>, usize)> = Vec::new();
    loop {
        let i = node.partition_point(|&(h, _)| h <= hash).saturating_sub(1);
        let child = node[i].1;
        path.push((node, i));
        if level == info.indirect_levels {
            break;
        }
        let block = read(u64::from(child))?;
        node = entries(&block, ino, u64::from(child), dir_blocks)?;
        level += 1;
    }
    let mut out = vec![path.last().map(|(n, i)| n[*i].1).unwrap_or(0)];
    // Collisions: a following entry whose hash is `hash | 1` continues the run.
    if let Some((n, i)) = path.last() {
        for &(h, b) in n.iter().skip(i + 1) {
            if h & !1 == hash && h & 1 == 1 {
                out.push(b);
            } else {
                break;
            }
        }
    }
    Ok(out)
}

/// The index block holding the entry that points at the leaf for `hash`: its logical
/// block (0 for the root) and the entry's position in it.
pub fn leaf_parent(
    root: &[u8],
    info: DxRootInfo,
    hash: u32,
    ino: u32,
    dir_blocks: u64,
    read: &mut dyn FnMut(u64) -> Result<Vec<u8>, Ext2Error>,
) -> Result<(u32, usize), Ext2Error> {
    let mut node = entries(root, ino, 0, dir_blocks)?;
    let mut node_lb = 0u32;
    for _ in 0..info.indirect_levels {
        let i = node.partition_point(|&(h, _)| h <= hash).saturating_sub(1);
        node_lb = node[i].1;
        let block = read(u64::from(node_lb))?;
        node = entries(&block, ino, u64::from(node_lb), dir_blocks)?;
    }
    Ok((
        node_lb,
        node.partition_point(|&(h, _)| h <= hash).saturating_sub(1),
    ))
}

/// Inserts index entry `(hash, child)` after position `after` of an index block;
/// false if the block is full.
pub fn insert_index_entry(block: &mut [u8], after: usize, hash: u32, child: u32) -> bool {
    let Some((co, limit, count)) = csum::dx_countlimit(block) else {
        return false;
    };
    if count >= limit || after >= count {
        return false;
    }
    let at = co + (after + 1) * 8;
    block.copy_within(at..co + count * 8, at + 8);
    put_u32(block, at, hash);
    put_u32(block, at + 4, child);
    put_u16(block, co + 2, (count + 1) as u16);
    true
}

/// One live entry of a leaf, with its hash.
#[derive(Clone, Debug)]
pub struct HashedEntry {
    /// Major hash of the name.
    pub hash: u32,
    /// Inode number.
    pub inode: u32,
    /// File type byte.
    pub file_type: u8,
    /// Name bytes.
    pub name: Vec<u8>,
}

/// Splits a full leaf's entries in two by hash: `(low, high, bound)` where every
/// entry of `high` hashes at or above `bound` and every one of `low` below it. `None`
/// if all entries share one hash (no bound separates them).
pub fn split_by_hash(mut all: Vec<HashedEntry>) -> Option<(Vec<HashedEntry>, Vec<HashedEntry>, u32)> {
    all.sort_by_key(|e| e.hash);
    let mid = all.len() / 2;
    let cut = (0..all.len())
        .filter(|&i| i > 0 && all[i].hash > all[i - 1].hash)
        .min_by_key(|&i| i.abs_diff(mid))?;
    let high = all.split_off(cut);
    let bound = high[0].hash;
    Some((all, high, bound))
}

/// Lays `entries` out as a leaf block of `bs` bytes whose entries end at `usable`
/// (the rest is the checksum tail's); `None` if they do not fit.
pub fn pack_leaf(entries: &[HashedEntry], bs: usize, usable: usize, has_ft: bool) -> Option<Vec<u8>> {
    let mut block = vec![0u8; bs];
    let mut off = 0;
    for (i, e) in entries.iter().enumerate() {
        let need = crate::dir_entry::needed_len(e.name.len());
        let rec_len = if i + 1 == entries.len() {
            usable.checked_sub(off)?
        } else {
            need
        };
        if rec_len < need || off + rec_len > usable {
            return None;
        }
        crate::dir_entry::DirEntry {
            offset: off,
            inode: e.inode,
            rec_len,
            file_type: e.file_type,
            name: e.name.clone(),
        }
        .write_to(&mut block, has_ft);
        off += rec_len;
    }
    if entries.is_empty() {
        put_u16(&mut block, 4, usable as u16);
    }
    Some(block)
}

/// The internal index blocks (logical numbers) under the root, so they are not read
/// as leaves and can be rewritten when the index is dropped.
pub fn index_blocks(
    root: &[u8],
    info: DxRootInfo,
    ino: u32,
    dir_blocks: u64,
    read: &mut dyn FnMut(u64) -> Result<Vec<u8>, Ext2Error>,
) -> Result<Vec<u32>, Ext2Error> {
    let mut out = Vec::new();
    let mut level: Vec<u32> = entries(root, ino, 0, dir_blocks)?
        .into_iter()
        .map(|e| e.1)
        .collect();
    for _ in 0..info.indirect_levels {
        let mut next = Vec::new();
        for &b in &level {
            out.push(b);
            let block = read(u64::from(b))?;
            next.extend(
                entries(&block, ino, u64::from(b), dir_blocks)?
                    .into_iter()
                    .map(|e| e.1),
            );
        }
        level = next;
    }
    Ok(out)
}

/// Whether directory block `lb` of a hashed directory is an index block: the root
/// (block 0) or an internal node (one empty entry spanning the block).
pub fn is_index_block(block: &[u8], lb: u64) -> bool {
    match csum::dx_countlimit(block) {
        Some((0x20, _, _)) => lb == 0,
        Some((8, _, _)) => lb != 0 && u32_at(block, 0) == 0,
        _ => false,
    }
}

/// Stores a fresh checksum in a directory block: `dx_tail` for an index block,
/// otherwise the leaf tail (written into the block's last 12 bytes).
pub fn set_block_csum(seed: u32, ino: u32, block: &mut [u8]) -> Result<(), Ext2Error> {
    if !csum::has_dir_tail(block) && csum::dx_countlimit(block).is_some() {
        return csum::set_dx(seed, ino, 0, block);
    }
    csum::init_dir_tail(block);
    csum::set_dir_leaf(seed, block);
    Ok(())
}

/// Rewrites an htree root block as a plain directory block holding `.` and `..`
/// (the `..` entry spans the rest), with a checksum tail when `csum_seed` is given.
pub fn linearize_root(block: &mut [u8], csum_seed: Option<u32>) {
    let bs = block.len();
    let tail = if csum_seed.is_some() {
        csum::DIR_TAIL_LEN
    } else {
        0
    };
    block[24..].fill(0);
    put_u16(block, 12 + 4, (bs - 12 - tail) as u16);
    finish_leaf(block, csum_seed);
}

/// Rewrites an htree node block as an empty directory block.
pub fn linearize_node(block: &mut [u8], csum_seed: Option<u32>) {
    let bs = block.len();
    let tail = if csum_seed.is_some() {
        csum::DIR_TAIL_LEN
    } else {
        0
    };
    block.fill(0);
    put_u32(block, 0, 0);
    put_u16(block, 4, (bs - tail) as u16);
    finish_leaf(block, csum_seed);
}

fn finish_leaf(block: &mut [u8], csum_seed: Option<u32>) {
    if let Some(seed) = csum_seed {
        csum::init_dir_tail(block);
        csum::set_dir_leaf(seed, block);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::csum::test_image::TestImage;
    use crate::extent::{lookup, TreeCtx, ROOT_BYTES};
    use crate::le::u16_at;
    use std::process::Command;

    /// The hash debugfs computes for `name` (`dx_hash -h ALG -s SEED`).
    fn debugfs_hash(alg: &str, seed: &str, name: &str) -> u32 {
        let img = TestImage::make(&["-t", "ext2"], 1024, 1024, false);
        let out = Command::new("debugfs")
            .args(["-R", &format!("dx_hash -h {alg} -s {seed} {name}")])
            .arg(&img.path)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let at = text.find("is 0x").unwrap_or_else(|| panic!("debugfs: {text}"));
        let hex: String = text[at + 5..]
            .chars()
            .take_while(|c| c.is_ascii_hexdigit())
            .collect();
        u32::from_str_radix(&hex, 16).unwrap()
    }

    #[test]
    fn hashes_match_debugfs() {
        let seed_str = "c0ffee00-1234-5678-9abc-def012345678";
        let mut sb = vec![0u8; 1024];
        // The uuid parses to bytes c0 ff ee 00 12 34 56 78 9a bc de f0 12 34 56 78.
        let bytes: [u8; 16] = [
            0xc0, 0xff, 0xee, 0x00, 0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf0, 0x12, 0x34, 0x56, 0x78,
        ];
        sb[SB_HASH_SEED..SB_HASH_SEED + 16].copy_from_slice(&bytes);
        for (alg, v) in [("legacy", 0u8), ("half_md4", 1), ("tea", 2)] {
            let h = Hasher::new(&sb, v, 2).unwrap();
            for name in [
                "a",
                "hello.txt",
                "file-with-a-rather-long-name-0123456789abcdef",
                "x\u{e9}y",
            ] {
                assert_eq!(
                    h.hash(name.as_bytes()).0,
                    debugfs_hash(alg, seed_str, name),
                    "{alg} {name}"
                );
            }
        }
    }

    #[test]
    fn finds_every_name_through_an_index_e2fsck_built() {
        for (opts, bs, n) in [
            ("metadata_csum,64bit", 1024u32, 3000u32),
            ("^metadata_csum", 4096, 2000),
        ] {
            let dir = tempfile::tempdir().unwrap();
            let tree = dir.path().join("tree");
            std::fs::create_dir_all(tree.join("big")).unwrap();
            for i in 0..n {
                std::fs::write(tree.join(format!("big/entry-{i:05}.txt")), b"x").unwrap();
            }
            let path = dir.path().join("img");
            let st = Command::new("mke2fs")
                .args(["-q", "-F", "-t", "ext4", "-O", opts, "-b", &bs.to_string(), "-d"])
                .arg(&tree)
                .arg(&path)
                .arg("16M")
                .status()
                .unwrap();
            assert!(st.success());
            let img = TestImage::load(dir, path).run("e2fsck", &["-fyD"]);
            let sb = img.superblock();
            // Find the directory: the root's entry "big".
            let big = (12..200)
                .find(|&i| {
                    let raw = img.inode(i);
                    u16_at(&raw, 0) & 0o170000 == 0o040000 && u32_at(&raw, 0x20) & 0x1000 != 0
                })
                .expect("an indexed directory");
            let raw = img.inode(big);
            let mut root = [0u8; ROOT_BYTES];
            root.copy_from_slice(&raw[0x28..0x28 + ROOT_BYTES]);
            let fs_seed = csum::fs_seed(&sb, img.incompat());
            let iseed = csum::inode_seed(fs_seed, big, u32_at(&raw, 0x64));
            let ctx = TreeCtx {
                ino: big,
                blocks_count: u64::from(img.u32(4)),
                block_size: img.bs,
                csum_seed: None,
            };
            let dir_blocks = u64::from(u32_at(&raw, 4)) / img.bs as u64;
            let mut read = |lb: u64| -> Result<Vec<u8>, Ext2Error> {
                let e = lookup(&root, lb as u32, &ctx, &mut |b| Ok(img.block(b)))?.unwrap();
                Ok(img.block(e.phys + (lb - u64::from(e.logical))))
            };
            let root_block = read(0).unwrap();
            let csum_on = img.ro_compat() & csum::RO_COMPAT_METADATA_CSUM != 0;
            if csum_on {
                csum::verify_dx(iseed, big, 0, &root_block).unwrap();
            }
            let info = root_info(&root_block, big, false).unwrap();
            let h = Hasher::new(&sb, info.hash_version, big).unwrap();
            for i in (0..n).step_by(7) {
                let name = format!("entry-{i:05}.txt");
                let (hash, _) = h.hash(name.as_bytes());
                let leaves = candidate_leaves(&root_block, info, hash, big, dir_blocks, &mut read).unwrap();
                let found = leaves.iter().any(|&lb| {
                    let b = read(u64::from(lb)).unwrap();
                    if csum_on {
                        csum::verify_dir_leaf(iseed, big, u64::from(lb), &b).unwrap();
                    }
                    b.windows(name.len()).any(|w| w == name.as_bytes())
                });
                assert!(found, "{name} in leaves {leaves:?}");
            }
            // Dropping the index leaves valid linear blocks.
            let mut lin = root_block.clone();
            linearize_root(&mut lin, csum_on.then_some(iseed));
            assert_eq!(
                u16_at(&lin, 16) as usize,
                img.bs - 12 - if csum_on { 12 } else { 0 }
            );
            if csum_on {
                csum::verify_dir_leaf(iseed, big, 0, &lin).unwrap();
            }
        }
    }
}
