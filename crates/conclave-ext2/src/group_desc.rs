//! Block group descriptors (32 bytes each, in the blocks after the superblock).

use crate::error::{corrupt, Ext2Error};
use crate::le::{put_u16, put_u32, u16_at, u32_at};
use crate::superblock::Superblock;

/// Size of one descriptor (ext2 has no 64-bit descriptors).
pub const GROUP_DESC_SIZE: usize = 32;

/// Where a group keeps its bitmaps and inode table, and its free counters.
#[derive(Clone, Debug)]
pub struct GroupDesc {
    raw: [u8; GROUP_DESC_SIZE],
    /// Block of the block bitmap.
    pub block_bitmap: u32,
    /// Block of the inode bitmap.
    pub inode_bitmap: u32,
    /// First block of the inode table.
    pub inode_table: u32,
    /// Free blocks in the group.
    pub free_blocks_count: u16,
    /// Free inodes in the group.
    pub free_inodes_count: u16,
    /// Directories in the group.
    pub used_dirs_count: u16,
}

impl GroupDesc {
    /// Parses descriptor `group` and checks that its blocks lie inside the device.
    pub fn from_bytes(
        b: &[u8; GROUP_DESC_SIZE],
        group: u32,
        sb: &Superblock,
    ) -> Result<GroupDesc, Ext2Error> {
        let gd = GroupDesc {
            raw: *b,
            block_bitmap: u32_at(b, 0),
            inode_bitmap: u32_at(b, 4),
            inode_table: u32_at(b, 8),
            free_blocks_count: u16_at(b, 12),
            free_inodes_count: u16_at(b, 14),
            used_dirs_count: u16_at(b, 16),
        };
        let table_blocks = inode_table_blocks(sb);
        let bad = |what: &str, v: u32| corrupt(format!("group {group}: {what} {v} out of range"));
        for (what, v) in [
            ("block bitmap", gd.block_bitmap),
            ("inode bitmap", gd.inode_bitmap),
        ] {
            if v == 0 || v >= sb.blocks_count {
                return Err(bad(what, v));
            }
        }
        if gd.inode_table == 0 || u64::from(gd.inode_table) + table_blocks > u64::from(sb.blocks_count) {
            return Err(bad("inode table", gd.inode_table));
        }
        if u32::from(gd.free_inodes_count) > sb.inodes_per_group
            || u32::from(gd.free_blocks_count) > sb.blocks_per_group
        {
            return Err(corrupt(format!("group {group}: free counts exceed group size")));
        }
        Ok(gd)
    }

    /// The descriptor as it should be written back.
    pub fn to_bytes(&self) -> [u8; GROUP_DESC_SIZE] {
        let mut b = self.raw;
        put_u32(&mut b, 0, self.block_bitmap);
        put_u32(&mut b, 4, self.inode_bitmap);
        put_u32(&mut b, 8, self.inode_table);
        put_u16(&mut b, 12, self.free_blocks_count);
        put_u16(&mut b, 14, self.free_inodes_count);
        put_u16(&mut b, 16, self.used_dirs_count);
        b
    }
}

/// Blocks of one group's inode table.
pub fn inode_table_blocks(sb: &Superblock) -> u64 {
    (u64::from(sb.inodes_per_group) * u64::from(sb.inode_size)).div_ceil(conclave_bd::BLOCK_SIZE as u64)
}
