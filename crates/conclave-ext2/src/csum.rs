//! ext4 checksums: crc32c `metadata_csum` over every metadata structure, and the older
//! crc16 `gdt_csum`/`uninit_bg` group-descriptor checksum.
//!
//! Pure functions over the on-disk bytes, so they can be checked against `mke2fs`
//! output without a file system. Layouts follow the kernel's `fs/ext4` and e2fsprogs:
//! every checksum is a crc32c *without* the final inversion, seeded with the file
//! system's seed (`crc32c(~0, uuid)` or `s_checksum_seed`), and per-inode structures
//! (extent blocks, directory blocks) are seeded again with the inode number and
//! generation so a block moved to another inode fails its check.

use crate::error::{corrupt, Ext2Error};
use crate::le::{put_u16, put_u32, u16_at, u32_at};

#[cfg(test)]
pub(crate) mod test_image;

/// Superblock offset of `s_checksum` (the last 4 bytes of the 1024).
const SB_CHECKSUM: usize = 0x3FC;
/// Superblock offset of `s_uuid`.
const SB_UUID: usize = 0x68;
/// Superblock offset of `s_checksum_seed` (used with `INCOMPAT_CSUM_SEED`).
const SB_CHECKSUM_SEED: usize = 0x270;
/// Superblock offset of `s_checksum_type` (1 = crc32c).
const SB_CHECKSUM_TYPE: usize = 0x175;
/// Incompat feature: the seed is stored in the superblock (so the uuid can change).
pub const INCOMPAT_CSUM_SEED: u32 = 0x2000;
/// Ro-compat feature: group descriptor crc16 (`uninit_bg`).
pub const RO_COMPAT_GDT_CSUM: u32 = 0x10;
/// Ro-compat feature: crc32c over all metadata.
pub const RO_COMPAT_METADATA_CSUM: u32 = 0x400;

/// Group descriptor offset of `bg_checksum`.
const GD_CHECKSUM: usize = 0x1E;
/// Inode offsets of `i_checksum_lo` / `i_checksum_hi` / `i_generation`.
const INODE_CSUM_LO: usize = 0x7C;
const INODE_CSUM_HI: usize = 0x82;
const INODE_GENERATION: usize = 0x64;
/// Size of the fake directory entry that holds a leaf block's checksum.
pub const DIR_TAIL_LEN: usize = 12;
/// `det_reserved_ft` of the checksum tail entry.
const DIR_TAIL_FT: u8 = 0xDE;

/// crc32c as ext4 uses it: seeded by the caller, no final inversion.
pub fn crc32c(seed: u32, data: &[u8]) -> u32 {
    !crc32c::crc32c_append(!seed, data)
}

/// The ANSI crc16 (poly 0x8005, reflected) of the kernel's `lib/crc16.c`, no inversion.
pub fn crc16(mut crc: u16, data: &[u8]) -> u16 {
    for &byte in data {
        crc ^= u16::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xA001
            } else {
                crc >> 1
            };
        }
    }
    crc
}

/// Checksum of a superblock (`s_checksum`).
pub fn superblock(sb: &[u8]) -> u32 {
    crc32c(!0, &sb[..SB_CHECKSUM])
}

/// Checks a `metadata_csum` superblock (checksum type and value).
pub fn verify_superblock(sb: &[u8]) -> Result<(), Ext2Error> {
    if sb[SB_CHECKSUM_TYPE] != 1 {
        return Err(corrupt(format!(
            "superblock: checksum type {} (only 1, crc32c)",
            sb[SB_CHECKSUM_TYPE]
        )));
    }
    mismatch("superblock", u32_at(sb, SB_CHECKSUM), superblock(sb))
}

/// Stores a fresh superblock checksum.
pub fn set_superblock(sb: &mut [u8]) {
    let c = superblock(sb);
    put_u32(sb, SB_CHECKSUM, c);
}

