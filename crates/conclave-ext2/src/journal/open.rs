//! Journal recovery at open: before the superblock and group descriptors are parsed
//! (the journal may hold newer copies of them), find the journal inode with raw reads,
//! replay its committed transactions, empty the log, and clear `needs_recovery`.

use super::{recover, JournalSuperblock, NEEDS_RECOVERY};
use crate::block_io::{read_bytes, write_bytes};
use crate::csum;
use crate::error::{corrupt, Ext2Error};
use crate::extent::{self, TreeCtx, ROOT_BYTES};
use crate::le::{put_u32, u16_at, u32_at};
use conclave_bd::BlockDevice;

const SB_OFFSET: u64 = 1024;
const COMPAT_HAS_JOURNAL: u32 = 0x4;
const INCOMPAT_RECOVER: u32 = 0x4;
const INCOMPAT_JOURNAL_DEV: u32 = 0x8;
const INCOMPAT_64BIT: u32 = 0x80;
const EXTENTS_FL: u32 = 0x80000;

/// Superblock fields recovery needs, read without the full parser's checks.
struct RawGeometry {
    bs: u64,
    blocks_count: u64,
    first_data_block: u64,
    inodes_per_group: u32,
    inode_size: u64,
    desc_size: u64,
}

fn read_block(dev: &dyn BlockDevice, g: &RawGeometry, b: u64) -> Result<Vec<u8>, Ext2Error> {
    if b >= g.blocks_count {
        return Err(corrupt(format!("journal: block {b} out of range")));
    }
    let mut buf = vec![0u8; g.bs as usize];
    read_bytes(dev, b * g.bs, &mut buf)?;
    Ok(buf)
}

