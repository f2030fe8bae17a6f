//! The jbd2 journal of ext3/ext4 (`has_journal`): its superblock, and recovery of the
//! committed transactions of a file system that was not cleanly unmounted.
//!
//! This engine never writes through the journal. It keeps the journal empty and clean
//! (`s_start == 0`) and orders its own writes as it does on ext2 (see `docs/ext2.md`),
//! which `e2fsck` accepts. An image whose journal holds transactions (`needs_recovery`)
//! is replayed here the way the kernel's `do_one_pass` does — committed transactions in
//! order, revoked blocks skipped, checksums (v2/v3) checked — or refused with "needs
//! journal recovery, run e2fsck" when it uses something this replay does not handle
//! (fast commits, an external journal, a failed checksum).
//!
//! Everything in the journal is big-endian.

use crate::csum::crc32c;
use crate::error::{corrupt, Ext2Error};

mod open;
pub(crate) use open::recover_if_needed;

/// `h_magic` of every journal block with a header.
pub const MAGIC: u32 = 0xC03B_3998;
const BLOCKTYPE_DESCRIPTOR: u32 = 1;
const BLOCKTYPE_COMMIT: u32 = 2;
const BLOCKTYPE_SB_V1: u32 = 3;
const BLOCKTYPE_SB_V2: u32 = 4;
const BLOCKTYPE_REVOKE: u32 = 5;

/// Journal incompat features.
const INCOMPAT_REVOKE: u32 = 0x1;
const INCOMPAT_64BIT: u32 = 0x2;
const INCOMPAT_ASYNC_COMMIT: u32 = 0x4;
const INCOMPAT_CSUM_V2: u32 = 0x8;
const INCOMPAT_CSUM_V3: u32 = 0x10;
const INCOMPAT_FAST_COMMIT: u32 = 0x20;
const INCOMPAT_KNOWN: u32 =
    INCOMPAT_REVOKE | INCOMPAT_64BIT | INCOMPAT_ASYNC_COMMIT | INCOMPAT_CSUM_V2 | INCOMPAT_CSUM_V3;

/// Tag flags.
const FLAG_ESCAPE: u32 = 1;
const FLAG_SAME_UUID: u32 = 2;
const FLAG_LAST_TAG: u32 = 8;

/// Offset of `s_checksum` in the journal superblock.
const JSB_CHECKSUM: usize = 0xFC;

/// The message of every refusal: the operator's way out.
pub const NEEDS_RECOVERY: &str = "needs journal recovery, run e2fsck";

fn be32(b: &[u8], off: usize) -> u32 {
    u32::from_be_bytes([b[off], b[off + 1], b[off + 2], b[off + 3]])
}

fn put_be32(b: &mut [u8], off: usize, v: u32) {
    b[off..off + 4].copy_from_slice(&v.to_be_bytes());
}

fn refuse(why: impl std::fmt::Display) -> Ext2Error {
    Ext2Error::Unsupported(format!("{NEEDS_RECOVERY} ({why})"))
}

/// The journal superblock (first block of the journal).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JournalSuperblock {
    /// Journal block size (the file system's).
    pub block_size: u32,
    /// Blocks in the journal.
    pub maxlen: u32,
    /// First log block.
    pub first: u32,
    /// Sequence of the first transaction expected in the log.
    pub sequence: u32,
    /// Log block of the first transaction; 0 when the journal is empty (clean).
    pub start: u32,
    /// Incompat features.
    pub incompat: u32,
    /// Whether this is a v2 superblock (features are meaningful).
    pub v2: bool,
    /// `crc32c(~0, uuid)`, the seed of v2/v3 checksums.
    csum_seed: u32,
}