/// The file system's checksum seed, from a superblock.
pub fn fs_seed(sb: &[u8], feature_incompat: u32) -> u32 {
    if feature_incompat & INCOMPAT_CSUM_SEED != 0 {
        u32_at(sb, SB_CHECKSUM_SEED)
    } else {
        crc32c(!0, &sb[SB_UUID..SB_UUID + 16])
    }
}

/// The seed of one inode's structures: the fs seed extended with its number and
/// generation.
pub fn inode_seed(fs_seed: u32, ino: u32, generation: u32) -> u32 {
    let c = crc32c(fs_seed, &ino.to_le_bytes());
    crc32c(c, &generation.to_le_bytes())
}

/// Which group-descriptor checksum a file system uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GroupCsum {
    /// None (plain ext2/ext3).
    None,
    /// crc16 over uuid, group number and descriptor (`gdt_csum`, also `uninit_bg`).
    Crc16 {
        /// `s_uuid`.
        uuid: [u8; 16],
    },
    /// Low 16 bits of crc32c (`metadata_csum`).
    Crc32c {
        /// The file system seed.
        seed: u32,
    },
}

impl GroupCsum {
    /// The kind a superblock asks for.
    pub fn from_superblock(sb: &[u8], feature_incompat: u32, feature_ro_compat: u32) -> GroupCsum {
        if feature_ro_compat & RO_COMPAT_METADATA_CSUM != 0 {
            GroupCsum::Crc32c {
                seed: fs_seed(sb, feature_incompat),
            }
        } else if feature_ro_compat & RO_COMPAT_GDT_CSUM != 0 {
            let mut uuid = [0u8; 16];
            uuid.copy_from_slice(&sb[SB_UUID..SB_UUID + 16]);
            GroupCsum::Crc16 { uuid }
        } else {
            GroupCsum::None
        }
    }

    /// The checksum of descriptor `group` (`desc` is the whole descriptor: 32 bytes, or
    /// `s_desc_size` with `64bit`).
    pub fn compute(&self, group: u32, desc: &[u8]) -> u16 {
        let g = group.to_le_bytes();
        match self {
            GroupCsum::None => 0,
            GroupCsum::Crc16 { uuid } => {
                let mut c = crc16(!0, uuid);
                c = crc16(c, &g);
                c = crc16(c, &desc[..GD_CHECKSUM]);
                crc16(c, &desc[GD_CHECKSUM + 2..])
            }
            GroupCsum::Crc32c { seed } => {
                let mut c = crc32c(*seed, &g);
                c = crc32c(c, &desc[..GD_CHECKSUM]);
                c = crc32c(c, &[0, 0]);
                (crc32c(c, &desc[GD_CHECKSUM + 2..]) & 0xFFFF) as u16
            }
        }
    }

    /// Checks descriptor `group`.
    pub fn verify(&self, group: u32, desc: &[u8]) -> Result<(), Ext2Error> {
        if *self == GroupCsum::None {
            return Ok(());
        }
        mismatch(
            &format!("group descriptor {group}"),
            u32::from(u16_at(desc, GD_CHECKSUM)),
            u32::from(self.compute(group, desc)),
        )
    }

    /// Stores a fresh checksum in descriptor `group`.
    pub fn set(&self, group: u32, desc: &mut [u8]) {
        if *self != GroupCsum::None {
            let c = self.compute(group, desc);
            put_u16(desc, GD_CHECKSUM, c);
        }
    }
}

/// What a file system checksums, decided once from its superblock.
#[derive(Clone, Copy, Debug)]
pub struct FsCsum {
    /// The crc32c seed when `metadata_csum` is on.
    pub fs_seed: Option<u32>,
    /// The group-descriptor checksum.
    pub group: GroupCsum,
    /// Groups may be `BLOCK_UNINIT` / `INODE_UNINIT` (`uninit_bg` or `metadata_csum`).
    pub uninit_groups: bool,
}

