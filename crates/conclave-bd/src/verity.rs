//! The verity and vericrypt devices: data blocks checked against a Merkle
//! tree kept in a side file, its root sealed on every flush.
//!
//! Tree file layout:
//! ```text
//! [0, 4096)                         header (role tree; verity: KDF salt and key check)
//! [4096, 4096 + S)                  seal slot 0 (even counters)
//! [4096 + S, 4096 + 2S)             seal slot 1 (odd counters)
//! [4096 + 2S, 4096 + 2S + 64·L)     nodes 0..2L, 32 bytes each (node 0 unused)
//! ```
//! verity: the image is the raw file system, block `i` at `i·4096`, and the
//! tree file header carries the KDF. vericrypt: the image is a crypt image
//! (header block, then XTS ciphertext) and the tree covers the ciphertext.
//!
//! Writes go to the image at once; changed nodes stay in memory until a
//! flush (or until a seal slot would overflow), which syncs the image,
//! writes and syncs the seal record (root, counter, changed nodes), then
//! writes the nodes in place and syncs again.

use crate::crypt::open_encrypted_image;
use crate::header::{Header, Kdf, Role, HEADER_BYTES};
use crate::keys::{read_secret, CommitKeys, DeviceKeys, HmacSha256};
use crate::merkle::{leaf_hash, MerkleTree, Node};
use crate::sealed_root::{self, SealContext};
use crate::std_device::{check_range, host_len, open_host_file};
use crate::xts::{decrypt_block, encrypt_block, Xts};
use crate::{BdError, BlockDevice, DeviceKind, DeviceSpec, SealedRoot, BLOCK_SIZE};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

/// Where things are in a tree file.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TreeLayout {
    pub leaves: u64,
    pub slot_bytes: u32,
}

impl TreeLayout {
    pub fn slot_offset(&self, counter: u64) -> u64 {
        HEADER_BYTES + (counter % 2) * self.slot_bytes as u64
    }
    pub fn nodes_offset(&self) -> u64 {
        HEADER_BYTES + 2 * self.slot_bytes as u64
    }
    pub fn file_len(&self) -> u64 {
        self.nodes_offset() + 2 * self.leaves * 32
    }
}

/// Writes `entries` (sorted by node) into the node array, one write per run
/// of consecutive nodes.
pub(crate) fn write_nodes(file: &File, layout: &TreeLayout, entries: &[(u64, Node)]) -> Result<(), BdError> {
    let mut i = 0;
    let mut buf = Vec::new();
    while i < entries.len() {
        let start = entries[i].0;
        buf.clear();
        let mut j = i;
        while j < entries.len() && entries[j].0 == start + (j - i) as u64 {
            buf.extend_from_slice(&entries[j].1);
            j += 1;
        }
        file.write_all_at(&buf, layout.nodes_offset() + start * 32)?;
        i = j;
    }
    Ok(())
}

/// Mutable state: the tree and the last sealed root.
struct State {
    tree: MerkleTree,
    sealed: SealedRoot,
}

/// A verity or vericrypt device.
pub struct VerityDevice {
    kind: DeviceKind,
    image: File,
    tree_file: File,
    data_offset: u64,
    blocks: u64,
    layout: TreeLayout,
    flush_threshold: usize,
    xts: Option<Xts>,
    node_mac: HmacSha256,
    seal_mac: HmacSha256,
    read_only: bool,
    state: RwLock<State>,
}

impl VerityDevice {
    /// Opens image and tree, checks headers, secret, sizes and the seal, and
    /// refuses a sealed root other than `spec.expect_root`.
    pub fn open(spec: &DeviceSpec) -> Result<VerityDevice, BdError> {
        Ok(Self::open_keyed(spec)?.0)
    }

