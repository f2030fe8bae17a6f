//! ext4 extent trees: parsing and checking the nodes, mapping logical blocks, and an
//! edit model for writes.
//!
//! Reads walk the tree on disk (`lookup`). Writes load the whole tree into a sorted
//! list of extents ([`ExtentTree`]), edit it (insert a block run merging with its
//! neighbours, convert an uninitialized block, truncate), and lay the tree out again
//! from scratch: leaves packed full, as many index levels as needed, the root in
//! `i_block` holding up to 4 entries. Relaying out is what splits full leaves and grows
//! the depth, and it always yields the narrowest, shallowest tree, which `e2fsck`
//! accepts without remarks. Its cost is rewriting every tree block of the file on a
//! write that changes the mapping: one block per 340 extents with 4 KiB blocks.

use crate::csum;
use crate::error::{corrupt, Ext2Error};
use crate::le::{put_u16, put_u32, u16_at, u32_at};

mod inode_map;
mod map;
pub(crate) use inode_map::InodeExtents;
pub use map::ExtentMap;

/// `eh_magic`.
pub const MAGIC: u16 = 0xF30A;
/// Bytes of a node header, and of one index or leaf entry.
const ENTRY: usize = 12;
/// Entries the root in `i_block` (60 bytes) holds.
pub const ROOT_ENTRIES: usize = 4;
/// Bytes of `i_block`.
pub const ROOT_BYTES: usize = 60;
/// Longest initialized extent.
pub const MAX_INIT_LEN: u32 = 32768;
/// Longest uninitialized (preallocated, reads as zeros) extent.
pub const MAX_UNINIT_LEN: u32 = 32767;
/// Deepest tree the kernel builds.
const MAX_DEPTH: u16 = 5;

/// One run of blocks: `len` logical blocks from `logical` live at `phys..phys+len`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Extent {
    /// First logical block.
    pub logical: u32,
    /// Blocks in the run (1..=32768).
    pub len: u32,
    /// First physical block.
    pub phys: u64,
    /// Allocated but not written: reads as zeros.
    pub uninit: bool,
}

impl Extent {
    fn end(&self) -> u64 {
        u64::from(self.logical) + u64::from(self.len)
    }

    fn max_len(&self) -> u32 {
        if self.uninit {
            MAX_UNINIT_LEN
        } else {
            MAX_INIT_LEN
        }
    }

    /// Whether `next` continues this extent logically and physically.
    fn joins(&self, next: &Extent) -> bool {
        self.uninit == next.uninit
            && self.end() == u64::from(next.logical)
            && self.phys + u64::from(self.len) == next.phys
            && self.len + next.len <= self.max_len()
    }
}

/// What the tree checks need to know about the file and file system.
#[derive(Clone, Copy, Debug)]
pub struct TreeCtx {
    /// Inode number (for messages and checksums).
    pub ino: u32,
    /// Blocks in the file system (pointers at or past it are corrupt).
    pub blocks_count: u64,
    /// File-system block size.
    pub block_size: usize,
    /// The inode's checksum seed when `metadata_csum` is on.
    pub csum_seed: Option<u32>,
}

impl TreeCtx {
    /// Entries an extent tree block holds (`eh_max`).
    pub fn per_block(&self) -> usize {
        (self.block_size - ENTRY) / ENTRY
    }

    fn bad(&self, what: impl std::fmt::Display) -> Ext2Error {
        corrupt(format!("inode {}: extent tree: {what}", self.ino))
    }
}

/// A node's header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// Entries in use.
    pub entries: u16,
    /// Capacity.
    pub max: u16,
    /// 0 for a leaf.
    pub depth: u16,
}

/// Parses and checks a node header; `max_cap` is the capacity of the node's space.
fn header(b: &[u8], max_cap: usize, ctx: &TreeCtx) -> Result<Header, Ext2Error> {
    if u16_at(b, 0) != MAGIC {
        return Err(ctx.bad(format!("bad magic {:#06x}", u16_at(b, 0))));
    }
    let h = Header {
        entries: u16_at(b, 2),
        max: u16_at(b, 4),
        depth: u16_at(b, 6),
    };
    if usize::from(h.max) > max_cap || h.entries > h.max {
        return Err(ctx.bad(format!("{} entries of {} (room for {max_cap})", h.entries, h.max)));
    }
    if h.depth > MAX_DEPTH {
        return Err(ctx.bad(format!("depth {}", h.depth)));
    }
    Ok(h)
}