/// Replays the journal if the superblock says it must be; returns how many
/// transactions were replayed. With `read_only` nothing may be written, so such an
/// image is refused ("needs journal recovery, run e2fsck").
pub(crate) fn recover_if_needed(dev: &dyn BlockDevice, read_only: bool) -> Result<u32, Ext2Error> {
    let mut sb = vec![0u8; 1024];
    if dev.block_count() == 0 {
        return Ok(0);
    }
    read_bytes(dev, SB_OFFSET, &mut sb)?;
    let incompat = u32_at(&sb, 0x60);
    if u16_at(&sb, 56) != 0xEF53 || u32_at(&sb, 76) == 0 || incompat & INCOMPAT_RECOVER == 0 {
        return Ok(0);
    }
    if read_only {
        return Err(Ext2Error::NeedsRecovery);
    }
    if u32_at(&sb, 0x5C) & COMPAT_HAS_JOURNAL == 0 || incompat & INCOMPAT_JOURNAL_DEV != 0 {
        return Err(Ext2Error::NeedsRecovery);
    }
    let journal_ino = u32_at(&sb, 0xE0);
    if journal_ino == 0 || u32_at(&sb, 0xE4) != 0 {
        return Err(Ext2Error::Unsupported(format!(
            "{NEEDS_RECOVERY} (external journal)"
        )));
    }
    let wide = incompat & INCOMPAT_64BIT != 0;
    let log = u32_at(&sb, 0x18);
    if log > 6 {
        return Err(corrupt(format!("superblock: log block size {log}")));
    }
    let g = RawGeometry {
        bs: 1024 << log,
        blocks_count: u64::from(u32_at(&sb, 4))
            | if wide {
                u64::from(u32_at(&sb, 0x150)) << 32
            } else {
                0
            },
        first_data_block: u64::from(u32_at(&sb, 0x14)),
        inodes_per_group: u32_at(&sb, 0x28),
        inode_size: u64::from(u16_at(&sb, 0x58)),
        desc_size: if wide { u64::from(u16_at(&sb, 0xFE)) } else { 32 },
    };
    if g.inodes_per_group == 0 || journal_ino > g.inodes_per_group || g.inode_size < 128 || g.desc_size < 32 {
        return Err(corrupt("superblock: geometry unusable for journal recovery"));
    }
    // Inode `journal_ino` is in group 0.
    let gdt = (g.first_data_block + 1) * g.bs;
    let mut desc = vec![0u8; g.desc_size as usize];
    read_bytes(dev, gdt, &mut desc)?;
    let table = u64::from(u32_at(&desc, 8))
        | if g.desc_size >= 64 {
            u64::from(u32_at(&desc, 0x28)) << 32
        } else {
            0
        };
    let mut raw = vec![0u8; g.inode_size as usize];
    let at = table
        .checked_mul(g.bs)
        .and_then(|t| t.checked_add(u64::from(journal_ino - 1) * g.inode_size))
        .ok_or_else(|| corrupt("journal inode location"))?;
    read_bytes(dev, at, &mut raw)?;
    let mut i_block = [0u8; ROOT_BYTES];
    i_block.copy_from_slice(&raw[40..40 + ROOT_BYTES]);
    let extents = u32_at(&raw, 32) & EXTENTS_FL != 0;
    let ctx = TreeCtx {
        ino: journal_ino,
        blocks_count: g.blocks_count,
        block_size: g.bs as usize,
        csum_seed: None,
    };
    // Journal block `n` to file-system block.
    let map = |n: u32| -> Result<u64, Ext2Error> {
        if extents {
            let e = extent::lookup(&i_block, n, &ctx, &mut |b| read_block(dev, &g, b))?
                .ok_or_else(|| corrupt(format!("journal: hole at block {n}")))?;
            Ok(e.phys + u64::from(n - e.logical))
        } else {
            block_map_lookup(dev, &g, &i_block, u64::from(n))
        }
    };
    let mut read = |n: u32| read_block(dev, &g, map(n)?);
    let jsb_raw = read(0)?;
    let jsb = JournalSuperblock::from_bytes(&jsb_raw, g.bs as u32)?;
    let rec = recover(&jsb, &mut read)?;
    for (target, data) in &rec.writes {
        if *target >= g.blocks_count {
            return Err(corrupt(format!(
                "journal: transaction writes block {target} out of range"
            )));
        }
        write_bytes(dev, target * g.bs, data)?;
    }
    dev.flush()?;
    let cleared = jsb.cleared(&jsb_raw, rec.next_sequence);
    write_bytes(dev, map(0)? * g.bs, &cleared)?;
    dev.flush()?;
    // The replay may have rewritten the superblock itself: clear the flag on what is
    // there now.
    read_bytes(dev, SB_OFFSET, &mut sb)?;
    let incompat = u32_at(&sb, 0x60) & !INCOMPAT_RECOVER;
    put_u32(&mut sb, 0x60, incompat);
    if u32_at(&sb, 0x64) & csum::RO_COMPAT_METADATA_CSUM != 0 {
        csum::set_superblock(&mut sb);
    }
    write_bytes(dev, SB_OFFSET, &sb)?;
    dev.flush()?;
    Ok(rec.transactions)
}

/// Logical block `n` of a block-mapped (ext3) journal inode.
fn block_map_lookup(
    dev: &dyn BlockDevice,
    g: &RawGeometry,
    i_block: &[u8; ROOT_BYTES],
    n: u64,
) -> Result<u64, Ext2Error> {
    let ptrs = g.bs / 4;
    let (slot, idx, depth) = if n < 12 {
        (n as usize, vec![], 0)
    } else if n - 12 < ptrs {
        (12, vec![n - 12], 1)
    } else if n - 12 - ptrs < ptrs * ptrs {
        let r = n - 12 - ptrs;
        (13, vec![r / ptrs, r % ptrs], 2)
    } else {
        let r = n - 12 - ptrs - ptrs * ptrs;
        if r >= ptrs * ptrs * ptrs {
            return Err(corrupt("journal: block beyond the block map"));
        }
        (14, vec![r / (ptrs * ptrs), (r / ptrs) % ptrs, r % ptrs], 3)
    };
    let mut cur = u64::from(u32_at(i_block, slot * 4));
    for &i in idx.iter().take(depth) {
        if cur == 0 {
            break;
        }
        let block = read_block(dev, g, cur)?;
        cur = u64::from(u32_at(&block, i as usize * 4));
    }
    if cur == 0 {
        return Err(corrupt(format!("journal: hole at block {n}")));
    }
    Ok(cur)
}
