//! The ext2 superblock (1024 bytes at byte offset 1024): geometry, counters, features.

use crate::block_io::{MAX_BLOCK_SIZE, MIN_BLOCK_SIZE};
use crate::error::{corrupt, Ext2Error};
use crate::features::{FeatureSet, INCOMPAT_64BIT};
use crate::le::{put_u16, put_u32, u16_at, u32_at};

/// Size of the on-disk superblock.
pub const SUPERBLOCK_SIZE: usize = 1024;
/// Byte offset of the superblock on the device, whatever the block size.
pub const SUPERBLOCK_OFFSET: u64 = 1024;
const MAGIC: u16 = 0xEF53;

/// `s_state`: cleanly unmounted.
pub const STATE_VALID: u16 = 1;

/// `s_rev_level` 0 (GOOD_OLD_REV): 128-byte inodes, first inode 11, no feature words.
pub const GOOD_OLD_REV: u32 = 0;
/// Inode size of a revision-0 file system.
const GOOD_OLD_INODE_SIZE: u16 = 128;
/// First ordinary inode of a revision-0 file system.
const GOOD_OLD_FIRST_INO: u32 = 11;
/// Group descriptor size without `64bit`.
const DESC_SIZE_32: u16 = 32;

/// The superblock fields this engine uses; the raw bytes keep every other field
/// intact when it is written back.
#[derive(Clone, Debug)]
pub struct Superblock {
    raw: Box<[u8; SUPERBLOCK_SIZE]>,
    /// `s_rev_level`: 0 or 1.
    pub rev: u32,
    /// Bytes per file-system block: 1024 to 65536.
    pub block_size: u32,
    /// Inodes in the file system.
    pub inodes_count: u32,
    /// Blocks in the file system (with the high half when `64bit` is set).
    pub blocks_count: u64,
    /// Free blocks (kept in step with the group descriptors).
    pub free_blocks_count: u64,
    /// Free inodes (kept in step with the group descriptors).
    pub free_inodes_count: u32,
    /// First data block: 1 with 1 KiB blocks (the superblock is block 1), else 0.
    pub first_data_block: u32,
    /// Blocks per group.
    pub blocks_per_group: u32,
    /// Inodes per group.
    pub inodes_per_group: u32,
    /// Clean (1) or not.
    pub state: u16,
    /// First inode number ordinary files may use.
    pub first_ino: u32,
    /// Bytes per inode-table slot (128 or a larger power of two).
    pub inode_size: u16,
    /// Bytes per group descriptor: 32, or `s_desc_size` (>= 64) with `64bit`.
    pub desc_size: u16,
    /// The compat / incompat / ro_compat words (zero for revision 0).
    pub features: FeatureSet,
    /// Desired `i_extra_isize` for new inodes.
    pub want_extra_isize: u16,
    /// Last write time.
    pub wtime: u32,
}

impl Superblock {
    /// Parses and checks a superblock; anything this engine cannot handle safely is an
    /// error naming the field (or the features, by name).
    pub fn from_bytes(b: &[u8; SUPERBLOCK_SIZE]) -> Result<Superblock, Ext2Error> {
        let sb = Self::parse(b)?;
        sb.features.check_readable()?;
        Ok(sb)
    }

