//! Making devices: turning a raw file-system image (from `mke2fs -d`) into a
//! std, crypt, verity or vericrypt image and tree, and rebuilding the tree
//! of an existing image (`conclave mkmerkle`).

use crate::crypt::open_encrypted_image;
use crate::header::{Header, Kdf, Role, HEADER_BYTES};
use crate::keys::{random_salt, read_secret, DeviceKeys, KdfParams};
use crate::merkle::{leaf_hash, leaves_for, MerkleTree, Node};
use crate::sealed_root::SealContext;
use crate::verity::TreeLayout;
use crate::xts::encrypt_block;
use crate::{BdError, DeviceKind, DeviceSpec, SealedRoot, BLOCK_SIZE};
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;

/// Blocks read or written per system call while building.
const CHUNK_BLOCKS: usize = 256;

/// Knobs for making a device.
#[derive(Debug, Clone, Copy)]
pub struct CreateOptions {
    /// Argon2id cost, recorded in the header.
    pub kdf: KdfParams,
    /// Tree nodes one seal slot holds; a device flushes on its own before a
    /// slot would overflow (more entries: fewer forced flushes, bigger tree file).
    pub journal_entries: usize,
}

impl Default for CreateOptions {
    fn default() -> Self {
        CreateOptions {
            kdf: KdfParams::DEFAULT,
            journal_entries: 16384,
        }
    }
}

fn io_at(path: &Path, e: std::io::Error) -> BdError {
    BdError::Io(std::io::Error::new(e.kind(), format!("{}: {e}", path.display())))
}

/// Opens a raw image for reading block by block: its length in bytes and in device
/// blocks (the last one padded with zeros: a file system of 1 KiB or 2 KiB blocks
/// need only be a multiple of 1 KiB long, and the device stores whole 4 KiB blocks).
fn open_raw(raw: &Path) -> Result<(File, u64, u64), BdError> {
    let f = File::open(raw).map_err(|e| io_at(raw, e))?;
    let len = f.metadata()?.len();
    if len == 0 || !len.is_multiple_of(1024) {
        return Err(BdError::Size {
            what: raw.display().to_string(),
            expected: len.div_ceil(1024).max(1) * 1024,
            found: len,
        });
    }
    Ok((f, len, len.div_ceil(BLOCK_SIZE as u64)))
}

/// Reads `reader` in chunks of whole blocks, handing each block and its number to `f`.
fn for_each_block(
    mut reader: impl Read,
    blocks: u64,
    mut f: impl FnMut(u64, &mut [u8; BLOCK_SIZE]) -> Result<(), BdError>,
) -> Result<(), BdError> {
    let mut chunk = vec![0u8; CHUNK_BLOCKS * BLOCK_SIZE];
    let mut b = 0u64;
    while b < blocks {
        let n = ((blocks - b) as usize).min(CHUNK_BLOCKS);
        reader.read_exact(&mut chunk[..n * BLOCK_SIZE])?;
        for blk in chunk[..n * BLOCK_SIZE].chunks_exact_mut(BLOCK_SIZE) {
            f(b, blk.try_into().expect("one block"))?;
            b += 1;
        }
    }
    Ok(())
}

fn slot_bytes_for(journal_entries: usize, leaves: u64) -> u32 {
    let depth = leaves.trailing_zeros() as usize + 1;
    let entries = journal_entries
        .max(4 * depth)
        .min(2 * leaves as usize + 4 * depth);
    let bytes = 8 + 8 + 32 + 4 + entries * 40 + 32;
    bytes.div_ceil(4096) as u32 * 4096
}

/// Writes a fresh tree file (counter 1) over the leaves in `nodes` and returns its sealed root.
#[allow(clippy::too_many_arguments)] // one call per device kind; a struct would only rename them
fn write_tree(
    path: &Path,
    kind: DeviceKind,
    blocks: u64,
    mut nodes: Vec<Node>,
    keys: &DeviceKeys,
    kdf: Kdf,
    salt: [u8; 16],
    journal_entries: usize,
) -> Result<SealedRoot, BdError> {
    let leaves = leaves_for(blocks);
    MerkleTree::build_inner(&keys.node_mac, leaves, &mut nodes);
    let layout = TreeLayout {
        leaves,
        slot_bytes: slot_bytes_for(journal_entries, leaves),
    };
    let header = Header {
        role: Role::Tree,
        kind,
        blocks,
        leaves,
        journal_slot_bytes: layout.slot_bytes,
        kdf,
        salt,
        key_check: if matches!(kdf, Kdf::None) {
            [0; 32]
        } else {
            keys.key_check
        },
    };
    let root = SealedRoot {
        counter: 1,
        root: nodes[1],
    };
    let ctx = SealContext {
        mac: &keys.seal_mac,
        kind,
        blocks,
        leaves,
    };
    let record = ctx.encode(&root, &[]);
    // Write beside the target and rename, so a crash never leaves half a tree.
    let tmp = path.with_extension("tmp-conclave");
    {
        let f = File::create(&tmp).map_err(|e| io_at(&tmp, e))?;
        f.set_len(layout.file_len())?;
        f.write_all_at(&header.to_block(keys)[..], 0)?;
        f.write_all_at(&record, layout.slot_offset(root.counter))?;
        let mut flat = Vec::with_capacity(nodes.len() * 32);
        for n in &nodes {
            flat.extend_from_slice(n);
        }
        f.write_all_at(&flat, layout.nodes_offset())?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path).map_err(|e| io_at(path, e))?;
    Ok(root)
}