impl FsCsum {
    /// From the raw superblock and its feature words.
    pub fn from_superblock(sb: &[u8], incompat: u32, ro_compat: u32) -> FsCsum {
        let meta = ro_compat & RO_COMPAT_METADATA_CSUM != 0;
        FsCsum {
            fs_seed: meta.then(|| fs_seed(sb, incompat)),
            group: GroupCsum::from_superblock(sb, incompat, ro_compat),
            uninit_groups: ro_compat & (RO_COMPAT_METADATA_CSUM | RO_COMPAT_GDT_CSUM) != 0,
        }
    }

    /// The seed of inode `ino`'s structures, when `metadata_csum` is on.
    pub fn inode_seed(&self, ino: u32, generation: u32) -> Option<u32> {
        self.fs_seed.map(|s| inode_seed(s, ino, generation))
    }
}

/// Whether `i_checksum_hi` is inside this inode's extra fields.
fn inode_has_csum_hi(raw: &[u8]) -> bool {
    raw.len() > 128 && u16_at(raw, 128) >= 4
}

/// The checksum of an inode-table slot (`raw` is the whole `s_inode_size` bytes).
pub fn inode(fs_seed: u32, ino: u32, raw: &[u8]) -> u32 {
    let seed = inode_seed(fs_seed, ino, u32_at(raw, INODE_GENERATION));
    let mut c = crc32c(seed, &raw[..INODE_CSUM_LO]);
    c = crc32c(c, &[0, 0]);
    c = crc32c(c, &raw[INODE_CSUM_LO + 2..128.min(raw.len())]);
    if raw.len() > 128 {
        if inode_has_csum_hi(raw) {
            c = crc32c(c, &raw[128..INODE_CSUM_HI]);
            c = crc32c(c, &[0, 0]);
            c = crc32c(c, &raw[INODE_CSUM_HI + 2..]);
        } else {
            c = crc32c(c, &raw[128..]);
        }
    }
    c
}

/// Checks inode `ino`'s checksum (an all-zero slot, never used, passes as e2fsprogs
/// allows).
pub fn verify_inode(fs_seed: u32, ino: u32, raw: &[u8]) -> Result<(), Ext2Error> {
    let want = inode(fs_seed, ino, raw);
    let (have, want) = if inode_has_csum_hi(raw) {
        (
            u32::from(u16_at(raw, INODE_CSUM_LO)) | u32::from(u16_at(raw, INODE_CSUM_HI)) << 16,
            want,
        )
    } else {
        (u32::from(u16_at(raw, INODE_CSUM_LO)), want & 0xFFFF)
    };
    if have != want && raw.iter().any(|&b| b != 0) {
        return mismatch(&format!("inode {ino}"), have, want);
    }
    Ok(())
}

/// Stores a fresh checksum in inode `ino`'s slot.
pub fn set_inode(fs_seed: u32, ino: u32, raw: &mut [u8]) {
    let c = inode(fs_seed, ino, raw);
    put_u16(raw, INODE_CSUM_LO, c as u16);
    if inode_has_csum_hi(raw) {
        put_u16(raw, INODE_CSUM_HI, (c >> 16) as u16);
    }
}

/// Where an extent block's tail checksum sits (after `eh_max` entries), if it fits.
fn extent_tail_offset(block: &[u8]) -> Option<usize> {
    let off = 12 + 12 * usize::from(u16_at(block, 4));
    (off + 4 <= block.len()).then_some(off)
}

/// Checks the tail checksum of an extent tree block of inode `ino`.
pub fn verify_extent_block(inode_seed: u32, ino: u32, block: &[u8]) -> Result<(), Ext2Error> {
    let off = extent_tail_offset(block)
        .ok_or_else(|| corrupt(format!("inode {ino}: extent block: no room for the checksum")))?;
    mismatch(
        &format!("inode {ino}: extent block"),
        u32_at(block, off),
        crc32c(inode_seed, &block[..off]),
    )
}

/// Stores a fresh tail checksum in an extent tree block (the header must be in place).
pub fn set_extent_block(inode_seed: u32, block: &mut [u8]) {
    if let Some(off) = extent_tail_offset(block) {
        let c = crc32c(inode_seed, &block[..off]);
        put_u32(block, off, c);
    }
}