impl JournalSuperblock {
    /// Parses and checks the journal superblock `b` (one journal block).
    pub fn from_bytes(b: &[u8], fs_block_size: u32) -> Result<JournalSuperblock, Ext2Error> {
        if b.len() < 1024 || be32(b, 0) != MAGIC {
            return Err(corrupt("journal superblock: bad magic"));
        }
        let v2 = match be32(b, 4) {
            BLOCKTYPE_SB_V1 => false,
            BLOCKTYPE_SB_V2 => true,
            t => return Err(corrupt(format!("journal superblock: block type {t}"))),
        };
        let incompat = if v2 { be32(b, 0x28) } else { 0 };
        let jsb = JournalSuperblock {
            block_size: be32(b, 0xC),
            maxlen: be32(b, 0x10),
            first: be32(b, 0x14),
            sequence: be32(b, 0x18),
            start: be32(b, 0x1C),
            incompat,
            v2,
            csum_seed: crc32c(!0, &b[0x30..0x40]),
        };
        if jsb.block_size != fs_block_size {
            return Err(corrupt(format!(
                "journal superblock: block size {} (file system {fs_block_size})",
                jsb.block_size
            )));
        }
        if jsb.first == 0
            || jsb.first >= jsb.maxlen
            || (jsb.start != 0 && (jsb.start < jsb.first || jsb.start >= jsb.maxlen))
        {
            return Err(corrupt(format!(
                "journal superblock: first {} start {} of {} blocks",
                jsb.first, jsb.start, jsb.maxlen
            )));
        }
        if jsb.has_csum() {
            let mut copy = b[..1024].to_vec();
            let stored = be32(&copy, JSB_CHECKSUM);
            put_be32(&mut copy, JSB_CHECKSUM, 0);
            let want = crc32c(!0, &copy);
            if stored != want {
                return Err(corrupt(format!(
                    "journal superblock: checksum mismatch (stored {stored:#x}, computed {want:#x})"
                )));
            }
        }
        Ok(jsb)
    }

    /// Whether the journal holds no transactions.
    pub fn is_clean(&self) -> bool {
        self.start == 0
    }

    fn has_csum(&self) -> bool {
        self.incompat & (INCOMPAT_CSUM_V2 | INCOMPAT_CSUM_V3) != 0
    }

    fn is_64bit(&self) -> bool {
        self.incompat & INCOMPAT_64BIT != 0
    }

    /// Bytes of one descriptor tag (without the uuid that may follow it).
    fn tag_bytes(&self) -> usize {
        if self.incompat & INCOMPAT_CSUM_V3 != 0 {
            return 16;
        }
        let sz = 12
            + if self.incompat & INCOMPAT_CSUM_V2 != 0 {
                2
            } else {
                0
            };
        if self.is_64bit() {
            sz
        } else {
            sz - 4
        }
    }

    /// The log block after `b`, wrapping from the end back to `first`.
    fn next(&self, b: u32) -> u32 {
        if b + 1 >= self.maxlen {
            self.first
        } else {
            b + 1
        }
    }

    /// Checks the 4-byte tail checksum of a descriptor or revoke block.
    fn block_tail_ok(&self, block: &[u8]) -> bool {
        if !self.has_csum() {
            return true;
        }
        let t = block.len() - 4;
        let mut copy = block.to_vec();
        put_be32(&mut copy, t, 0);
        be32(block, t) == crc32c(self.csum_seed, &copy)
    }

    fn commit_ok(&self, block: &[u8]) -> bool {
        if !self.has_csum() {
            return true;
        }
        let mut copy = block.to_vec();
        put_be32(&mut copy, 16, 0);
        be32(block, 16) == crc32c(self.csum_seed, &copy)
    }

    /// The same journal superblock with an empty log (after recovery): `s_start = 0`
    /// and the next sequence, checksum refreshed.
    pub fn cleared(&self, raw: &[u8], next_sequence: u32) -> Vec<u8> {
        let mut b = raw.to_vec();
        put_be32(&mut b, 0x18, next_sequence);
        put_be32(&mut b, 0x1C, 0);
        if self.has_csum() {
            put_be32(&mut b, JSB_CHECKSUM, 0);
            let c = crc32c(!0, &b[..1024]);
            put_be32(&mut b, JSB_CHECKSUM, c);
        }
        b
    }
}

/// One block a transaction logged: file-system block `target` was copied to log block
/// `log`.
#[derive(Clone, Copy, Debug)]
struct Logged {
    target: u64,
    log: u32,
    escaped: bool,
    checksum: Option<u32>,
}

