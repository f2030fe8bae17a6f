//! `conclave-ext2`: our own ext2 engine (revisions 0 and 1, blocks of 1 KiB to
//! 64 KiB mapped onto the device's 4 KiB blocks, direct and single/double/triple
//! indirect blocks, linear directories, features checked by name), reading and
//! writing over any [`conclave_bd::BlockDevice`]. It owns the on-disk format and nothing
//! else: no networking, no keys. See `docs/ext2.md` for layout, limits and crash
//! semantics.
//!
//! Each on-disk structure has its own module with a checking `from_bytes`; corrupt
//! metadata is an [`Ext2Error`], never a panic.
//!
//! ```no_run
//! use conclave_bd::MemBlockDevice;
//! use conclave_ext2::Ext2Fs;
//! use std::sync::Arc;
//!
//! let image = std::fs::read("site.ext2").unwrap();
//! let mut fs = Ext2Fs::open(Arc::new(MemBlockDevice::from_image(image))).unwrap();
//! let ino = fs.create_path("/hello.txt", 0o644).unwrap();
//! fs.write(ino, 0, b"hello").unwrap();
//! let mut buf = [0u8; 5];
//! fs.read(fs.lookup("/hello.txt").unwrap(), 0, &mut buf).unwrap();
//! fs.sync().unwrap(); // bitmaps, group descriptors, superblock; then the device flush
//! ```
#![forbid(unsafe_code)]

mod alloc;
mod bitmap;
mod block_io;
mod block_map;
mod cache;
mod csum;
mod dir;
mod dir_entry;
mod error;
mod extent;
pub mod features;
mod file;
mod fs;
mod group_desc;
mod htree;
mod inode;
mod journal;
mod le;
mod metadata;
mod namespace;
mod path;
mod superblock;

pub use block_io::{MAX_BLOCK_SIZE, MIN_BLOCK_SIZE};
pub use block_map::{max_blocks, path_of, BlockPath};
pub use dir_entry::MAX_NAME_LEN;
pub use error::Ext2Error;
pub use features::{FeatureSet, Support};
pub use fs::{Ext2Fs, Geometry};
pub use metadata::{DirListEntry, FileType, FsStats, Ino, Metadata};
pub use path::MAX_SYMLINK_FOLLOWS;