    /// [`VerityDevice::open`], also handing over the commit layer's keys.
    pub(crate) fn open_keyed(spec: &DeviceSpec) -> Result<(VerityDevice, CommitKeys), BdError> {
        let kind = spec.kind;
        let tree_path = spec.tree_path()?;
        let secret_path = spec.secret_path()?;
        let expected_root = spec.expected_root()?;
        let what = tree_path.display().to_string();
        let tree_file = open_host_file(tree_path, spec.read_only)?;
        let tree_len = host_len(&tree_file)?;
        if tree_len < HEADER_BYTES {
            return Err(BdError::Size {
                what,
                expected: HEADER_BYTES,
                found: tree_len,
            });
        }
        let mut hblock = Box::new([0u8; BLOCK_SIZE]);
        tree_file.read_exact_at(&mut hblock[..], 0)?;
        let header = Header::parse(&hblock, &what)?;
        if header.role != Role::Tree || header.kind != kind {
            return Err(BdError::format(
                &what,
                format!(
                    "header is for a {:?} of device {}, not a tree of device {kind}",
                    header.role, header.kind
                ),
            ));
        }
        let (image, keys, data_offset) = match kind {
            DeviceKind::Verity => {
                let Kdf::Argon2id(params) = header.kdf else {
                    return Err(BdError::format(&what, "verity tree header has no key derivation"));
                };
                let secret = read_secret(secret_path)?;
                let keys = DeviceKeys::derive(&secret, &header.salt, &params)?;
                header.verify(&hblock, &keys, &what)?;
                let image = open_host_file(&spec.image, spec.read_only)?;
                let len = host_len(&image)?;
                let expected = header.blocks * BLOCK_SIZE as u64;
                if len != expected {
                    return Err(BdError::Size {
                        what: spec.image.display().to_string(),
                        expected,
                        found: len,
                    });
                }
                (image, keys, 0)
            }
            DeviceKind::Vericrypt => {
                let (image, ih, keys) = open_encrypted_image(&spec.image, kind, secret_path, spec.read_only)?;
                header.verify(&hblock, &keys, &what)?;
                if ih.blocks != header.blocks {
                    return Err(BdError::format(
                        &what,
                        format!("tree covers {} blocks, image has {}", header.blocks, ih.blocks),
                    ));
                }
                (image, keys, HEADER_BYTES)
            }
            _ => return Err(BdError::Config(format!("device {kind} has no tree"))),
        };
        let layout = TreeLayout {
            leaves: header.leaves,
            slot_bytes: header.journal_slot_bytes,
        };
        if tree_len != layout.file_len() {
            return Err(BdError::Size {
                what,
                expected: layout.file_len(),
                found: tree_len,
            });
        }
        let ctx = SealContext {
            mac: &keys.seal_mac,
            kind,
            blocks: header.blocks,
            leaves: layout.leaves,
        };
        let mut slots = vec![0u8; 2 * layout.slot_bytes as usize];
        tree_file.read_exact_at(&mut slots, HEADER_BYTES)?;
        let (s0, s1) = slots.split_at(layout.slot_bytes as usize);
        let (sealed, entries) = sealed_root::newest(&ctx, [s0, s1], &what)?;
        if let Some(exp) = expected_root {
            if exp != sealed.root {
                return Err(BdError::RootMismatch {
                    expected: hex::encode(exp),
                    found: sealed.hex(),
                });
            }
        }
        let mut raw = vec![0u8; (2 * layout.leaves * 32) as usize];
        tree_file.read_exact_at(&mut raw, layout.nodes_offset())?;
        let mut nodes: Vec<Node> = raw
            .chunks_exact(32)
            .map(|c| c.try_into().expect("32-byte chunk"))
            .collect();
        drop(raw);
        // Finish the node writes of the flush that wrote this seal (a crash
        // may have cut them short); the seal MAC vouches for the entries.
        let mut replay = Vec::new();
        for (n, v) in entries {
            if nodes[n as usize] != v {
                nodes[n as usize] = v;
                replay.push((n, v));
            }
        }
        if !replay.is_empty() && !spec.read_only {
            write_nodes(&tree_file, &layout, &replay)?;
            tree_file.sync_data()?;
        }
        let cap = sealed_root::capacity(layout.slot_bytes);
        let depth = layout.leaves.trailing_zeros() as usize + 1;
        if cap < 2 * depth {
            return Err(BdError::format(
                &what,
                "journal slot too small for the tree depth",
            ));
        }
        let tree = MerkleTree::new(layout.leaves, nodes, sealed.root, keys.node_mac.clone());
        let DeviceKeys {
            xts,
            node_mac,
            seal_mac,
            commit,
            ..
        } = keys;
        let dev = VerityDevice {
            kind,
            image,
            tree_file,
            data_offset,
            blocks: header.blocks,
            layout,
            flush_threshold: cap - depth,
            xts: (kind == DeviceKind::Vericrypt).then_some(xts),
            node_mac,
            seal_mac,
            read_only: spec.read_only,
            state: RwLock::new(State { tree, sealed }),
        };
        Ok((dev, commit))
    }