/// What recovery writes: the final contents of each file-system block, in order.
#[derive(Debug, Default)]
pub struct Recovery {
    /// `(file-system block, contents)`, to be written in this order.
    pub writes: Vec<(u64, Vec<u8>)>,
    /// Committed transactions replayed.
    pub transactions: u32,
    /// The sequence the next transaction would have (for the cleared superblock).
    pub next_sequence: u32,
}

/// Replays the committed transactions of the log described by `jsb`. `read` returns
/// journal block `n` (logical, inside the journal). Nothing is written here: the
/// caller writes `writes`, then the cleared journal superblock, then clears
/// `needs_recovery`.
pub fn recover(
    jsb: &JournalSuperblock,
    read: &mut dyn FnMut(u32) -> Result<Vec<u8>, Ext2Error>,
) -> Result<Recovery, Ext2Error> {
    if jsb.is_clean() {
        return Ok(Recovery {
            next_sequence: jsb.sequence,
            ..Recovery::default()
        });
    }
    if jsb.incompat & INCOMPAT_FAST_COMMIT != 0 {
        return Err(refuse("fast commits"));
    }
    if jsb.incompat & !INCOMPAT_KNOWN != 0 {
        return Err(refuse(format!("journal features {:#x}", jsb.incompat)));
    }
    let bs = jsb.block_size as usize;
    let mut seq = jsb.sequence;
    let mut at = jsb.start;
    let mut committed: Vec<(u32, Vec<Logged>)> = Vec::new();
    let mut revoked: std::collections::HashMap<u64, u32> = std::collections::HashMap::new();
    let mut pending: Vec<Logged> = Vec::new();
    let mut pending_revokes: Vec<u64> = Vec::new();
    let mut steps = 0u32;
    // One pass collects committed transactions; a transaction without its commit
    // block (the crash happened while writing it) is ignored, as by the kernel.
    loop {
        steps += 1;
        if steps > jsb.maxlen {
            break; // went round the whole log: stop, as the kernel does on a wrap
        }
        let block = read(at)?;
        if block.len() != bs || be32(&block, 0) != MAGIC || be32(&block, 8) != seq {
            break;
        }
        match be32(&block, 4) {
            BLOCKTYPE_DESCRIPTOR => {
                if !jsb.block_tail_ok(&block) {
                    break;
                }
                let (tags, _) = parse_tags(jsb, &block)?;
                for mut t in tags {
                    at = jsb.next(at);
                    t.log = at;
                    pending.push(t);
                }
                at = jsb.next(at);
            }
            BLOCKTYPE_REVOKE => {
                if !jsb.block_tail_ok(&block) {
                    break;
                }
                pending_revokes.extend(parse_revoke(jsb, &block)?);
                at = jsb.next(at);
            }
            BLOCKTYPE_COMMIT => {
                if !jsb.commit_ok(&block) {
                    break;
                }
                for b in pending_revokes.drain(..) {
                    let e = revoked.entry(b).or_insert(seq);
                    *e = (*e).max(seq);
                }
                committed.push((seq, std::mem::take(&mut pending)));
                seq = seq.wrapping_add(1);
                at = jsb.next(at);
            }
            _ => break,
        }
    }
    let mut out = Recovery {
        transactions: committed.len() as u32,
        next_sequence: seq,
        ..Recovery::default()
    };
    for (tseq, blocks) in committed {
        for t in blocks {
            if revoked.get(&t.target).is_some_and(|&r| r >= tseq) {
                continue;
            }
            let mut data = read(t.log)?;
            if data.len() != bs {
                return Err(corrupt(format!("journal block {} read short", t.log)));
            }
            if let Some(want) = t.checksum {
                let c = crc32c(crc32c(jsb.csum_seed, &tseq.to_be_bytes()), &data);
                let c = if jsb.incompat & INCOMPAT_CSUM_V3 != 0 {
                    c
                } else {
                    c & 0xFFFF
                };
                if c != want {
                    return Err(refuse(format!(
                        "journal block {} of transaction {tseq}: checksum mismatch",
                        t.log
                    )));
                }
            }
            if t.escaped {
                put_be32(&mut data, 0, MAGIC);
            }
            out.writes.push((t.target, data));
        }
    }
    Ok(out)
}

