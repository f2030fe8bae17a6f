//! Linear directory entries (`ext2_dir_entry_2`) and the checks on one directory block.

use crate::error::{corrupt, Ext2Error};
use crate::le::{put_u16, put_u32, u16_at, u32_at};

/// Longest name an entry can hold.
pub const MAX_NAME_LEN: usize = 255;
/// Bytes of an entry header before the name.
const HEADER: usize = 8;

/// Directory-entry file types (`file_type` byte with the `filetype` feature).
pub mod ftype {
    /// Unknown.
    pub const UNKNOWN: u8 = 0;
    /// Regular file.
    pub const REG: u8 = 1;
    /// Directory.
    pub const DIR: u8 = 2;
    /// Symbolic link.
    pub const SYMLINK: u8 = 7;
}

/// `rec_len` as stored: a 16-bit field, so an entry spanning a whole 65536-byte
/// block is written as 65535 (e2fsprogs and the kernel also read 0 that way).
fn rec_len_from_disk(raw: u16, block_len: usize) -> usize {
    match raw {
        0 | 65535 if block_len == 65536 => 65536,
        _ => usize::from(raw),
    }
}

fn rec_len_to_disk(len: usize) -> u16 {
    if len >= 65536 {
        65535
    } else {
        len as u16
    }
}

/// The bytes an entry with a name of `name_len` needs (4-byte aligned).
pub fn needed_len(name_len: usize) -> usize {
    (HEADER + name_len + 3) & !3
}

/// One entry as found in a directory block (the name stays in the block).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RawEntry {
    /// Byte offset inside the block.
    pub offset: usize,
    /// Inode number (0 marks an unused slot).
    pub inode: u32,
    /// Bytes this entry spans (header, name, slack).
    pub rec_len: usize,
    /// Length of the name.
    pub name_len: usize,
    /// File type byte (0 without the `filetype` feature).
    pub file_type: u8,
}

impl RawEntry {
    /// Parses every entry of a directory block, checking that `rec_len`s chain exactly
    /// to the end of the block, names fit, and inode numbers are in range.
    pub fn scan_block(b: &[u8], inodes_count: u32, has_filetype: bool) -> Result<Vec<RawEntry>, Ext2Error> {
        let block_len = b.len();
        let mut out = Vec::new();
        let mut off = 0usize;
        while off < block_len {
            if off + HEADER > block_len {
                return Err(corrupt(format!(
                    "directory entry header at {off} crosses the block end"
                )));
            }
            let inode = u32_at(b, off);
            let rec_len = rec_len_from_disk(u16_at(b, off + 4), block_len);
            let name_len = usize::from(b[off + 6]);
            let file_type = if has_filetype { b[off + 7] } else { 0 };
            if !has_filetype && b[off + 7] != 0 {
                return Err(corrupt(format!("directory entry at {off}: name longer than 255")));
            }
            if rec_len < HEADER || rec_len % 4 != 0 || off + rec_len > block_len {
                return Err(corrupt(format!(
                    "directory entry at {off}: bad rec_len {rec_len}"
                )));
            }
            if HEADER + name_len > rec_len {
                return Err(corrupt(format!(
                    "directory entry at {off}: name of {name_len} bytes in rec_len {rec_len}"
                )));
            }
            if inode > inodes_count {
                return Err(corrupt(format!(
                    "directory entry at {off}: inode {inode} out of range"
                )));
            }
            if inode != 0 && name_len == 0 {
                return Err(corrupt(format!("directory entry at {off}: empty name")));
            }
            out.push(RawEntry {
                offset: off,
                inode,
                rec_len,
                name_len,
                file_type,
            });
            off += rec_len;
        }
        Ok(out)
    }

    /// The name bytes, from the block this entry was scanned from.
    pub fn name<'b>(&self, b: &'b [u8]) -> &'b [u8] {
        &b[self.offset + HEADER..self.offset + HEADER + self.name_len]
    }

    /// Bytes this entry needs for itself (the rest of `rec_len` is slack).
    pub fn used_len(&self) -> usize {
        if self.inode == 0 {
            0
        } else {
            needed_len(self.name_len)
        }
    }

    /// Rewrites this entry's `rec_len` in the block.
    pub fn set_rec_len(&self, b: &mut [u8], rec_len: usize) {
        put_u16(b, self.offset + 4, rec_len_to_disk(rec_len));
    }

    /// Rewrites this entry's inode and type in the block (0 frees the slot).
    pub fn set_inode(&self, b: &mut [u8], inode: u32, file_type: u8, has_filetype: bool) {
        put_u32(b, self.offset, inode);
        b[self.offset + 7] = if has_filetype { file_type } else { 0 };
    }
}

