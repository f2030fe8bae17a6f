//! Feature flags of the superblock by name, and what this engine does with each:
//! read and write it, read it only (`--read-only`), or refuse the image.
//!
//! Names are e2fsprogs' (`mke2fs -O`, `dumpe2fs`), so a refusal such as
//! "unsupported: inline_data, encrypt" reads like the tools the operator knows.

use crate::error::Ext2Error;

/// Which of the three feature words a flag lives in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FeatureKind {
    /// `s_feature_compat`: an implementation that does not know the flag may read and write.
    Compat,
    /// `s_feature_incompat`: one that does not know it must not even read.
    Incompat,
    /// `s_feature_ro_compat`: one that does not know it may read but not write.
    RoCompat,
}

/// What this engine does with an image that has a feature.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Support {
    /// Read and written correctly.
    Full,
    /// Reading is safe, writing is not implemented: open with `--read-only`.
    ReadOnly,
    /// The image cannot be read correctly: refused.
    Refused,
}

/// One named flag.
#[derive(Clone, Copy, Debug)]
pub struct Feature {
    /// Word the flag is in.
    pub kind: FeatureKind,
    /// Bit mask.
    pub mask: u32,
    /// e2fsprogs' name.
    pub name: &'static str,
    /// What the engine does with it.
    pub support: Support,
}

const fn f(kind: FeatureKind, mask: u32, name: &'static str, support: Support) -> Feature {
    Feature {
        kind,
        mask,
        name,
        support,
    }
}

use FeatureKind::{Compat as C, Incompat as I, RoCompat as R};
use Support::{Full, ReadOnly, Refused};

/// Every flag e2fsprogs 1.47 knows. Compat flags an engine ignores are safe by
/// definition. A journal is kept empty and clean (and replayed at open when it is
/// not; see `journal.rs`), so `has_journal` is written like ext2.
pub const FEATURES: &[Feature] = &[
    f(C, 0x0001, "dir_prealloc", Full),
    f(C, 0x0002, "imagic_inodes", Full),
    f(C, 0x0004, "has_journal", Full),
    f(C, 0x0008, "ext_attr", Full),
    f(C, 0x0010, "resize_inode", Full),
    // Hashed directories read linearly; a write into one is refused per directory.
    f(C, 0x0020, "dir_index", Full),
    f(C, 0x0040, "lazy_bg", Full),
    f(C, 0x0080, "exclude_inode", Full),
    f(C, 0x0100, "snapshot_bitmap", Full),
    f(C, 0x0200, "sparse_super2", Full),
    f(C, 0x0400, "fast_commit", ReadOnly),
    f(C, 0x0800, "stable_inodes", Full),
    f(C, 0x1000, "orphan_file", ReadOnly),
    f(R, 0x0001, "sparse_super", Full),
    f(R, 0x0002, "large_file", Full),
    f(R, 0x0004, "btree_dir", ReadOnly),
    f(R, 0x0008, "huge_file", Full),
    f(R, 0x0010, "uninit_bg", Full),
    f(R, 0x0020, "dir_nlink", Full),
    f(R, 0x0040, "extra_isize", Full),
    f(R, 0x0080, "snapshot", ReadOnly),
    f(R, 0x0100, "quota", ReadOnly),
    f(R, 0x0200, "bigalloc", Refused),
    f(R, 0x0400, "metadata_csum", Full),
    f(R, 0x0800, "replica", ReadOnly),
    f(R, 0x1000, "read-only", ReadOnly),
    f(R, 0x2000, "project", ReadOnly),
    f(R, 0x4000, "shared_blocks", ReadOnly),
    f(R, 0x8000, "verity", ReadOnly),
    f(R, 0x10000, "orphan_present", ReadOnly),
    f(I, 0x0001, "compression", Refused),
    f(I, 0x0002, "filetype", Full),
    f(I, 0x0004, "needs_recovery", Refused),
    f(I, 0x0008, "journal_dev", Refused),
    f(I, 0x0010, "meta_bg", Refused),
    f(I, 0x0040, "extent", Full),
    f(I, 0x0080, "64bit", Full),
    f(I, 0x0100, "mmp", Refused),
    f(I, 0x0200, "flex_bg", Full),
    f(I, 0x0400, "ea_inode", Refused),
    f(I, 0x1000, "dirdata", Refused),
    f(I, 0x2000, "metadata_csum_seed", Full),
    f(I, 0x4000, "large_dir", Refused),
    f(I, 0x8000, "inline_data", Refused),
    f(I, 0x10000, "encrypt", Refused),
    f(I, 0x20000, "casefold", Refused),
];

/// `s_feature_compat`: the journal (ext3/ext4).
pub const COMPAT_HAS_JOURNAL: u32 = 0x4;
/// `s_feature_incompat`: directory entries carry a file type.
pub const INCOMPAT_FILETYPE: u32 = 0x2;
/// `s_feature_incompat`: the journal holds transactions not yet written home.
pub const INCOMPAT_RECOVER: u32 = 0x4;
/// `s_feature_incompat`: files mapped by extent trees (ext4).
pub const INCOMPAT_EXTENTS: u32 = 0x40;
/// `s_feature_incompat`: 64-bit block numbers and descriptors of `s_desc_size` bytes.
pub const INCOMPAT_64BIT: u32 = 0x80;
/// `s_feature_ro_compat`: files may be larger than 2 GiB.
pub const RO_COMPAT_LARGE_FILE: u32 = 0x2;