/// The tags of a descriptor block, and whether the last one was flagged as last.
fn parse_tags(jsb: &JournalSuperblock, block: &[u8]) -> Result<(Vec<Logged>, bool), Ext2Error> {
    let tb = jsb.tag_bytes();
    let end = block.len() - if jsb.has_csum() { 4 } else { 0 };
    let v3 = jsb.incompat & INCOMPAT_CSUM_V3 != 0;
    let mut off = 12;
    let mut tags = Vec::new();
    while off + tb <= end {
        let lo = be32(block, off);
        let (flags, hi, csum) = if v3 {
            (
                be32(block, off + 4),
                be32(block, off + 8),
                Some(be32(block, off + 12)),
            )
        } else {
            let flags = u32::from(u16::from_be_bytes([block[off + 6], block[off + 7]]));
            let hi = if jsb.is_64bit() { be32(block, off + 8) } else { 0 };
            let csum = (jsb.incompat & INCOMPAT_CSUM_V2 != 0)
                .then(|| u32::from(u16::from_be_bytes([block[off + 4], block[off + 5]])));
            (flags, hi, csum)
        };
        let target = u64::from(lo) | if jsb.is_64bit() { u64::from(hi) << 32 } else { 0 };
        tags.push(Logged {
            target,
            log: 0,
            escaped: flags & FLAG_ESCAPE != 0,
            checksum: csum,
        });
        off += tb;
        if flags & FLAG_SAME_UUID == 0 {
            off += 16;
        }
        if flags & FLAG_LAST_TAG != 0 {
            return Ok((tags, true));
        }
    }
    if tags.is_empty() {
        return Err(corrupt("journal descriptor block without tags"));
    }
    Ok((tags, false))
}