/// A new entry to write into a directory block.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirEntry {
    /// Byte offset inside the block.
    pub offset: usize,
    /// Inode number.
    pub inode: u32,
    /// Bytes this entry spans (header, name, slack).
    pub rec_len: usize,
    /// File type byte.
    pub file_type: u8,
    /// Name bytes.
    pub name: Vec<u8>,
}

impl DirEntry {
    /// Writes this entry's header and name at its offset.
    pub fn write_to(&self, b: &mut [u8], has_filetype: bool) {
        let off = self.offset;
        put_u32(b, off, self.inode);
        put_u16(b, off + 4, rec_len_to_disk(self.rec_len));
        b[off + 6] = self.name.len() as u8;
        b[off + 7] = if has_filetype { self.file_type } else { 0 };
        b[off + HEADER..off + HEADER + self.name.len()].copy_from_slice(&self.name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BLOCK_SIZE: usize = 4096;

    fn block_with(entries: &[(u32, usize, &[u8])]) -> [u8; BLOCK_SIZE] {
        block_of::<BLOCK_SIZE>(entries)
    }

    fn block_of<const N: usize>(entries: &[(u32, usize, &[u8])]) -> [u8; N] {
        let mut b = [0u8; N];
        let mut off = 0;
        for &(inode, rec_len, name) in entries {
            let e = DirEntry {
                offset: off,
                inode,
                rec_len,
                file_type: ftype::REG,
                name: name.to_vec(),
            };
            e.write_to(&mut b, true);
            off += rec_len;
        }
        b
    }

    #[test]
    fn scans_a_valid_block_and_finds_names() {
        let b = block_with(&[(2, 12, b"."), (2, 12, b".."), (11, BLOCK_SIZE - 24, b"file")]);
        let entries = RawEntry::scan_block(&b, 100, true).unwrap();
        assert_eq!(entries.len(), 3);
        assert_eq!(entries[2].name(&b), b"file");
        assert_eq!(entries[2].used_len(), 12);
        assert_eq!(needed_len(255), 264);
    }

    #[test]
    fn rejects_bad_rec_len_name_len_and_inode() {
        let good = block_with(&[(2, 12, b"."), (11, BLOCK_SIZE - 12, b"file")]);
        for (at, val) in [(4usize, 6u16), (4, 13), (4, 0), (16, 4096), (16, 8)] {
            let mut b = good;
            b[at..at + 2].copy_from_slice(&val.to_le_bytes());
            assert!(
                RawEntry::scan_block(&b, 100, true).is_err(),
                "rec_len {val} at {at}"
            );
        }
        let mut b = good;
        b[6] = 9; // name longer than rec_len 12 allows
        assert!(RawEntry::scan_block(&b, 100, true).is_err());
        assert!(RawEntry::scan_block(&good, 10, true).is_err(), "inode 11 of 10");
        let mut b = good;
        b[7] = 1; // a type byte without the filetype feature reads as a name > 255
        assert!(RawEntry::scan_block(&b, 100, false).is_err());
    }

    #[test]
    fn a_whole_64k_block_entry_is_stored_as_65535_and_read_back() {
        let b = block_of::<65536>(&[(2, 12, b"."), (2, 65536 - 12, b"..")]);
        let entries = RawEntry::scan_block(&b, 100, true).unwrap();
        assert_eq!(entries[1].rec_len, 65536 - 12);
        let b = block_of::<65536>(&[(11, 65536, b"only")]);
        assert_eq!(u16_at(&b, 4), 65535);
        let entries = RawEntry::scan_block(&b, 100, true).unwrap();
        assert_eq!((entries.len(), entries[0].rec_len), (1, 65536));
        let mut z = b;
        put_u16(&mut z, 4, 0);
        assert_eq!(RawEntry::scan_block(&z, 100, true).unwrap()[0].rec_len, 65536);
        // 1 KiB blocks: a 1024 rec_len is the whole block.
        let b = block_of::<1024>(&[(11, 1024, b"x")]);
        assert_eq!(RawEntry::scan_block(&b, 100, true).unwrap()[0].rec_len, 1024);
    }
}