/// Turns the raw file-system image `raw` into the device `spec` describes
/// (image, plus tree for verity and vericrypt); returns the sealed root of
/// tree devices. `raw` and `spec.image` may be the same file only for std
/// and verity (whose images are the raw file system).
pub fn create(spec: &DeviceSpec, raw: &Path, opts: &CreateOptions) -> Result<Option<SealedRoot>, BdError> {
    let (raw_file, raw_len, blocks) = open_raw(raw)?;
    let same = std::fs::canonicalize(raw).ok() == std::fs::canonicalize(&spec.image).ok();
    if same && spec.kind.encrypts() {
        return Err(BdError::Config(
            "the raw image and the encrypted image must be different files".into(),
        ));
    }
    if spec.kind == DeviceKind::Std {
        if !same {
            std::fs::copy(raw, &spec.image).map_err(|e| io_at(&spec.image, e))?;
        }
        return Ok(None);
    }
    opts.kdf.check().map_err(BdError::Config)?;
    let secret = read_secret(spec.secret_path()?)?;
    let salt = random_salt()?;
    let keys = DeviceKeys::derive(&secret, &salt, &opts.kdf)?;
    let leaves = leaves_for(blocks);
    let mut nodes: Vec<Node> = if spec.kind.has_tree() {
        vec![[0; 32]; 2 * leaves as usize]
    } else {
        Vec::new()
    };
    let padded = blocks * BLOCK_SIZE as u64;
    if same && raw_len != padded {
        // A verity image is the raw file system itself: pad it to whole device blocks
        // (the file system never looks past its own last block).
        OpenOptions::new()
            .write(true)
            .open(raw)
            .and_then(|f| f.set_len(padded))
            .map_err(|e| io_at(raw, e))?;
    }
    let mut out = if same {
        None
    } else {
        let f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&spec.image)
            .map_err(|e| io_at(&spec.image, e))?;
        Some(BufWriter::with_capacity(CHUNK_BLOCKS * BLOCK_SIZE, f))
    };
    if spec.kind.encrypts() {
        let header = Header {
            role: Role::Image,
            kind: spec.kind,
            blocks,
            leaves: 0,
            journal_slot_bytes: 0,
            kdf: Kdf::Argon2id(opts.kdf),
            salt,
            key_check: keys.key_check,
        };
        out.as_mut()
            .expect("encrypted images are written")
            .write_all(&header.to_block(&keys)[..])?;
    }
    let tree = spec.kind.has_tree();
    let reader = std::io::BufReader::new(raw_file).chain(std::io::repeat(0));
    for_each_block(reader, blocks, |b, blk| {
        if spec.kind.encrypts() {
            encrypt_block(&keys.xts, b, blk);
        }
        if tree {
            nodes[(leaves + b) as usize] = leaf_hash(&keys.node_mac, b, blk);
        }
        if let Some(w) = out.as_mut() {
            w.write_all(&blk[..])?;
        }
        Ok(())
    })?;
    if let Some(w) = out {
        let f = w.into_inner().map_err(|e| BdError::Io(e.into_error()))?;
        f.sync_all()?;
    }
    if !tree {
        return Ok(None);
    }
    let kdf = if spec.kind == DeviceKind::Verity {
        Kdf::Argon2id(opts.kdf)
    } else {
        Kdf::None
    };
    let root = write_tree(
        spec.tree_path()?,
        spec.kind,
        blocks,
        nodes,
        &keys,
        kdf,
        salt,
        opts.journal_entries,
    )?;
    Ok(Some(root))
}