    /// Parses and checks the geometry, whatever the features (64-bit fields are
    /// read when `64bit` is set); [`Superblock::from_bytes`] adds the feature policy.
    pub fn parse(b: &[u8; SUPERBLOCK_SIZE]) -> Result<Superblock, Ext2Error> {
        let magic = u16_at(b, 56);
        if magic != MAGIC {
            return Err(corrupt(format!(
                "bad superblock magic {magic:#06x} (want 0xef53)"
            )));
        }
        let rev = u32_at(b, 76);
        if rev > 1 {
            return Err(Ext2Error::Unsupported(format!(
                "ext2 revision {rev} (revisions 0 and 1 are supported)"
            )));
        }
        let log_block_size = u32_at(b, 24);
        let block_size = MIN_BLOCK_SIZE.checked_shl(log_block_size).unwrap_or(0);
        if !(MIN_BLOCK_SIZE..=MAX_BLOCK_SIZE).contains(&block_size) {
            return Err(Ext2Error::Unsupported(format!(
                "block size 2^(10+{log_block_size}) (1024 to 65536 bytes are supported)"
            )));
        }
        let old = rev == GOOD_OLD_REV;
        let features = if old {
            FeatureSet::default()
        } else {
            FeatureSet {
                compat: u32_at(b, 92),
                incompat: u32_at(b, 96),
                ro_compat: u32_at(b, 100),
            }
        };
        let wide = features.incompat & INCOMPAT_64BIT != 0;
        let hi = |off: usize| if wide { u64::from(u32_at(b, off)) << 32 } else { 0 };
        let sb = Superblock {
            raw: Box::new(*b),
            rev,
            block_size,
            inodes_count: u32_at(b, 0),
            blocks_count: u64::from(u32_at(b, 4)) | hi(0x150),
            free_blocks_count: u64::from(u32_at(b, 12)) | hi(0x158),
            free_inodes_count: u32_at(b, 16),
            first_data_block: u32_at(b, 20),
            blocks_per_group: u32_at(b, 32),
            inodes_per_group: u32_at(b, 40),
            wtime: u32_at(b, 48),
            state: u16_at(b, 58),
            first_ino: if old { GOOD_OLD_FIRST_INO } else { u32_at(b, 84) },
            inode_size: if old { GOOD_OLD_INODE_SIZE } else { u16_at(b, 88) },
            desc_size: if wide { u16_at(b, 0xFE) } else { DESC_SIZE_32 },
            features,
            want_extra_isize: if old { 0 } else { u16_at(b, 0x15E) },
        };
        let bs = block_size as usize;
        let want_first = u32::from(block_size == MIN_BLOCK_SIZE);
        if sb.first_data_block != want_first {
            return Err(corrupt(format!(
                "first data block {} with {block_size}-byte blocks (want {want_first})",
                sb.first_data_block
            )));
        }
        if sb.blocks_per_group == 0 || sb.blocks_per_group as usize > 8 * bs {
            return Err(corrupt(format!("blocks per group {}", sb.blocks_per_group)));
        }
        if sb.inodes_per_group == 0 || sb.inodes_per_group as usize > 8 * bs {
            return Err(corrupt(format!("inodes per group {}", sb.inodes_per_group)));
        }
        let isz = sb.inode_size as usize;
        if !(isz == 128 || (isz.is_power_of_two() && (128..=bs).contains(&isz))) {
            return Err(corrupt(format!("inode size {isz}")));
        }
        let dsz = usize::from(sb.desc_size);
        if wide && !(dsz.is_power_of_two() && (64..=1024.min(bs)).contains(&dsz)) {
            return Err(corrupt(format!("group descriptor size {dsz} with 64bit")));
        }
        if sb.blocks_count < 8 || sb.blocks_count <= u64::from(sb.first_data_block) {
            return Err(corrupt(format!("blocks count {}", sb.blocks_count)));
        }
        let groups =
            (sb.blocks_count - u64::from(sb.first_data_block)).div_ceil(u64::from(sb.blocks_per_group));
        if groups * u64::from(sb.inodes_per_group) != u64::from(sb.inodes_count) {
            return Err(corrupt(format!(
                "inodes count {} != {groups} groups x {} inodes",
                sb.inodes_count, sb.inodes_per_group
            )));
        }
        if sb.first_ino < 11 || sb.first_ino > sb.inodes_count {
            return Err(corrupt(format!("first inode {}", sb.first_ino)));
        }
        if sb.free_blocks_count > sb.blocks_count || sb.free_inodes_count > sb.inodes_count {
            return Err(corrupt("free counts exceed totals"));
        }
        if isz > 128 && (sb.want_extra_isize as usize > isz - 128 || sb.want_extra_isize % 4 != 0) {
            return Err(corrupt(format!("desired extra isize {}", sb.want_extra_isize)));
        }
        Ok(sb)
    }

    /// Number of block groups (fits a `u32`: `inodes_count` is one and each group
    /// has at least one inode).
    pub fn group_count(&self) -> u32 {
        let data = self.blocks_count - u64::from(self.first_data_block);
        data.div_ceil(u64::from(self.blocks_per_group)) as u32
    }

    /// Whether the features allow writing (names the ones that do not).
    pub fn writable(&self) -> Result<(), Ext2Error> {
        self.features.check_writable()
    }

    /// Whether directory entries carry file types.
    pub fn has_filetype(&self) -> bool {
        self.features.incompat & crate::features::INCOMPAT_FILETYPE != 0
    }

    /// Whether this is a revision-0 file system (no feature words to set).
    pub fn is_old_rev(&self) -> bool {
        self.rev == GOOD_OLD_REV
    }

    /// Whether 64-bit block numbers are in use.
    pub fn is_64bit(&self) -> bool {
        self.features.incompat & INCOMPAT_64BIT != 0
    }