/// The three feature words of a superblock (all zero for revision 0).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FeatureSet {
    /// `s_feature_compat`.
    pub compat: u32,
    /// `s_feature_incompat`.
    pub incompat: u32,
    /// `s_feature_ro_compat`.
    pub ro_compat: u32,
}

impl FeatureSet {
    fn word(&self, kind: FeatureKind) -> u32 {
        match kind {
            FeatureKind::Compat => self.compat,
            FeatureKind::Incompat => self.incompat,
            FeatureKind::RoCompat => self.ro_compat,
        }
    }

    /// Names of every flag set, unknown bits as `incompat_0x800000` etc., in table order.
    pub fn names(&self) -> Vec<String> {
        self.select(|_| true)
    }

    /// Names of the set flags whose support matches `want`; unknown incompat bits
    /// count as `Refused`, unknown ro_compat bits as `ReadOnly`, unknown compat as `Full`.
    fn select(&self, want: impl Fn(Support) -> bool) -> Vec<String> {
        let mut out = Vec::new();
        for (kind, prefix, unknown) in [
            (C, "compat", Full),
            (R, "ro_compat", ReadOnly),
            (I, "incompat", Refused),
        ] {
            let word = self.word(kind);
            let mut known = 0u32;
            for feat in FEATURES.iter().filter(|x| x.kind == kind) {
                known |= feat.mask;
                if word & feat.mask != 0 && want(feat.support) {
                    out.push(feat.name.to_string());
                }
            }
            for bit in (0..32).map(|i| 1u32 << i) {
                if word & !known & bit != 0 && want(unknown) {
                    out.push(format!("{prefix}_{bit:#x}"));
                }
            }
        }
        out
    }

    /// Refuses an image with a feature this engine cannot read ("unsupported: a, b"),
    /// or with a journal that still holds unreplayed transactions.
    pub fn check_readable(&self) -> Result<(), Ext2Error> {
        if self.incompat & INCOMPAT_RECOVER != 0 {
            return Err(Ext2Error::NeedsRecovery);
        }
        let refused = self.select(|s| s == Refused);
        if !refused.is_empty() {
            return Err(Ext2Error::Unsupported(refused.join(", ")));
        }
        Ok(())
    }

    /// Refuses writing to an image with a feature this engine reads but cannot write.
    pub fn check_writable(&self) -> Result<(), Ext2Error> {
        self.check_readable()?;
        let read_only = self.select(|s| s == ReadOnly);
        if !read_only.is_empty() {
            return Err(Ext2Error::ReadOnlyFeatures(read_only.join(", ")));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_name_the_features() {
        let fs = FeatureSet {
            compat: 0x38,
            incompat: 0x2 | 0x8000 | 0x10000,
            ro_compat: 0,
        };
        let err = fs.check_readable().unwrap_err().to_string();
        assert_eq!(err, "unsupported: inline_data, encrypt");
        let fs = FeatureSet {
            compat: 0,
            incompat: 0x2 | 0x40 | 0x80 | 0x100 | 0x80_0000,
            ro_compat: 0,
        };
        assert_eq!(
            fs.check_readable().unwrap_err().to_string(),
            "unsupported: mmp, incompat_0x800000"
        );
    }

    #[test]
    fn unknown_ro_compat_allows_reading_only() {
        let fs = FeatureSet {
            compat: 0x10,
            incompat: 0x2,
            ro_compat: 0x1 | 0x400 | 0x100 | 0x100_0000,
        };
        fs.check_readable().unwrap();
        let err = fs.check_writable().unwrap_err();
        assert!(matches!(err, Ext2Error::ReadOnlyFeatures(_)));
        assert_eq!(
            err.to_string(),
            "writing is not supported with features quota, ro_compat_0x1000000: open read-only (--read-only)"
        );
        assert_eq!(
            fs.names(),
            [
                "resize_inode",
                "sparse_super",
                "quota",
                "metadata_csum",
                "ro_compat_0x1000000",
                "filetype"
            ]
        );
    }

    #[test]
    fn a_journal_needing_recovery_is_refused_with_a_hint() {
        let fs = FeatureSet {
            compat: COMPAT_HAS_JOURNAL,
            incompat: INCOMPAT_RECOVER | INCOMPAT_FILETYPE,
            ro_compat: 0,
        };
        assert!(fs
            .check_readable()
            .unwrap_err()
            .to_string()
            .contains("run e2fsck"));
        let clean = FeatureSet {
            incompat: INCOMPAT_FILETYPE,
            ..fs
        };
        clean.check_readable().unwrap();
        // A clean journal is kept clean: writable (see journal.rs).
        clean.check_writable().unwrap();
    }

    #[test]
    fn every_mask_is_one_bit_and_unique_per_word() {
        for (i, a) in FEATURES.iter().enumerate() {
            assert_eq!(a.mask.count_ones(), 1, "{}", a.name);
            for b in &FEATURES[i + 1..] {
                assert!(a.kind != b.kind || a.mask != b.mask, "{} {}", a.name, b.name);
            }
        }
    }
}