/// Whether a directory leaf block ends with the checksum tail entry.
pub fn has_dir_tail(block: &[u8]) -> bool {
    let t = block.len() - DIR_TAIL_LEN;
    u32_at(block, t) == 0
        && usize::from(u16_at(block, t + 4)) == DIR_TAIL_LEN
        && block[t + 6] == 0
        && block[t + 7] == DIR_TAIL_FT
}

/// Writes an empty checksum tail entry into the last 12 bytes of a leaf block.
pub fn init_dir_tail(block: &mut [u8]) {
    let t = block.len() - DIR_TAIL_LEN;
    block[t..].fill(0);
    put_u16(block, t + 4, DIR_TAIL_LEN as u16);
    block[t + 7] = DIR_TAIL_FT;
}

/// Checks a directory leaf block's tail checksum.
pub fn verify_dir_leaf(inode_seed: u32, ino: u32, lb: u64, block: &[u8]) -> Result<(), Ext2Error> {
    if !has_dir_tail(block) {
        return Err(corrupt(format!(
            "directory {ino} block {lb}: no checksum tail (metadata_csum)"
        )));
    }
    let t = block.len() - DIR_TAIL_LEN;
    mismatch(
        &format!("directory {ino} block {lb}"),
        u32_at(block, t + 8),
        crc32c(inode_seed, &block[..t]),
    )
}

/// Stores a fresh checksum in a leaf block that has its tail entry.
pub fn set_dir_leaf(inode_seed: u32, block: &mut [u8]) {
    let t = block.len() - DIR_TAIL_LEN;
    let c = crc32c(inode_seed, &block[..t]);
    put_u32(block, t + 8, c);
}

/// `(count_offset, limit, count)` of an htree root or node block; `None` if the block
/// is not laid out as one.
pub fn dx_countlimit(block: &[u8]) -> Option<(usize, usize, usize)> {
    let bs = block.len();
    let first_rec = usize::from(u16_at(block, 4));
    let count_offset = if first_rec == bs || (first_rec == 0 && bs == 65536) {
        8
    } else if first_rec == 12 {
        let second = usize::from(u16_at(block, 12 + 4));
        if second != bs - 12 || block[0x18 + 5] != 8 {
            return None;
        }
        0x20
    } else {
        return None;
    };
    let limit = usize::from(u16_at(block, count_offset));
    let count = usize::from(u16_at(block, count_offset + 2));
    Some((count_offset, limit, count))
}

fn dx_csum(inode_seed: u32, block: &[u8], count_offset: usize, count: usize, tail: usize) -> u32 {
    let c = crc32c(inode_seed, &block[..count_offset + count * 8]);
    let c = crc32c(c, &block[tail..tail + 4]);
    crc32c(c, &[0; 4])
}

fn dx_tail(block: &[u8], ino: u32, lb: u64) -> Result<(usize, usize, usize), Ext2Error> {
    let (co, limit, count) = dx_countlimit(block)
        .ok_or_else(|| corrupt(format!("directory {ino} block {lb}: not an htree node")))?;
    let tail = co + limit * 8;
    if tail + 8 > block.len() || count > limit {
        return Err(corrupt(format!(
            "directory {ino} block {lb}: htree limit {limit} leaves no room for the checksum"
        )));
    }
    Ok((co, count, tail))
}

/// Checks an htree root/node block's `dx_tail` checksum.
pub fn verify_dx(inode_seed: u32, ino: u32, lb: u64, block: &[u8]) -> Result<(), Ext2Error> {
    let (co, count, tail) = dx_tail(block, ino, lb)?;
    mismatch(
        &format!("directory {ino} htree block {lb}"),
        u32_at(block, tail + 4),
        dx_csum(inode_seed, block, co, count, tail),
    )
}

