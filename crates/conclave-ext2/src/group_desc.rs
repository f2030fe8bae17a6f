//! Block group descriptors: 32 bytes each, or `s_desc_size` (64) with `64bit`, whose
//! second half holds the high halves of every block number and counter. They sit in
//! the block after the superblock's (`first_data_block + 1`).

use crate::error::{corrupt, Ext2Error};
use crate::le::{put_u16, put_u32, u16_at, u32_at};
use crate::superblock::Superblock;

/// Where a group keeps its bitmaps and inode table, and its free counters.
#[derive(Clone, Debug)]
pub struct GroupDesc {
    raw: Vec<u8>,
    /// Block of the block bitmap.
    pub block_bitmap: u64,
    /// Block of the inode bitmap.
    pub inode_bitmap: u64,
    /// First block of the inode table.
    pub inode_table: u64,
    /// Free blocks in the group.
    pub free_blocks_count: u32,
    /// Free inodes in the group.
    pub free_inodes_count: u32,
    /// Directories in the group.
    pub used_dirs_count: u32,
    /// `bg_flags` (INODE_UNINIT, BLOCK_UNINIT, ITABLE_ZEROED with `uninit_bg`).
    pub flags: u16,
}

impl GroupDesc {
    /// Parses descriptor `group` (`b` is `sb.desc_size` bytes) and checks that its
    /// blocks lie inside the file system.
    pub fn from_bytes(b: &[u8], group: u32, sb: &Superblock) -> Result<GroupDesc, Ext2Error> {
        if b.len() != usize::from(sb.desc_size) || b.len() < 32 {
            return Err(corrupt(format!("group {group}: descriptor of {} bytes", b.len())));
        }
        let wide = b.len() >= 64;
        let hi32 = |off: usize| if wide { u64::from(u32_at(b, off)) << 32 } else { 0 };
        let hi16 = |off: usize| if wide { u32::from(u16_at(b, off)) << 16 } else { 0 };
        let gd = GroupDesc {
            raw: b.to_vec(),
            block_bitmap: u64::from(u32_at(b, 0)) | hi32(0x20),
            inode_bitmap: u64::from(u32_at(b, 4)) | hi32(0x24),
            inode_table: u64::from(u32_at(b, 8)) | hi32(0x28),
            free_blocks_count: u32::from(u16_at(b, 12)) | hi16(0x2C),
            free_inodes_count: u32::from(u16_at(b, 14)) | hi16(0x2E),
            used_dirs_count: u32::from(u16_at(b, 16)) | hi16(0x30),
            flags: u16_at(b, 18),
        };
        let table_blocks = inode_table_blocks(sb);
        let bad = |what: &str, v: u64| corrupt(format!("group {group}: {what} {v} out of range"));
        for (what, v) in [
            ("block bitmap", gd.block_bitmap),
            ("inode bitmap", gd.inode_bitmap),
        ] {
            if v == 0 || v >= sb.blocks_count {
                return Err(bad(what, v));
            }
        }
        if gd.inode_table == 0 || gd.inode_table.saturating_add(table_blocks) > sb.blocks_count {
            return Err(bad("inode table", gd.inode_table));
        }
        if gd.free_inodes_count > sb.inodes_per_group || gd.free_blocks_count > sb.blocks_per_group {
            return Err(corrupt(format!("group {group}: free counts exceed group size")));
        }
        Ok(gd)
    }

    /// The descriptor as it should be written back.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut b = self.raw.clone();
        put_u32(&mut b, 0, self.block_bitmap as u32);
        put_u32(&mut b, 4, self.inode_bitmap as u32);
        put_u32(&mut b, 8, self.inode_table as u32);
        put_u16(&mut b, 12, self.free_blocks_count as u16);
        put_u16(&mut b, 14, self.free_inodes_count as u16);
        put_u16(&mut b, 16, self.used_dirs_count as u16);
        put_u16(&mut b, 18, self.flags);
        if b.len() >= 64 {
            put_u32(&mut b, 0x20, (self.block_bitmap >> 32) as u32);
            put_u32(&mut b, 0x24, (self.inode_bitmap >> 32) as u32);
            put_u32(&mut b, 0x28, (self.inode_table >> 32) as u32);
            put_u16(&mut b, 0x2C, (self.free_blocks_count >> 16) as u16);
            put_u16(&mut b, 0x2E, (self.free_inodes_count >> 16) as u16);
            put_u16(&mut b, 0x30, (self.used_dirs_count >> 16) as u16);
        }
        b
    }
}

/// Blocks of one group's inode table.
pub fn inode_table_blocks(sb: &Superblock) -> u64 {
    (u64::from(sb.inodes_per_group) * u64::from(sb.inode_size)).div_ceil(u64::from(sb.block_size))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::superblock::SUPERBLOCK_SIZE;

    fn superblock(desc_size: u16) -> Superblock {
        let mut b = [0u8; SUPERBLOCK_SIZE];
        for (at, v) in [
            (0usize, 8192u32),
            (4, 16384),
            (24, 2),
            (32, 32768),
            (40, 8192),
            (76, 1),
            (84, 11),
        ] {
            put_u32(&mut b, at, v);
        }
        put_u16(&mut b, 56, 0xEF53);
        put_u16(&mut b, 88, 256);
        let mut sb = Superblock::parse(&b).unwrap();
        sb.desc_size = desc_size;
        sb
    }

    #[test]
    fn a_64_byte_descriptor_joins_the_high_halves_and_writes_them_back() {
        let sb = superblock(64);
        let mut b = [0u8; 64];
        put_u32(&mut b, 0, 100);
        put_u32(&mut b, 4, 101);
        put_u32(&mut b, 8, 102);
        put_u16(&mut b, 12, 0x10);
        put_u16(&mut b, 14, 0x20);
        put_u16(&mut b, 16, 3);
        let mut gd = GroupDesc::from_bytes(&b, 0, &sb).unwrap();
        assert_eq!(
            (gd.block_bitmap, gd.inode_table, gd.free_blocks_count),
            (100, 102, 0x10)
        );
        gd.free_blocks_count = 0x1_0005; // needs the high half
        let out = gd.to_bytes();
        assert_eq!((u16_at(&out, 12), u16_at(&out, 0x2C)), (5, 1));
        put_u32(&mut b, 0x20, 1); // block bitmap at 2^32 + 100: past the end
        let err = GroupDesc::from_bytes(&b, 3, &sb).unwrap_err().to_string();
        assert!(
            err.contains("group 3: block bitmap 4294967396 out of range"),
            "{err}"
        );
        assert!(GroupDesc::from_bytes(&b[..32], 0, &sb).is_err(), "wrong size");
    }
}
