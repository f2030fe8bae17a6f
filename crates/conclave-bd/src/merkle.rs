//! The Merkle tree of verity and vericrypt, in memory: a perfect binary tree
//! in heap order (node 1 is the root, node `n` has children `2n` and `2n+1`,
//! block `b`'s leaf is node `leaves + b`), every node an HMAC-SHA256:
//!
//! ```text
//! leaf(b)  = HMAC(K_node, 0x00 ‖ b as u64 LE ‖ block bytes)
//! inner(n) = HMAC(K_node, 0x01 ‖ n as u64 LE ‖ node(2n) ‖ node(2n+1))
//! ```
//!
//! Leaves past the last block (padding up to a power of two) are zero.
//! The node values are loaded untrusted from the tree file; a bitmap marks
//! the ones *verified* against the sealed root. The verified set is closed
//! under parent and sibling, so a check climbs only to the first verified
//! ancestor, and an update finds all siblings it folds in already verified.

use crate::keys::{ct_eq32, mac_parts, HmacSha256};
use crate::BLOCK_SIZE;

/// One node value.
pub(crate) type Node = [u8; 32];

/// The tree and what of it is trusted.
pub(crate) struct MerkleTree {
    leaves: u64,
    nodes: Vec<Node>,
    verified: Vec<u64>,
    dirty: Vec<u64>,
    dirty_list: Vec<u64>,
    mac: HmacSha256,
}

/// Number of leaves for `blocks` data blocks.
pub(crate) fn leaves_for(blocks: u64) -> u64 {
    blocks.max(1).next_power_of_two()
}

/// The leaf value of block `b`.
pub(crate) fn leaf_hash(mac: &HmacSha256, b: u64, data: &[u8; BLOCK_SIZE]) -> Node {
    mac_parts(mac, &[&[0u8], &b.to_le_bytes(), data])
}

/// The value of inner node `n` over its children.
pub(crate) fn inner_hash(mac: &HmacSha256, n: u64, left: &Node, right: &Node) -> Node {
    mac_parts(mac, &[&[1u8], &n.to_le_bytes(), left, right])
}

fn bit(v: &[u64], i: u64) -> bool {
    v[(i / 64) as usize] & (1 << (i % 64)) != 0
}

fn set_bit(v: &mut [u64], i: u64) {
    v[(i / 64) as usize] |= 1 << (i % 64);
}

impl MerkleTree {
    /// A tree over untrusted `nodes` (index 0 unused) whose root is trusted to be `root`.
    pub fn new(leaves: u64, mut nodes: Vec<Node>, root: Node, mac: HmacSha256) -> MerkleTree {
        debug_assert_eq!(nodes.len() as u64, 2 * leaves);
        let words = (2 * leaves).div_ceil(64) as usize;
        nodes[1] = root;
        let mut t = MerkleTree {
            leaves,
            nodes,
            verified: vec![0; words],
            dirty: vec![0; words],
            dirty_list: Vec::new(),
            mac,
        };
        set_bit(&mut t.verified, 1);
        t
    }

    /// Builds every inner node from the leaves (`nodes[leaves..]` filled in).
    pub fn build_inner(mac: &HmacSha256, leaves: u64, nodes: &mut [Node]) {
        for n in (1..leaves).rev() {
            let (l, r) = (nodes[2 * n as usize], nodes[2 * n as usize + 1]);
            nodes[n as usize] = inner_hash(mac, n, &l, &r);
        }
    }

    /// The current root (sealed or not).
    pub fn root(&self) -> Node {
        self.nodes[1]
    }

    /// The key nodes are MACed under.
    #[cfg(test)]
    pub fn mac(&self) -> &HmacSha256 {
        &self.mac
    }

    /// Fast path of a read: `Some(true)` if block `b`'s leaf is verified and
    /// equals `leaf`, `Some(false)` if verified and different, `None` if not
    /// yet verified.
    pub fn check_cached(&self, b: u64, leaf: &Node) -> Option<bool> {
        let i = self.leaves + b;
        bit(&self.verified, i).then(|| ct_eq32(&self.nodes[i as usize], leaf))
    }

    /// Verifies that block `b`'s data hashes to `leaf` and that its stored
    /// leaf is authentic; `false` on any mismatch.
    pub fn verify_leaf(&mut self, b: u64, leaf: &Node) -> bool {
        let i = self.leaves + b;
        ct_eq32(&self.nodes[i as usize], leaf) && self.trust(i)
    }

    /// Verifies block `b`'s stored leaf (and so its whole proof) without
    /// looking at the data: what a write needs before it replaces the block.
    pub fn prove(&mut self, b: u64) -> bool {
        self.trust(self.leaves + b)
    }

