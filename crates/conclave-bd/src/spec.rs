//! Choosing and opening a device by name: [`DeviceKind`], [`DeviceSpec`],
//! [`open`], and the [`SealedRoot`] a Merkle device reports.

use crate::{crypt::CryptDevice, std_device::StdDevice, verity::VerityDevice, BdError, BlockDevice};
use std::path::PathBuf;
use std::sync::Arc;

/// The four devices, named like the original's `-b` flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeviceKind {
    /// A raw ext2 image: no confidentiality, no integrity.
    Std,
    /// AES-256-XTS per block (tweak = block number): confidentiality only.
    Crypt,
    /// HMAC-SHA256 Merkle tree in a side file: integrity and (pinned) freshness.
    Verity,
    /// XTS, then the tree over the ciphertext: both.
    Vericrypt,
}

impl DeviceKind {
    /// Every kind, in the order benchmarks and tests walk them.
    pub const ALL: [DeviceKind; 4] = [
        DeviceKind::Std,
        DeviceKind::Crypt,
        DeviceKind::Verity,
        DeviceKind::Vericrypt,
    ];

    /// The name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            DeviceKind::Std => "std",
            DeviceKind::Crypt => "crypt",
            DeviceKind::Verity => "verity",
            DeviceKind::Vericrypt => "vericrypt",
        }
    }

    /// Whether the device needs a secret file.
    pub fn needs_secret(self) -> bool {
        self != DeviceKind::Std
    }

    /// Whether the device has a tree file.
    pub fn has_tree(self) -> bool {
        matches!(self, DeviceKind::Verity | DeviceKind::Vericrypt)
    }

    /// Whether data blocks are encrypted (and the image starts with a header block).
    pub fn encrypts(self) -> bool {
        matches!(self, DeviceKind::Crypt | DeviceKind::Vericrypt)
    }

    pub(crate) fn code(self) -> u8 {
        match self {
            DeviceKind::Std => 1,
            DeviceKind::Crypt => 2,
            DeviceKind::Verity => 3,
            DeviceKind::Vericrypt => 4,
        }
    }

    pub(crate) fn from_code(c: u8) -> Option<DeviceKind> {
        DeviceKind::ALL.into_iter().find(|k| k.code() == c)
    }
}

impl std::fmt::Display for DeviceKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for DeviceKind {
    type Err = BdError;
    fn from_str(s: &str) -> Result<Self, BdError> {
        DeviceKind::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| {
                BdError::Config(format!(
                    "unknown device {s:?}: expected std, crypt, verity or vericrypt"
                ))
            })
    }
}

/// A root sealed into a tree file: the Merkle root and the flush counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SealedRoot {
    /// Incremented by every flush that changed the tree.
    pub counter: u64,
    /// The Merkle root.
    pub root: [u8; 32],
}

impl SealedRoot {
    /// The root in lower-case hex: what `--expect-root` takes.
    pub fn hex(&self) -> String {
        hex::encode(self.root)
    }

    /// Parses a 64-hex-digit root.
    pub fn parse_hex(s: &str) -> Result<[u8; 32], BdError> {
        let mut r = [0u8; 32];
        hex::decode_to_slice(s.trim(), &mut r)
            .map_err(|e| BdError::Config(format!("expected root must be 64 hex digits: {e}")))?;
        Ok(r)
    }
}

/// Everything needed to open a device; the file server builds one from its flags.
#[derive(Debug, Clone)]
pub struct DeviceSpec {
    /// Which device.
    pub kind: DeviceKind,
    /// The image file.
    pub image: PathBuf,
    /// The tree file (verity, vericrypt).
    pub tree: Option<PathBuf>,
    /// The secret file (crypt, verity, vericrypt); never the secret itself.
    pub secret_file: Option<PathBuf>,
    /// Root (hex) the sealed root must equal, so a rolled-back image and tree are refused.
    pub expect_root: Option<String>,
    /// Open without write access (writes fail with [`BdError::ReadOnly`]).
    pub read_only: bool,
}

impl DeviceSpec {
    /// A read-write spec with no tree, secret or pinned root.
    pub fn new(kind: DeviceKind, image: impl Into<PathBuf>) -> Self {
        DeviceSpec {
            kind,
            image: image.into(),
            tree: None,
            secret_file: None,
            expect_root: None,
            read_only: false,
        }
    }

    /// Sets the tree file.
    pub fn tree(mut self, p: impl Into<PathBuf>) -> Self {
        self.tree = Some(p.into());
        self
    }

    /// Sets the secret file.
    pub fn secret_file(mut self, p: impl Into<PathBuf>) -> Self {
        self.secret_file = Some(p.into());
        self
    }

    /// Pins the root.
    pub fn expect_root(mut self, hex: impl Into<String>) -> Self {
        self.expect_root = Some(hex.into());
        self
    }

    /// Opens read-only.
    pub fn read_only(mut self, ro: bool) -> Self {
        self.read_only = ro;
        self
    }

    pub(crate) fn secret_path(&self) -> Result<&std::path::Path, BdError> {
        self.secret_file
            .as_deref()
            .ok_or_else(|| BdError::Config(format!("device {} needs a secret file", self.kind)))
    }

    pub(crate) fn tree_path(&self) -> Result<&std::path::Path, BdError> {
        self.tree
            .as_deref()
            .ok_or_else(|| BdError::Config(format!("device {} needs a tree file", self.kind)))
    }

    pub(crate) fn expected_root(&self) -> Result<Option<[u8; 32]>, BdError> {
        self.expect_root.as_deref().map(SealedRoot::parse_hex).transpose()
    }
}

/// Opens the device `spec` names, checking headers, secret, sizes and (for
/// tree devices) the sealed root against `expect_root`.
pub fn open(spec: &DeviceSpec) -> Result<Arc<dyn BlockDevice>, BdError> {
    Ok(match spec.kind {
        DeviceKind::Std => {
            if spec.expect_root.is_some() {
                return Err(BdError::Config("device std has no root to pin".into()));
            }
            Arc::new(StdDevice::open(&spec.image, spec.read_only)?)
        }
        DeviceKind::Crypt => {
            if spec.expect_root.is_some() {
                return Err(BdError::Config("device crypt has no root to pin".into()));
            }
            Arc::new(CryptDevice::open(spec)?)
        }
        DeviceKind::Verity | DeviceKind::Vericrypt => Arc::new(VerityDevice::open(spec)?),
    })
}