/// An index entry: the subtree for logical blocks from `logical` lives at `child`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Index {
    logical: u32,
    child: u64,
}

fn leaf_entry(b: &[u8], i: usize) -> Extent {
    let o = ENTRY + i * ENTRY;
    let raw_len = u32::from(u16_at(b, o + 4));
    let (len, uninit) = if raw_len > MAX_INIT_LEN {
        (raw_len - MAX_INIT_LEN, true)
    } else {
        (raw_len, false)
    };
    Extent {
        logical: u32_at(b, o),
        len,
        phys: u64::from(u16_at(b, o + 6)) << 32 | u64::from(u32_at(b, o + 8)),
        uninit,
    }
}

fn index_entry(b: &[u8], i: usize) -> Index {
    let o = ENTRY + i * ENTRY;
    Index {
        logical: u32_at(b, o),
        child: u64::from(u16_at(b, o + 8)) << 32 | u64::from(u32_at(b, o + 4)),
    }
}

/// A parsed node.
enum Node {
    Leaf(Vec<Extent>),
    Index(Vec<Index>),
}

/// Parses node `b` (the root's 60 bytes or a tree block) whose entries must lie in
/// `[lo, hi)`, checking order, ranges and pointers.
fn parse(b: &[u8], h: &Header, lo: u64, hi: u64, ctx: &TreeCtx) -> Result<Node, Ext2Error> {
    let n = usize::from(h.entries);
    let mut prev_end = lo;
    if h.depth == 0 {
        let mut out = Vec::with_capacity(n);
        for i in 0..n {
            let e = leaf_entry(b, i);
            if e.len == 0 {
                return Err(ctx.bad(format!("empty extent at logical {}", e.logical)));
            }
            if u64::from(e.logical) < prev_end || e.end() > hi {
                return Err(ctx.bad(format!(
                    "extent at logical {} out of order or outside its index",
                    e.logical
                )));
            }
            if e.phys == 0 || e.phys + u64::from(e.len) > ctx.blocks_count {
                return Err(ctx.bad(format!("extent at logical {} points past the end", e.logical)));
            }
            prev_end = e.end();
            out.push(e);
        }
        Ok(Node::Leaf(out))
    } else {
        let mut out: Vec<Index> = Vec::with_capacity(n);
        if n == 0 {
            return Err(ctx.bad("empty index node"));
        }
        for i in 0..n {
            let ix = index_entry(b, i);
            let l = u64::from(ix.logical);
            if (i > 0 && l <= prev_end) || l >= hi || (i == 0 && l < lo) {
                return Err(ctx.bad(format!("index at logical {} out of order", ix.logical)));
            }
            if ix.child == 0 || ix.child >= ctx.blocks_count {
                return Err(ctx.bad(format!("index child {} out of range", ix.child)));
            }
            prev_end = l;
            out.push(ix);
        }
        Ok(Node::Index(out))
    }
}

/// Reads and checks tree block `b` at `depth`.
fn read_node(
    b: u64,
    depth: u16,
    ctx: &TreeCtx,
    read: &mut dyn FnMut(u64) -> Result<Vec<u8>, Ext2Error>,
) -> Result<(Vec<u8>, Header), Ext2Error> {
    let block = read(b)?;
    if block.len() != ctx.block_size {
        return Err(ctx.bad(format!("block {b} read as {} bytes", block.len())));
    }
    let h = header(&block, ctx.per_block(), ctx)?;
    if h.depth != depth {
        return Err(ctx.bad(format!("block {b} has depth {}, expected {depth}", h.depth)));
    }
    if let Some(seed) = ctx.csum_seed {
        csum::verify_extent_block(seed, ctx.ino, &block)?;
    }
    Ok((block, h))
}

/// The extent that maps logical block `lb`, if any (a hole otherwise). `read` returns
/// a file-system block (tree blocks).
pub fn lookup(
    root: &[u8; ROOT_BYTES],
    lb: u32,
    ctx: &TreeCtx,
    read: &mut dyn FnMut(u64) -> Result<Vec<u8>, Ext2Error>,
) -> Result<Option<Extent>, Ext2Error> {
    let h = header(root, ROOT_ENTRIES, ctx)?;
    let (mut lo, mut hi) = (0u64, 1u64 << 32);
    let mut node = parse(root, &h, lo, hi, ctx)?;
    let mut depth = h.depth;
    loop {
        match node {
            Node::Leaf(exts) => {
                let i = exts.partition_point(|e| u64::from(e.logical) <= u64::from(lb));
                return Ok(i
                    .checked_sub(1)
                    .map(|i| exts[i])
                    .filter(|e| u64::from(lb) < e.end()));
            }
            Node::Index(ix) => {
                let i = ix.partition_point(|x| x.logical <= lb);
                let Some(i) = i.checked_sub(1) else {
                    return Ok(None);
                };
                lo = u64::from(ix[i].logical);
                hi = ix.get(i + 1).map_or(hi, |n| u64::from(n.logical));
                depth -= 1;
                let (block, h) = read_node(ix[i].child, depth, ctx, read)?;
                node = parse(&block, &h, lo, hi, ctx)?;
            }
        }
    }
}