/// Stores a fresh `dx_tail` checksum.
pub fn set_dx(inode_seed: u32, ino: u32, lb: u64, block: &mut [u8]) -> Result<(), Ext2Error> {
    let (co, count, tail) = dx_tail(block, ino, lb)?;
    let c = dx_csum(inode_seed, block, co, count, tail);
    put_u32(block, tail + 4, c);
    Ok(())
}

/// A bitmap's checksum: crc32c over its meaningful bytes (`blocks_per_group / 8` or
/// `inodes_per_group / 8`).
pub fn bitmap(fs_seed: u32, bits: &[u8]) -> u32 {
    crc32c(fs_seed, bits)
}

/// Descriptor offsets of the bitmap checksums (lo, hi).
const GD_BLOCK_BITMAP_CSUM: (usize, usize) = (0x18, 0x38);
const GD_INODE_BITMAP_CSUM: (usize, usize) = (0x1A, 0x3A);

/// Which bitmap a checksum belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BitmapKind {
    /// The group's block bitmap.
    Block,
    /// The group's inode bitmap.
    Inode,
}

impl BitmapKind {
    fn offsets(self) -> (usize, usize) {
        match self {
            BitmapKind::Block => GD_BLOCK_BITMAP_CSUM,
            BitmapKind::Inode => GD_INODE_BITMAP_CSUM,
        }
    }

    fn name(self) -> &'static str {
        match self {
            BitmapKind::Block => "block bitmap",
            BitmapKind::Inode => "inode bitmap",
        }
    }
}

/// Checks a bitmap against the checksum kept in its group descriptor (`desc` is the
/// whole descriptor; the high half counts only in 64-byte descriptors).
pub fn verify_bitmap(
    fs_seed: u32,
    kind: BitmapKind,
    group: u32,
    desc: &[u8],
    bits: &[u8],
) -> Result<(), Ext2Error> {
    let (lo, hi) = kind.offsets();
    let c = bitmap(fs_seed, bits);
    let (have, want) = if desc.len() >= hi + 2 {
        (u32::from(u16_at(desc, lo)) | u32::from(u16_at(desc, hi)) << 16, c)
    } else {
        (u32::from(u16_at(desc, lo)), c & 0xFFFF)
    };
    mismatch(&format!("group {group}: {}", kind.name()), have, want)
}

/// Stores a bitmap's checksum in its group descriptor (then the descriptor's own
/// checksum must be refreshed).
pub fn set_bitmap(fs_seed: u32, kind: BitmapKind, desc: &mut [u8], bits: &[u8]) {
    let (lo, hi) = kind.offsets();
    let c = bitmap(fs_seed, bits);
    put_u16(desc, lo, c as u16);
    if desc.len() >= hi + 2 {
        put_u16(desc, hi, (c >> 16) as u16);
    }
}

