//! The ext2 superblock (1024 bytes at byte offset 1024): geometry, counters, features.

use crate::error::{corrupt, Ext2Error};
use crate::le::{put_u16, put_u32, u16_at, u32_at};
use conclave_bd::BLOCK_SIZE;

/// Size of the on-disk superblock.
pub const SUPERBLOCK_SIZE: usize = 1024;
/// Byte offset of the superblock on the device (inside block 0 for 4 KiB blocks).
pub const SUPERBLOCK_OFFSET: usize = 1024;
const MAGIC: u16 = 0xEF53;

/// `s_state`: cleanly unmounted.
pub const STATE_VALID: u16 = 1;

/// Incompat feature: directory entries carry a file type.
pub const INCOMPAT_FILETYPE: u32 = 0x2;
/// Read-only compat feature: sparse superblock backups.
pub const RO_COMPAT_SPARSE_SUPER: u32 = 0x1;
/// Read-only compat feature: files may be larger than 2 GiB.
pub const RO_COMPAT_LARGE_FILE: u32 = 0x2;
/// Read-only compat feature: `i_blocks` may be in file-system blocks.
pub const RO_COMPAT_HUGE_FILE: u32 = 0x8;
/// Read-only compat features we can write with.
const RO_COMPAT_SUPPORTED: u32 = RO_COMPAT_SPARSE_SUPER | RO_COMPAT_LARGE_FILE | RO_COMPAT_HUGE_FILE
    | 0x20 /* dir_nlink */ | 0x40 /* extra_isize */;

/// The superblock fields this engine uses; the raw bytes keep every other field
/// intact when it is written back.
#[derive(Clone, Debug)]
pub struct Superblock {
    raw: Box<[u8; SUPERBLOCK_SIZE]>,
    /// Inodes in the file system.
    pub inodes_count: u32,
    /// Blocks in the file system.
    pub blocks_count: u32,
    /// Free blocks (kept in step with the group descriptors).
    pub free_blocks_count: u32,
    /// Free inodes (kept in step with the group descriptors).
    pub free_inodes_count: u32,
    /// First data block (0 for 4 KiB blocks).
    pub first_data_block: u32,
    /// Blocks per group.
    pub blocks_per_group: u32,
    /// Inodes per group.
    pub inodes_per_group: u32,
    /// Clean (1) or not.
    pub state: u16,
    /// First inode number ordinary files may use.
    pub first_ino: u32,
    /// Bytes per inode-table slot (128 or 256).
    pub inode_size: u16,
    /// Compat feature bits.
    pub feature_compat: u32,
    /// Incompat feature bits.
    pub feature_incompat: u32,
    /// Read-only compat feature bits.
    pub feature_ro_compat: u32,
    /// Desired `i_extra_isize` for new inodes.
    pub want_extra_isize: u16,
    /// Last write time.
    pub wtime: u32,
}

impl Superblock {
    /// Parses and checks a superblock; anything this engine cannot handle safely is an
    /// error naming the field.
    pub fn from_bytes(b: &[u8; SUPERBLOCK_SIZE]) -> Result<Superblock, Ext2Error> {
        let magic = u16_at(b, 56);
        if magic != MAGIC {
            return Err(corrupt(format!(
                "bad superblock magic {magic:#06x} (want 0xef53)"
            )));
        }
        let rev = u32_at(b, 76);
        if rev != 1 {
            return Err(Ext2Error::Unsupported(format!(
                "ext2 revision {rev} (only revision 1)"
            )));
        }
        let log_block_size = u32_at(b, 24);
        if log_block_size != 2 {
            return Err(Ext2Error::Unsupported(format!(
                "block size {} (only 4096)",
                1024u64.checked_shl(log_block_size).unwrap_or(0)
            )));
        }
        let sb = Superblock {
            raw: Box::new(*b),
            inodes_count: u32_at(b, 0),
            blocks_count: u32_at(b, 4),
            free_blocks_count: u32_at(b, 12),
            free_inodes_count: u32_at(b, 16),
            first_data_block: u32_at(b, 20),
            blocks_per_group: u32_at(b, 32),
            inodes_per_group: u32_at(b, 40),
            wtime: u32_at(b, 48),
            state: u16_at(b, 58),
            first_ino: u32_at(b, 84),
            inode_size: u16_at(b, 88),
            feature_compat: u32_at(b, 92),
            feature_incompat: u32_at(b, 96),
            feature_ro_compat: u32_at(b, 100),
            want_extra_isize: u16_at(b, 0x15E),
        };
        let unknown_incompat = sb.feature_incompat & !INCOMPAT_FILETYPE;
        if unknown_incompat != 0 {
            return Err(Ext2Error::Unsupported(format!(
                "incompatible features {unknown_incompat:#x} (ext3/ext4 image?)"
            )));
        }
        if sb.first_data_block != 0 {
            return Err(corrupt(format!(
                "first data block {} with 4 KiB blocks",
                sb.first_data_block
            )));
        }
        if sb.blocks_per_group == 0 || sb.blocks_per_group > 8 * BLOCK_SIZE as u32 {
            return Err(corrupt(format!("blocks per group {}", sb.blocks_per_group)));
        }
        if sb.inodes_per_group == 0 || sb.inodes_per_group > 8 * BLOCK_SIZE as u32 {
            return Err(corrupt(format!("inodes per group {}", sb.inodes_per_group)));
        }
        let isz = sb.inode_size as usize;
        if !(isz == 128 || (isz.is_power_of_two() && (128..=BLOCK_SIZE).contains(&isz))) {
            return Err(corrupt(format!("inode size {isz}")));
        }
        if sb.blocks_count < 8 {
            return Err(corrupt(format!("blocks count {}", sb.blocks_count)));
        }
        let groups = sb.group_count();
        if u64::from(groups) * u64::from(sb.inodes_per_group) != u64::from(sb.inodes_count) {
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

    /// Number of block groups.
    pub fn group_count(&self) -> u32 {
        let data = self.blocks_count - self.first_data_block;
        data.div_ceil(self.blocks_per_group)
    }

    /// Whether the given read-only-compat features are all ones we write correctly.
    pub fn writable(&self) -> Result<(), Ext2Error> {
        let unknown = self.feature_ro_compat & !RO_COMPAT_SUPPORTED;
        if unknown != 0 {
            return Err(Ext2Error::Unsupported(format!(
                "read-only-compatible features {unknown:#x} prevent writing"
            )));
        }
        Ok(())
    }

    /// Whether directory entries carry file types.
    pub fn has_filetype(&self) -> bool {
        self.feature_incompat & INCOMPAT_FILETYPE != 0
    }

    /// The superblock as it should be written back.
    pub fn to_bytes(&self) -> [u8; SUPERBLOCK_SIZE] {
        let mut b = *self.raw;
        put_u32(&mut b, 12, self.free_blocks_count);
        put_u32(&mut b, 16, self.free_inodes_count);
        put_u32(&mut b, 48, self.wtime);
        put_u16(&mut b, 58, self.state);
        put_u32(&mut b, 92, self.feature_compat);
        put_u32(&mut b, 96, self.feature_incompat);
        put_u32(&mut b, 100, self.feature_ro_compat);
        b
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
            (76, 0),       // revision 0
            (24, 0),       // 1 KiB blocks
            (96, 0x40),    // extents
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
    }
}