/// An empty root for a new extent-mapped inode.
pub fn empty_root() -> [u8; ROOT_BYTES] {
    let mut r = [0u8; ROOT_BYTES];
    put_u16(&mut r, 0, MAGIC);
    put_u16(&mut r, 4, ROOT_ENTRIES as u16);
    r
}

/// A whole extent tree in memory, for editing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExtentTree {
    /// Every extent, sorted by logical block, non-overlapping.
    pub extents: Vec<Extent>,
    /// The tree blocks the tree occupied when loaded (reused when laid out again).
    pub nodes: Vec<u64>,
}

/// A laid-out tree: the new `i_block` and the tree blocks to write.
#[derive(Debug)]
pub struct Layout {
    /// The root for `i_block`.
    pub root: [u8; ROOT_BYTES],
    /// `(block, contents)` of every tree block, checksummed when asked.
    pub blocks: Vec<(u64, Vec<u8>)>,
}

impl ExtentTree {
    /// Loads every extent of the tree rooted in `root`.
    pub fn load(
        root: &[u8; ROOT_BYTES],
        ctx: &TreeCtx,
        read: &mut dyn FnMut(u64) -> Result<Vec<u8>, Ext2Error>,
    ) -> Result<ExtentTree, Ext2Error> {
        let h = header(root, ROOT_ENTRIES, ctx)?;
        let mut tree = ExtentTree::default();
        let node = parse(root, &h, 0, 1 << 32, ctx)?;
        tree.collect(node, h.depth, 1 << 32, ctx, read)?;
        Ok(tree)
    }

    fn collect(
        &mut self,
        node: Node,
        depth: u16,
        hi: u64,
        ctx: &TreeCtx,
        read: &mut dyn FnMut(u64) -> Result<Vec<u8>, Ext2Error>,
    ) -> Result<(), Ext2Error> {
        match node {
            Node::Leaf(exts) => {
                if let (Some(last), Some(first)) = (self.extents.last(), exts.first()) {
                    if last.end() > u64::from(first.logical) {
                        return Err(ctx.bad("overlapping extents"));
                    }
                }
                self.extents.extend(exts);
            }
            Node::Index(ix) => {
                for (i, x) in ix.iter().enumerate() {
                    if self.nodes.len() > 1 << 20 || self.nodes.contains(&x.child) {
                        return Err(ctx.bad(format!("tree block {} used twice", x.child)));
                    }
                    self.nodes.push(x.child);
                    let child_hi = ix.get(i + 1).map_or(hi, |n| u64::from(n.logical));
                    let (block, h) = read_node(x.child, depth - 1, ctx, read)?;
                    let child = parse(&block, &h, u64::from(x.logical), child_hi, ctx)?;
                    self.collect(child, depth - 1, child_hi, ctx, read)?;
                }
            }
        }
        Ok(())
    }

    /// The extent mapping `lb`, if any.
    pub fn find(&self, lb: u32) -> Option<Extent> {
        let i = self.extents.partition_point(|e| e.logical <= lb);
        i.checked_sub(1)
            .map(|i| self.extents[i])
            .filter(|e| u64::from(lb) < e.end())
    }

    /// Maps the unmapped logical run `logical..logical+len` to `phys..`, merging with
    /// the extents before and after when they continue it. A run overlapping an
    /// existing mapping is refused (the caller must look up first).
    pub fn insert(&mut self, logical: u32, len: u32, phys: u64, uninit: bool) -> Result<(), Ext2Error> {
        let new = Extent {
            logical,
            len,
            phys,
            uninit,
        };
        if len == 0 || len > new.max_len() || new.end() > 1 << 32 {
            return Err(Ext2Error::InvalidArgument("extent length"));
        }
        let i = self.extents.partition_point(|e| e.logical < logical);
        let overlaps_prev = i > 0 && self.extents[i - 1].end() > u64::from(logical);
        let overlaps_next = self
            .extents
            .get(i)
            .is_some_and(|n| u64::from(n.logical) < new.end());
        if overlaps_prev || overlaps_next {
            return Err(corrupt(format!(
                "extent insert at logical {logical} overlaps a mapping"
            )));
        }
        self.extents.insert(i, new);
        self.merge_around(i);
        Ok(())
    }