/// The blocks a revoke block revokes.
fn parse_revoke(jsb: &JournalSuperblock, block: &[u8]) -> Result<Vec<u64>, Ext2Error> {
    let count = be32(block, 12) as usize;
    let room = block.len() - if jsb.has_csum() { 4 } else { 0 };
    if !(16..=room).contains(&count) {
        return Err(corrupt(format!("journal revoke block: r_count {count}")));
    }
    let width = if jsb.is_64bit() { 8 } else { 4 };
    let mut out = Vec::new();
    let mut off = 16;
    while off + width <= count {
        let b = if width == 8 {
            u64::from(be32(block, off)) << 32 | u64::from(be32(block, off + 4))
        } else {
            u64::from(be32(block, off))
        };
        out.push(b);
        off += width;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::csum::test_image::TestImage;
    use crate::extent::{lookup, TreeCtx, ROOT_BYTES};
    use std::process::Command;

    /// Reads journal block `n` of the image (journal inode 8, extent-mapped).
    fn journal_reader(img: &TestImage) -> impl FnMut(u32) -> Result<Vec<u8>, Ext2Error> + '_ {
        let raw = img.inode(8);
        let mut root = [0u8; ROOT_BYTES];
        root.copy_from_slice(&raw[0x28..0x28 + ROOT_BYTES]);
        let ctx = TreeCtx {
            ino: 8,
            blocks_count: u64::from(img.u32(4)),
            block_size: img.bs,
            csum_seed: None,
        };
        move |n| {
            let e = lookup(&root, n, &ctx, &mut |b| Ok(img.block(b)))?.ok_or_else(|| corrupt("hole"))?;
            Ok(img.block(e.phys + u64::from(n - e.logical)))
        }
    }

    /// An ext4 image whose journal holds debugfs-written transactions.
    fn image_needing_recovery(bs: u32, checksums: bool, data: &[u8]) -> TestImage {
        let img = TestImage::make(&["-t", "ext4"], bs, 16384, false);
        let data_path = img.dir.path().join("data");
        std::fs::write(&data_path, data).unwrap();
        let script = img.dir.path().join("script");
        std::fs::write(
            &script,
            format!(
                "jo{}\njw -b 300,301 {}\njw -r 301\njc\n",
                if checksums { " -c" } else { "" },
                data_path.display()
            ),
        )
        .unwrap();
        let out = Command::new("debugfs")
            .arg("-w")
            .arg("-f")
            .arg(&script)
            .arg(&img.path)
            .output()
            .unwrap();
        assert!(out.status.success());
        TestImage::load(img.dir, img.path)
    }

    #[test]
    fn a_fresh_journal_is_clean() {
        let img = TestImage::make(&["-t", "ext4", "-O", "^metadata_csum"], 4096, 16384, false);
        let mut read = journal_reader(&img);
        let jsb = JournalSuperblock::from_bytes(&read(0).unwrap(), 4096).unwrap();
        assert!(jsb.is_clean());
        assert_eq!(recover(&jsb, &mut read).unwrap().transactions, 0);
    }

    #[test]
    fn replays_committed_transactions_as_e2fsck_does_skipping_revoked_blocks() {
        for (bs, checksums) in [(1024u32, false), (4096, true)] {
            let data: Vec<u8> = (0..2 * bs).map(|i| (i * 7 % 253) as u8).collect();
            let img = image_needing_recovery(bs, checksums, &data);
            assert_ne!(img.incompat() & 0x4, 0, "needs_recovery set");
            let (jsb, rec) = {
                let mut read = journal_reader(&img);
                let raw = read(0).unwrap();
                let jsb = JournalSuperblock::from_bytes(&raw, bs).unwrap();
                assert!(!jsb.is_clean());
                assert_eq!(jsb.incompat & INCOMPAT_CSUM_V3 != 0, checksums);
                let rec = recover(&jsb, &mut read).unwrap();
                (jsb, rec)
            };
            assert_eq!(rec.transactions, 2);
            assert_eq!(rec.next_sequence, jsb.sequence + 2);
            let targets: Vec<u64> = rec.writes.iter().map(|w| w.0).collect();
            assert_eq!(targets, vec![300], "301 is revoked by the second transaction");
            assert_eq!(rec.writes[0].1, &data[..bs as usize]);
            // The oracle: e2fsck's own replay gives the same block 300 and 301.
            let before_301 = img.block(301);
            let fixed = img.run("e2fsck", &["-fy"]);
            assert_eq!(fixed.block(300), &data[..bs as usize]);
            assert_eq!(fixed.block(301), before_301);
            assert_eq!(fixed.incompat() & 0x4, 0);
        }
    }

    #[test]
    fn a_broken_commit_ends_the_log_and_a_bad_tag_checksum_is_refused() {
        let bs = 4096u32;
        let data = vec![0x5au8; 2 * bs as usize];
        let img = image_needing_recovery(bs, true, &data);
        let mut read = journal_reader(&img);
        let jsb = JournalSuperblock::from_bytes(&read(0).unwrap(), bs).unwrap();
        // Flip a byte of the first data block: its tag checksum no longer matches.
        let mut bad = move |n: u32| {
            let mut b = read(n)?;
            if n == jsb.start + 1 {
                b[100] ^= 1;
            }
            if n == jsb.start + 5 {
                b[20] ^= 1; // second commit block
            }
            Ok(b)
        };
        let jsb2 = jsb.clone();
        let err = recover(&jsb2, &mut bad).unwrap_err().to_string();
        assert!(err.contains(NEEDS_RECOVERY), "{err}");
        assert!(err.contains("checksum mismatch"), "{err}");
    }

    #[test]
    fn rejects_a_corrupt_journal_superblock() {
        let img = TestImage::make(&["-t", "ext4"], 4096, 16384, false);
        let mut read = journal_reader(&img);
        let mut raw = read(0).unwrap();
        raw[0x1C] ^= 0x40; // s_start far past the end
        let err = JournalSuperblock::from_bytes(&raw, 4096).unwrap_err().to_string();
        assert!(err.contains("journal superblock"), "{err}");
        assert!(JournalSuperblock::from_bytes(&raw, 1024).is_err());
        raw[0] = 0;
        assert!(JournalSuperblock::from_bytes(&raw, 4096).is_err());
    }
}
