//! Integration tests of conclave-ext2 against outside oracles: images made by
//! `mkfs.ext2 -d`, `e2fsck -fn`, and the `ext4-view` reader.

#[path = "ext2/corrupt.rs"]
mod corrupt;
#[path = "ext2/crash.rs"]
mod crash;
#[path = "ext2/ext4.rs"]
mod ext4;
#[path = "ext2/layouts.rs"]
mod layouts;
#[path = "ext2/limits.rs"]
mod limits;
#[path = "ext2/mkfs_images.rs"]
mod mkfs_images;
#[path = "ext2/model.rs"]
mod model;
#[path = "ext2/support.rs"]
mod support;