    fn read_state(&self) -> RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write_state(&self) -> RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|p| p.into_inner())
    }

    fn offset(&self, idx: u64) -> u64 {
        self.data_offset + idx * BLOCK_SIZE as u64
    }

    fn finish_read(&self, idx: u64, buf: &mut [u8; BLOCK_SIZE]) {
        if let Some(xts) = &self.xts {
            decrypt_block(xts, idx, buf);
        }
    }

    fn flush_locked(&self, st: &mut State) -> Result<(), BdError> {
        if self.read_only {
            return Ok(());
        }
        self.image.sync_data()?;
        if st.tree.dirty_count() == 0 {
            return Ok(());
        }
        let entries = st.tree.take_dirty();
        let new = SealedRoot {
            counter: st.sealed.counter + 1,
            root: st.tree.root(),
        };
        let res = (|| {
            let ctx = SealContext {
                mac: &self.seal_mac,
                kind: self.kind,
                blocks: self.blocks,
                leaves: self.layout.leaves,
            };
            let record = ctx.encode(&new, &entries);
            debug_assert!(record.len() <= self.layout.slot_bytes as usize);
            self.tree_file
                .write_all_at(&record, self.layout.slot_offset(new.counter))?;
            self.tree_file.sync_data()?;
            write_nodes(&self.tree_file, &self.layout, &entries)?;
            self.tree_file.sync_data()?;
            Ok(())
        })();
        match res {
            Ok(()) => {
                st.sealed = new;
                Ok(())
            }
            Err(e) => {
                st.tree.restore_dirty(&entries);
                Err(e)
            }
        }
    }
}

impl BlockDevice for VerityDevice {
    fn block_count(&self) -> u64 {
        self.blocks
    }

    fn read_block(&self, idx: u64, buf: &mut [u8; BLOCK_SIZE]) -> Result<(), BdError> {
        check_range(idx, self.blocks)?;
        {
            let st = self.read_state();
            self.image.read_exact_at(buf, self.offset(idx))?;
            let leaf = leaf_hash(&self.node_mac, idx, buf);
            match st.tree.check_cached(idx, &leaf) {
                Some(true) => {
                    drop(st);
                    self.finish_read(idx, buf);
                    return Ok(());
                }
                Some(false) => {
                    buf.fill(0);
                    return Err(BdError::Integrity { block: idx });
                }
                None => {}
            }
        }
        // First read of this block: verify its proof under the write lock
        // (re-reading, as a write may have come in between).
        let mut st = self.write_state();
        self.image.read_exact_at(buf, self.offset(idx))?;
        let leaf = leaf_hash(&self.node_mac, idx, buf);
        if !st.tree.verify_leaf(idx, &leaf) {
            buf.fill(0);
            return Err(BdError::Integrity { block: idx });
        }
        drop(st);
        self.finish_read(idx, buf);
        Ok(())
    }

    fn write_block(&self, idx: u64, buf: &[u8; BLOCK_SIZE]) -> Result<(), BdError> {
        check_range(idx, self.blocks)?;
        if self.read_only {
            return Err(BdError::ReadOnly);
        }
        let mut data = *buf;
        if let Some(xts) = &self.xts {
            encrypt_block(xts, idx, &mut data);
        }
        let leaf = leaf_hash(&self.node_mac, idx, &data);
        let mut st = self.write_state();
        // Verify the proof first, so a refused write changes nothing.
        if !st.tree.prove(idx) {
            return Err(BdError::Integrity { block: idx });
        }
        self.image.write_all_at(&data, self.offset(idx))?;
        let updated = st.tree.update(idx, &leaf);
        debug_assert!(updated, "proof was verified under the same lock");
        if st.tree.dirty_count() >= self.flush_threshold {
            self.flush_locked(&mut st)?;
        }
        Ok(())
    }

    fn flush(&self) -> Result<(), BdError> {
        let mut st = self.write_state();
        self.flush_locked(&mut st)
    }

    fn sealed_root(&self) -> Option<SealedRoot> {
        Some(self.read_state().sealed)
    }
}

impl Drop for VerityDevice {
    fn drop(&mut self) {
        // Best effort: a device dropped without a flush would otherwise
        // leave written blocks that fail verification at the next open.
        if let Err(e) = self.flush() {
            tracing::warn!(
                "conclave-bd: flush on close of a {} device failed: {e}",
                self.kind
            );
        }
    }
}