    /// Joins extent `i` with its neighbours where they continue each other.
    fn merge_around(&mut self, mut i: usize) {
        if i > 0 && self.extents[i - 1].joins(&self.extents[i]) {
            self.extents[i - 1].len += self.extents[i].len;
            self.extents.remove(i);
            i -= 1;
        }
        if i + 1 < self.extents.len() && self.extents[i].joins(&self.extents[i + 1]) {
            self.extents[i].len += self.extents[i + 1].len;
            self.extents.remove(i + 1);
        }
    }

    /// Marks logical block `lb` (inside an uninitialized extent) as written, splitting
    /// that extent around it. Returns false if `lb` was not in an uninitialized extent.
    pub fn mark_init(&mut self, lb: u32) -> bool {
        let i = self.extents.partition_point(|e| e.logical <= lb);
        let Some(i) = i.checked_sub(1) else {
            return false;
        };
        let e = self.extents[i];
        if !e.uninit || u64::from(lb) >= e.end() {
            return false;
        }
        let off = lb - e.logical;
        let mut parts = Vec::with_capacity(3);
        if off > 0 {
            parts.push(Extent { len: off, ..e });
        }
        parts.push(Extent {
            logical: lb,
            len: 1,
            phys: e.phys + u64::from(off),
            uninit: false,
        });
        if off + 1 < e.len {
            parts.push(Extent {
                logical: lb + 1,
                len: e.len - off - 1,
                phys: e.phys + u64::from(off) + 1,
                uninit: true,
            });
        }
        let at = i + usize::from(off > 0);
        self.extents.splice(i..=i, parts);
        self.merge_around(at);
        true
    }

    /// Unmaps every logical block `>= keep`; returns the freed physical runs
    /// `(first block, count)`.
    pub fn truncate(&mut self, keep: u32) -> Vec<(u64, u32)> {
        let mut freed = Vec::new();
        while let Some(last) = self.extents.last_mut() {
            if u64::from(keep) >= last.end() {
                break;
            }
            if keep <= last.logical {
                freed.push((last.phys, last.len));
                self.extents.pop();
            } else {
                let kept = keep - last.logical;
                freed.push((last.phys + u64::from(kept), last.len - kept));
                last.len = kept;
            }
        }
        freed
    }

    /// Data blocks mapped (initialized or not).
    #[cfg(test)]
    pub fn data_blocks(&self) -> u64 {
        self.extents.iter().map(|e| u64::from(e.len)).sum()
    }

    /// Tree blocks (outside `i_block`) a layout of the current extents needs.
    pub fn nodes_needed(&self, per_block: usize) -> usize {
        nodes_for(self.extents.len(), per_block)
    }
}

/// Tree blocks a layout of `n` extents needs (the root in `i_block` holds 4 entries).
pub fn nodes_for(mut n: usize, per_block: usize) -> usize {
    let mut total = 0;
    while n > ROOT_ENTRIES {
        n = n.div_ceil(per_block);
        total += n;
    }
    total
}

impl ExtentTree {
    /// Lays the tree out onto exactly `nodes_needed` tree blocks `nodes` (the caller
    /// reuses the old ones, allocates or frees the difference), with checksums when
    /// `ctx.csum_seed` is set.
    pub fn layout(&self, nodes: &[u64], ctx: &TreeCtx) -> Result<Layout, Ext2Error> {
        let per = ctx.per_block();
        if nodes.len() != self.nodes_needed(per) {
            return Err(ctx.bad("layout given the wrong number of tree blocks"));
        }
        // Entries of the current level as raw 12-byte records with their first logical.
        let mut level: Vec<(u32, [u8; ENTRY])> =
            self.extents.iter().map(|e| (e.logical, leaf_bytes(e))).collect();
        let mut depth = 0u16;
        let mut blocks = Vec::with_capacity(nodes.len());
        let mut next_node = nodes.iter();
        while level.len() > ROOT_ENTRIES {
            let mut up = Vec::with_capacity(level.len().div_ceil(per));
            for chunk in level.chunks(per) {
                let b = *next_node.next().ok_or_else(|| ctx.bad("out of tree blocks"))?;
                let mut buf = vec![0u8; ctx.block_size];
                write_node(&mut buf, per, depth, chunk);
                if let Some(seed) = ctx.csum_seed {
                    csum::set_extent_block(seed, &mut buf);
                }
                blocks.push((b, buf));
                up.push((chunk[0].0, index_bytes(chunk[0].0, b)));
            }
            level = up;
            depth += 1;
        }
        let mut root = [0u8; ROOT_BYTES];
        write_node(&mut root, ROOT_ENTRIES, depth, &level);
        Ok(Layout { root, blocks })
    }
}