/// Rebuilds the tree of an existing verity or vericrypt image from its
/// current contents (trusting them) and returns the new sealed root. A
/// verity tree gets a new salt; a vericrypt tree keeps the image's keys.
pub fn rebuild_tree(spec: &DeviceSpec, opts: &CreateOptions) -> Result<SealedRoot, BdError> {
    let tree_path = spec.tree_path()?;
    match spec.kind {
        DeviceKind::Verity => {
            let (raw, len, blocks) = open_raw(&spec.image)?;
            if len != blocks * BLOCK_SIZE as u64 {
                return Err(BdError::Size {
                    what: spec.image.display().to_string(),
                    expected: blocks * BLOCK_SIZE as u64,
                    found: len,
                });
            }
            let secret = read_secret(spec.secret_path()?)?;
            let salt = random_salt()?;
            let keys = DeviceKeys::derive(&secret, &salt, &opts.kdf)?;
            let leaves = leaves_for(blocks);
            let mut nodes = vec![[0; 32]; 2 * leaves as usize];
            for_each_block(std::io::BufReader::new(raw), blocks, |b, blk| {
                nodes[(leaves + b) as usize] = leaf_hash(&keys.node_mac, b, blk);
                Ok(())
            })?;
            let kdf = Kdf::Argon2id(opts.kdf);
            write_tree(
                tree_path,
                spec.kind,
                blocks,
                nodes,
                &keys,
                kdf,
                salt,
                opts.journal_entries,
            )
        }
        DeviceKind::Vericrypt => {
            let (file, header, keys) =
                open_encrypted_image(&spec.image, spec.kind, spec.secret_path()?, true)?;
            let blocks = header.blocks;
            let leaves = leaves_for(blocks);
            let mut nodes = vec![[0; 32]; 2 * leaves as usize];
            let mut reader = std::io::BufReader::new(file);
            std::io::copy(&mut (&mut reader).take(HEADER_BYTES), &mut std::io::sink())?;
            for_each_block(reader, blocks, |b, blk| {
                nodes[(leaves + b) as usize] = leaf_hash(&keys.node_mac, b, blk);
                Ok(())
            })?;
            write_tree(
                tree_path,
                spec.kind,
                blocks,
                nodes,
                &keys,
                Kdf::None,
                header.salt,
                opts.journal_entries,
            )
        }
        k => Err(BdError::Config(format!("device {k} has no tree to build"))),
    }
}

/// The file-system format `mke2fs` gives an image.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum FsType {
    /// ext2 in the layout of the first wave: 4 KiB blocks, 256-byte inodes, no
    /// resize inode, no hashed directories.
    #[default]
    Ext2,
    /// Debian's default ext3 (a journal, hashed directories).
    Ext3,
    /// Debian's default ext4 (extents, 64bit, flex_bg, metadata_csum, a journal,
    /// hashed directories).
    Ext4,
}

impl FsType {
    /// The name `mke2fs -t` takes.
    pub fn name(self) -> &'static str {
        match self {
            FsType::Ext2 => "ext2",
            FsType::Ext3 => "ext3",
            FsType::Ext4 => "ext4",
        }
    }
}

impl std::fmt::Display for FsType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Builds a raw ext2 image of `size` bytes at `out` from the tree `dir`
/// ([`mke2fs_as`] with [`FsType::Ext2`]).
pub fn mke2fs(dir: &Path, out: &Path, size: u64) -> Result<(), BdError> {
    mke2fs_as(dir, out, size, FsType::Ext2)
}

/// Builds a raw image of `size` bytes at `out` from the tree `dir` with
/// e2fsprogs' `mke2fs -d` (no mount, no root), 4 KiB blocks and 256-byte inodes:
/// ext2 without resize inode or hashed directories, ext3/ext4 with e2fsprogs'
/// default features for the type. The one place that knows these flags.
pub fn mke2fs_as(dir: &Path, out: &Path, size: u64, fs: FsType) -> Result<(), BdError> {
    let mut cmd = std::process::Command::new("mke2fs");
    cmd.args(["-q", "-F", "-t", fs.name(), "-b", "4096", "-I", "256"]);
    if fs == FsType::Ext2 {
        cmd.args(["-O", "^resize_inode,^dir_index"]);
    }
    let res = cmd
        .args(["-E", "root_owner=0:0", "-d"])
        .arg(dir)
        .arg(out)
        .arg(format!("{}k", size / 1024))
        .output()
        .map_err(|e| BdError::Config(format!("cannot run mke2fs (install e2fsprogs): {e}")))?;
    if !res.status.success() {
        return Err(BdError::Config(format!(
            "mke2fs -t {fs} failed: {}",
            String::from_utf8_lossy(&res.stderr).trim()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sealed_root;

    #[test]
    fn slot_holds_requested_entries() {
        for leaves in [1u64, 2, 1024, 1 << 20] {
            let s = slot_bytes_for(16384, leaves);
            let depth = leaves.trailing_zeros() as usize + 1;
            assert!(sealed_root::capacity(s) >= 16384usize.min(2 * leaves as usize + 4 * depth));
            assert!(sealed_root::capacity(s) >= 4 * depth);
        }
    }
}