fn mismatch(what: &str, have: u32, want: u32) -> Result<(), Ext2Error> {
    if have == want {
        Ok(())
    } else {
        Err(corrupt(format!(
            "{what}: checksum mismatch (stored {have:#x}, computed {want:#x})"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::test_image::TestImage;
    use super::*;

    #[test]
    fn crc32c_matches_the_iscsi_check_value() {
        // The standard check value: crc32c("123456789") with init ~0 and final xor.
        assert_eq!(!crc32c(!0, b"123456789"), 0xE306_9283);
    }

    #[test]
    fn crc16_matches_the_arc_check_value() {
        assert_eq!(crc16(0, b"123456789"), 0xBB3D);
    }

    fn check_every_structure(img: &TestImage) {
        let sb = img.superblock();
        verify_superblock(&sb).unwrap();
        let seed = fs_seed(&sb, img.incompat());
        let gc = GroupCsum::from_superblock(&sb, img.incompat(), img.ro_compat());
        assert!(matches!(gc, GroupCsum::Crc32c { .. }));
        for g in 0..img.group_count() {
            let desc = img.group_desc(g);
            gc.verify(g, &desc).unwrap();
            let flags = u16_at(&desc, 0x12);
            if flags & 0x2 == 0 {
                // BLOCK_UNINIT groups have no bitmap on disk to check.
                let bits = img.block(img.gd_u64(&desc, 0x0, 0x20));
                let n = (img.u32(0x20) / 8) as usize;
                verify_bitmap(seed, BitmapKind::Block, g, &desc, &bits[..n]).unwrap();
            }
            if flags & 0x1 == 0 {
                let bits = img.block(img.gd_u64(&desc, 0x4, 0x24));
                let n = (img.u32(0x28) / 8) as usize;
                verify_bitmap(seed, BitmapKind::Inode, g, &desc, &bits[..n]).unwrap();
            }
        }
        // The root inode and the files the tree put in.
        for ino in [2, 11, 12, 13, 14] {
            verify_inode(seed, ino, &img.inode(ino)).unwrap();
        }
        // Root directory leaf block.
        let root = img.inode(2);
        let iseed = inode_seed(seed, 2, u32_at(&root, INODE_GENERATION));
        let leaf = img.block(img.extent_first_phys(&root));
        verify_dir_leaf(iseed, 2, 0, &leaf).unwrap();
    }

    #[test]
    fn verifies_every_checksum_mke2fs_writes_with_metadata_csum() {
        for bs in [1024u32, 4096] {
            let img = TestImage::make(&["-t", "ext4", "-O", "metadata_csum,64bit"], bs, 8192, true);
            check_every_structure(&img);
        }
        let img = TestImage::make(&["-t", "ext4", "-O", "metadata_csum,^64bit"], 4096, 8192, true);
        check_every_structure(&img);
    }

    #[test]
    fn recomputing_a_checksum_reproduces_the_stored_bytes() {
        let img = TestImage::make(&["-t", "ext4", "-O", "metadata_csum,64bit"], 4096, 8192, true);
        let mut sb = img.superblock();
        let before = sb.clone();
        set_superblock(&mut sb);
        assert_eq!(sb, before);
        let seed = fs_seed(&sb, img.incompat());
        let mut raw = img.inode(2);
        let orig = raw.clone();
        raw[INODE_CSUM_LO] ^= 0xff;
        assert!(verify_inode(seed, 2, &raw).is_err());
        set_inode(seed, 2, &mut raw);
        assert_eq!(raw, orig);
        let gc = GroupCsum::from_superblock(&sb, img.incompat(), img.ro_compat());
        let mut d = img.group_desc(0);
        let dorig = d.clone();
        d[GD_CHECKSUM] ^= 1;
        gc.set(0, &mut d);
        assert_eq!(d, dorig);
    }

    #[test]
    fn verifies_crc16_group_descriptors_of_uninit_bg() {
        let img = TestImage::make(
            &["-t", "ext4", "-O", "^metadata_csum,uninit_bg"],
            4096,
            8192,
            false,
        );
        let sb = img.superblock();
        let gc = GroupCsum::from_superblock(&sb, img.incompat(), img.ro_compat());
        assert!(matches!(gc, GroupCsum::Crc16 { .. }));
        for g in 0..img.group_count() {
            gc.verify(g, &img.group_desc(g)).unwrap();
        }
    }

    #[test]
    fn a_flipped_byte_names_the_structure() {
        let img = TestImage::make(&["-t", "ext4", "-O", "metadata_csum"], 4096, 8192, true);
        let sb = img.superblock();
        let seed = fs_seed(&sb, img.incompat());
        let mut raw = img.inode(12);
        raw[4] ^= 0x10; // size
        let err = verify_inode(seed, 12, &raw).unwrap_err().to_string();
        assert!(err.contains("inode 12: checksum mismatch"), "{err}");
        let mut sbb = sb.clone();
        sbb[0x30] ^= 1;
        let err = verify_superblock(&sbb).unwrap_err().to_string();
        assert!(err.contains("superblock: checksum mismatch"), "{err}");
        assert!(verify_inode(seed, 12, &vec![0u8; raw.len()]).is_ok());
    }
}