    /// The superblock as it should be written back.
    pub fn to_bytes(&self) -> [u8; SUPERBLOCK_SIZE] {
        let mut b = *self.raw;
        put_u32(&mut b, 12, self.free_blocks_count as u32);
        put_u32(&mut b, 16, self.free_inodes_count);
        put_u32(&mut b, 48, self.wtime);
        put_u16(&mut b, 58, self.state);
        if !self.is_old_rev() {
            put_u32(&mut b, 92, self.features.compat);
            put_u32(&mut b, 96, self.features.incompat);
            put_u32(&mut b, 100, self.features.ro_compat);
        }
        if self.is_64bit() {
            put_u32(&mut b, 0x158, (self.free_blocks_count >> 32) as u32);
        }
        b
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INCOMPAT_FILETYPE: u32 = crate::features::INCOMPAT_FILETYPE;

    fn valid() -> [u8; SUPERBLOCK_SIZE] {
        let mut b = [0u8; SUPERBLOCK_SIZE];
        put_u32(&mut b, 0, 8192); // inodes
        put_u32(&mut b, 4, 16384); // blocks
        put_u32(&mut b, 12, 1000);
        put_u32(&mut b, 16, 8000);
        put_u32(&mut b, 24, 2); // 4 KiB
        put_u32(&mut b, 32, 32768);
        put_u32(&mut b, 40, 8192);
        put_u16(&mut b, 56, MAGIC);
        put_u16(&mut b, 58, STATE_VALID);
        put_u32(&mut b, 76, 1);
        put_u32(&mut b, 84, 11);
        put_u16(&mut b, 88, 256);
        put_u32(&mut b, 96, INCOMPAT_FILETYPE);
        put_u16(&mut b, 0x15E, 32);
        b
    }

    #[test]
    fn parses_a_valid_superblock_and_round_trips_counters() {
        let mut sb = Superblock::from_bytes(&valid()).unwrap();
        assert_eq!(sb.group_count(), 1);
        assert!(sb.has_filetype());
        sb.free_blocks_count = 7;
        let again = Superblock::from_bytes(&sb.to_bytes()).unwrap();
        assert_eq!(again.free_blocks_count, 7);
    }

    #[test]
    fn rejects_each_bad_field() {
        let cases: [(usize, u32); 8] = [
            (76, 2),       // revision 2
            (24, 0),       // 1 KiB blocks with first data block 0
            (96, 0x100),   // mmp
            (32, 0),       // blocks per group
            (40, 100_000), // inodes per group
            (0, 8193),     // inodes count mismatch
            (84, 3),       // first inode
            (12, 20_000),  // free > total
        ];
        for (at, v) in cases {
            let mut b = valid();
            put_u32(&mut b, at, v);
            assert!(Superblock::from_bytes(&b).is_err(), "field at {at} = {v}");
        }
        let mut b = valid();
        put_u16(&mut b, 88, 100);
        assert!(Superblock::from_bytes(&b).is_err(), "inode size 100");
        let mut b = valid();
        put_u16(&mut b, 56, 0);
        assert!(Superblock::from_bytes(&b).is_err(), "magic");
        let mut b = valid();
        put_u32(&mut b, 24, 7);
        assert!(Superblock::from_bytes(&b).is_err(), "128 KiB blocks");
    }

    #[test]
    fn revision_0_ignores_feature_words_and_uses_old_inode_geometry() {
        let mut b = valid();
        put_u32(&mut b, 76, 0);
        put_u32(&mut b, 84, 99);
        put_u16(&mut b, 88, 512);
        put_u32(&mut b, 96, 0x8000); // inline_data: would be refused at revision 1
        let sb = Superblock::from_bytes(&b).unwrap();
        assert_eq!((sb.inode_size, sb.first_ino, sb.features.incompat), (128, 11, 0));
        assert!(!sb.has_filetype());
        assert_eq!(u32_at(&sb.to_bytes(), 96), 0x8000, "raw bytes kept");
    }

    #[test]
    fn block_sizes_from_1k_to_64k_with_their_first_data_block() {
        for (log, first) in [(0u32, 1u32), (1, 0), (2, 0), (3, 0), (6, 0)] {
            let mut b = valid();
            put_u32(&mut b, 24, log);
            put_u32(&mut b, 20, first);
            put_u32(&mut b, 32, 8192);
            put_u32(&mut b, 40, 4096);
            let sb = Superblock::from_bytes(&b).unwrap();
            assert_eq!(sb.block_size, 1024 << log);
        }
    }

    #[test]
    fn sixty_four_bit_fields_and_descriptor_size_are_parsed() {
        let mut b = valid();
        put_u32(&mut b, 96, INCOMPAT_FILETYPE | INCOMPAT_64BIT);
        put_u16(&mut b, 0xFE, 64);
        put_u32(&mut b, 0x150, 0); // blocks_count_hi
        put_u32(&mut b, 0x158, 0);
        let sb = Superblock::parse(&b).unwrap();
        assert_eq!((sb.desc_size, sb.blocks_count), (64, 16384));
        assert!(sb.is_64bit());
        // 64bit is read and written (ext4).
        assert_eq!(Superblock::from_bytes(&b).unwrap().desc_size, 64);
        put_u16(&mut b, 0xFE, 48);
        assert!(Superblock::parse(&b).is_err(), "descriptor size 48");
        put_u16(&mut b, 0xFE, 64);
        put_u32(&mut b, 0x150, 1); // 2^32 + 16384 blocks: inodes no longer match
        assert!(Superblock::parse(&b).unwrap_err().to_string().contains("groups"));
    }
}