fn leaf_bytes(e: &Extent) -> [u8; ENTRY] {
    let mut b = [0u8; ENTRY];
    put_u32(&mut b, 0, e.logical);
    put_u16(
        &mut b,
        4,
        (e.len + if e.uninit { MAX_INIT_LEN } else { 0 }) as u16,
    );
    put_u16(&mut b, 6, (e.phys >> 32) as u16);
    put_u32(&mut b, 8, e.phys as u32);
    b
}

fn index_bytes(logical: u32, child: u64) -> [u8; ENTRY] {
    let mut b = [0u8; ENTRY];
    put_u32(&mut b, 0, logical);
    put_u32(&mut b, 4, child as u32);
    put_u16(&mut b, 8, (child >> 32) as u16);
    b
}

fn write_node(buf: &mut [u8], max: usize, depth: u16, entries: &[(u32, [u8; ENTRY])]) {
    put_u16(buf, 0, MAGIC);
    put_u16(buf, 2, entries.len() as u16);
    put_u16(buf, 4, max as u16);
    put_u16(buf, 6, depth);
    for (i, (_, e)) in entries.iter().enumerate() {
        buf[ENTRY + i * ENTRY..2 * ENTRY + i * ENTRY].copy_from_slice(e);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::csum::test_image::TestImage;
    use std::collections::HashMap;

    fn ctx(bs: usize, seed: Option<u32>) -> TreeCtx {
        TreeCtx {
            ino: 12,
            blocks_count: 1 << 40,
            block_size: bs,
            csum_seed: seed,
        }
    }

    fn ext(logical: u32, len: u32, phys: u64) -> Extent {
        Extent {
            logical,
            len,
            phys,
            uninit: false,
        }
    }

    #[test]
    fn insert_merges_adjacent_runs_and_refuses_overlaps() {
        let mut t = ExtentTree::default();
        t.insert(0, 1, 100, false).unwrap();
        t.insert(1, 1, 101, false).unwrap();
        t.insert(3, 1, 103, false).unwrap();
        assert_eq!(t.extents, vec![ext(0, 2, 100), ext(3, 1, 103)]);
        t.insert(2, 1, 102, false).unwrap();
        assert_eq!(t.extents, vec![ext(0, 4, 100)]);
        assert!(t.insert(3, 2, 500, false).is_err());
        t.insert(10, 1, 50, false).unwrap();
        assert_eq!(t.find(10), Some(ext(10, 1, 50)));
        assert_eq!(t.find(5), None);
        assert_eq!(t.find(3).map(|e| e.phys + 3), Some(103));
    }

    #[test]
    fn mark_init_splits_an_uninitialized_extent() {
        let mut t = ExtentTree::default();
        t.insert(0, 10, 1000, true).unwrap();
        assert!(t.mark_init(4));
        assert_eq!(t.extents.len(), 3);
        assert_eq!(t.extents[1], ext(4, 1, 1004));
        assert!(t.extents[0].uninit && t.extents[2].uninit);
        assert!(t.mark_init(5));
        assert_eq!(t.extents[1], ext(4, 2, 1004));
        assert!(!t.mark_init(5));
    }

    #[test]
    fn truncate_frees_the_tail_of_the_runs() {
        let mut t = ExtentTree::default();
        t.insert(0, 4, 100, false).unwrap();
        t.insert(10, 4, 200, false).unwrap();
        assert_eq!(t.truncate(12), vec![(202, 2)]);
        assert_eq!(t.truncate(2), vec![(200, 2), (102, 2)]);
        assert_eq!(t.extents, vec![ext(0, 2, 100)]);
        assert_eq!(t.truncate(0), vec![(100, 2)]);
        assert!(t.extents.is_empty());
    }

    /// Lays out `n` fragmented extents and reads every block back through `lookup`.
    fn round_trip(n: u32, bs: usize, seed: Option<u32>) -> usize {
        let c = ctx(bs, seed);
        let mut t = ExtentTree::default();
        for i in 0..n {
            t.insert(2 * i, 1, 5000 + 2 * u64::from(i), i % 7 == 3).unwrap();
        }
        let need = t.nodes_needed(c.per_block());
        let nodes: Vec<u64> = (0..need as u64).map(|i| 10 + i).collect();
        let lay = t.layout(&nodes, &c).unwrap();
        let disk: HashMap<u64, Vec<u8>> = lay.blocks.into_iter().collect();
        let mut read = |b: u64| disk.get(&b).cloned().ok_or_else(|| corrupt("no such block"));
        for i in 0..n {
            let e = lookup(&lay.root, 2 * i, &c, &mut read).unwrap().unwrap();
            assert_eq!(e.phys + u64::from(2 * i - e.logical), 5000 + 2 * u64::from(i));
            assert_eq!(e.uninit, i % 7 == 3);
            assert_eq!(lookup(&lay.root, 2 * i + 1, &c, &mut read).unwrap(), None);
        }
        let back = ExtentTree::load(&lay.root, &c, &mut read).unwrap();
        assert_eq!(back.extents, t.extents);
        assert_eq!(back.nodes.len(), need);
        u16_at(&lay.root, 6) as usize
    }

    #[test]
    fn layout_grows_depth_as_extents_pass_each_capacity() {
        assert_eq!(round_trip(4, 1024, None), 0);
        assert_eq!(round_trip(5, 1024, None), 1);
        assert_eq!(round_trip(4 * 84, 1024, Some(7)), 1);
        assert_eq!(round_trip(4 * 84 + 1, 1024, Some(7)), 2);
        assert_eq!(round_trip(4 * 84 * 84 + 1, 1024, None), 3);
        assert_eq!(round_trip(4 * 340, 4096, Some(99)), 1);
        assert_eq!(round_trip(4 * 340 + 1, 4096, Some(99)), 2);
    }

    #[test]
    fn corrupt_nodes_are_errors_naming_the_inode() {
        let c = ctx(1024, Some(3));
        let mut t = ExtentTree::default();
        for i in 0..20 {
            t.insert(2 * i, 1, 500 + 2 * u64::from(i), false).unwrap();
        }
        let lay = t.layout(&[40], &c).unwrap();
        let mut block = lay.blocks[0].1.clone();
        block[ENTRY + 8] ^= 1; // a physical block number
        let mut read = |_| Ok(block.clone());
        let err = lookup(&lay.root, 0, &c, &mut read).unwrap_err().to_string();
        assert!(err.contains("inode 12: extent block: checksum mismatch"), "{err}");
        let mut root = lay.root;
        root[0] = 0;
        let err = lookup(&root, 0, &c, &mut |_| Ok(Vec::new()))
            .unwrap_err()
            .to_string();
        assert!(err.contains("bad magic"), "{err}");
        let mut root = lay.root;
        put_u16(&mut root, 2, 5);
        assert!(lookup(&root, 0, &c, &mut |_| Ok(Vec::new())).is_err());
    }

    #[test]
    fn reads_the_extents_mke2fs_wrote() {
        let img = TestImage::make(&["-t", "ext4", "-O", "metadata_csum,64bit"], 1024, 8192, true);
        let sb = img.superblock();
        let seed = csum::fs_seed(&sb, img.incompat());
        let ino = (12..20)
            .find(|&i| u32_at(&img.inode(i), 4) == 300_000)
            .expect("big.bin");
        let raw = img.inode(ino);
        let mut root = [0u8; ROOT_BYTES];
        root.copy_from_slice(&raw[0x28..0x28 + ROOT_BYTES]);
        let c = TreeCtx {
            ino,
            blocks_count: u64::from(img.u32(4)),
            block_size: img.bs,
            csum_seed: Some(csum::inode_seed(seed, ino, u32_at(&raw, 0x64))),
        };
        let mut read = |b: u64| Ok(img.block(b));
        let t = ExtentTree::load(&root, &c, &mut read).unwrap();
        assert_eq!(t.data_blocks(), 300_000u64.div_ceil(1024));
        for lb in [0u32, 100, 292] {
            let e = lookup(&root, lb, &c, &mut read).unwrap().unwrap();
            let data = img.block(e.phys + u64::from(lb - e.logical));
            let want: Vec<u8> = (lb * 1024..lb * 1024 + 16).map(|i| (i % 251) as u8).collect();
            assert_eq!(&data[..16], &want[..]);
        }
    }
}