    /// Makes node `i` verified by climbing to the first verified ancestor;
    /// `false` if a stored parent does not match its children.
    fn trust(&mut self, i: u64) -> bool {
        let mut n = i;
        while !bit(&self.verified, n) {
            let p = n / 2;
            let h = inner_hash(
                &self.mac,
                p,
                &self.nodes[2 * p as usize],
                &self.nodes[2 * p as usize + 1],
            );
            if !ct_eq32(&h, &self.nodes[p as usize]) {
                return false;
            }
            n = p;
        }
        let mut n = i;
        while !bit(&self.verified, n) {
            set_bit(&mut self.verified, n);
            set_bit(&mut self.verified, n ^ 1);
            n /= 2;
        }
        true
    }

    /// Sets block `b`'s leaf and recomputes its path to the root, after
    /// verifying the stored leaf and so every sibling it folds in; `false`
    /// (and no change) if that proof fails.
    pub fn update(&mut self, b: u64, leaf: &Node) -> bool {
        let i = self.leaves + b;
        if !self.trust(i) {
            return false;
        }
        self.nodes[i as usize] = *leaf;
        self.mark_dirty(i);
        let mut n = i;
        while n > 1 {
            let p = n / 2;
            self.nodes[p as usize] = inner_hash(
                &self.mac,
                p,
                &self.nodes[2 * p as usize],
                &self.nodes[2 * p as usize + 1],
            );
            self.mark_dirty(p);
            n = p;
        }
        true
    }

    fn mark_dirty(&mut self, n: u64) {
        if !bit(&self.dirty, n) {
            set_bit(&mut self.dirty, n);
            self.dirty_list.push(n);
        }
    }

    /// Nodes changed since the last [`MerkleTree::take_dirty`].
    pub fn dirty_count(&self) -> usize {
        self.dirty_list.len()
    }

    /// The changed nodes, sorted, with their values; clears the dirty set.
    pub fn take_dirty(&mut self) -> Vec<(u64, Node)> {
        let mut list = std::mem::take(&mut self.dirty_list);
        list.sort_unstable();
        for &n in &list {
            self.dirty[(n / 64) as usize] &= !(1 << (n % 64));
        }
        list.into_iter().map(|n| (n, self.nodes[n as usize])).collect()
    }

    /// Puts back nodes a failed flush took (they stay dirty).
    pub fn restore_dirty(&mut self, entries: &[(u64, Node)]) {
        for &(n, _) in entries {
            self.mark_dirty(n);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::DeviceKeys;

    fn tree(blocks: u64) -> (MerkleTree, Vec<[u8; BLOCK_SIZE]>) {
        let mac = DeviceKeys::from_master(&[1; 32], &[2; 16]).node_mac;
        let leaves = leaves_for(blocks);
        let data: Vec<[u8; BLOCK_SIZE]> = (0..blocks).map(|b| [b as u8; BLOCK_SIZE]).collect();
        let mut nodes = vec![[0u8; 32]; 2 * leaves as usize];
        for (b, d) in data.iter().enumerate() {
            nodes[leaves as usize + b] = leaf_hash(&mac, b as u64, d);
        }
        MerkleTree::build_inner(&mac, leaves, &mut nodes);
        let root = nodes[1];
        (MerkleTree::new(leaves, nodes, root, mac), data)
    }

    #[test]
    fn verifies_every_leaf_and_caches() {
        let (mut t, data) = tree(5);
        for (b, d) in data.iter().enumerate() {
            let h = leaf_hash(t.mac(), b as u64, d);
            assert!(t.verify_leaf(b as u64, &h));
            assert_eq!(t.check_cached(b as u64, &h), Some(true));
        }
    }

    #[test]
    fn leaf_binds_block_number() {
        let (mut t, data) = tree(4);
        let wrong = leaf_hash(t.mac(), 1, &data[0]);
        assert!(!t.verify_leaf(0, &wrong));
    }

    #[test]
    fn tampered_node_fails_and_update_refuses_unverified_sibling() {
        let (mut t, data) = tree(8);
        t.nodes[(t.leaves + 3) as usize][0] ^= 1; // sibling of block 2's leaf
        let h2 = leaf_hash(t.mac(), 2, &data[2]);
        assert!(!t.verify_leaf(2, &h2));
        assert!(!t.update(2, &h2));
        let h5 = leaf_hash(t.mac(), 5, &data[5]);
        assert!(t.verify_leaf(5, &h5));
    }

    #[test]
    fn update_changes_root_and_stays_verifiable() {
        let (mut t, _) = tree(6);
        let old = t.root();
        let h = leaf_hash(t.mac(), 4, &[9; BLOCK_SIZE]);
        assert!(t.update(4, &h));
        assert_ne!(t.root(), old);
        assert_eq!(t.check_cached(4, &h), Some(true));
        let dirty = t.take_dirty();
        assert_eq!(dirty.len(), 4); // leaf + 3 ancestors of an 8-leaf tree
        assert_eq!(t.dirty_count(), 0);
        // A fresh tree over the new nodes verifies against the new root.
        let root = t.root();
        let mut fresh = MerkleTree::new(t.leaves, t.nodes.clone(), root, t.mac.clone());
        assert!(fresh.verify_leaf(4, &h));
    }
}
