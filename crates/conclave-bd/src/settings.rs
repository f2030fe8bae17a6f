//! The typed command lines of the storage tools (`conclave mkfs`,
//! `mkmerkle`, `fsck`): one value per tool, parsed by clap in the binary and
//! written back by `to_args` for the callers that start the tools
//! (`conclave eval`), so no caller spells a flag itself.

use crate::{CreateOptions, DeviceKind, FsType, KdfParams};
use conclave_units::ByteSize;
use std::path::PathBuf;

/// Smallest image `conclave mkfs` makes.
pub const MIN_IMAGE_SIZE: u64 = 1 << 20;

/// An image size mkfs cannot use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImageSizeError {
    /// Not a size (the `conclave-units` message).
    #[error("{0}")]
    Parse(String),
    /// Too small, or not whole blocks.
    #[error("size {0} must be at least 1M and a multiple of 4096 bytes")]
    Bounds(String),
}

/// Checks an image size: at least 1 MiB and whole 4096-byte blocks, so
/// mke2fs and the devices see whole blocks.
pub fn check_image_size(bytes: u64) -> Result<(), ImageSizeError> {
    if bytes < MIN_IMAGE_SIZE || !bytes.is_multiple_of(4096) {
        return Err(ImageSizeError::Bounds(ImageSize(bytes).to_string()));
    }
    Ok(())
}

/// Parses `--size` (`128M`, `1G`, `4096K` or a byte count) and checks it
/// with [`check_image_size`].
pub fn parse_image_size(s: &str) -> Result<ByteSize, ImageSizeError> {
    let size: ByteSize = s.parse().map_err(ImageSizeError::Parse)?;
    check_image_size(size.bytes())?;
    Ok(size)
}

/// A size written the way mkfs documents it (`128M`, upper-case suffix).
struct ImageSize(u64);

impl std::fmt::Display for ImageSize {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", ByteSize(self.0).to_string().to_uppercase())
    }
}

/// Argon2id costs for new devices (recorded in the header).
#[derive(clap::Args, Debug, Clone, Copy, PartialEq, Eq)]
pub struct KdfSettings {
    /// Argon2id memory in KiB.
    #[arg(long, default_value_t = KdfParams::DEFAULT.m_kib)]
    pub kdf_memory_kib: u32,
    /// Argon2id passes.
    #[arg(long, default_value_t = KdfParams::DEFAULT.t)]
    pub kdf_passes: u32,
}

impl Default for KdfSettings {
    fn default() -> Self {
        KdfSettings {
            kdf_memory_kib: KdfParams::DEFAULT.m_kib,
            kdf_passes: KdfParams::DEFAULT.t,
        }
    }
}

impl KdfSettings {
    /// The options for [`crate::create`] / [`crate::rebuild_tree`].
    pub fn options(&self) -> CreateOptions {
        CreateOptions {
            kdf: KdfParams {
                m_kib: self.kdf_memory_kib,
                t: self.kdf_passes,
                p: 1,
            },
            ..CreateOptions::default()
        }
    }

    /// The flags that differ from the defaults (none for the defaults).
    pub fn to_args(&self) -> Vec<String> {
        let d = KdfSettings::default();
        let mut argv = Vec::new();
        if self.kdf_memory_kib != d.kdf_memory_kib {
            argv.extend(["--kdf-memory-kib".into(), self.kdf_memory_kib.to_string()]);
        }
        if self.kdf_passes != d.kdf_passes {
            argv.extend(["--kdf-passes".into(), self.kdf_passes.to_string()]);
        }
        argv
    }
}

/// `conclave mkfs`: an ext2 image made from a directory, for one device.
#[derive(clap::Args, Debug, Clone, PartialEq, Eq)]
pub struct MkfsSettings {
    /// Device: std, crypt, verity or vericrypt.
    #[arg(long, default_value = "std")]
    pub device: DeviceKind,
    /// Image size, in bytes or with a K, M or G suffix.
    #[arg(long, default_value = "128M", value_parser = parse_image_size)]
    pub size: ByteSize,
    /// File holding the secret (crypt, verity, vericrypt).
    #[arg(long)]
    pub secret_file: Option<PathBuf>,
    /// Tree file (verity, vericrypt); default IMAGE.tree.
    #[arg(long)]
    pub tree: Option<PathBuf>,
    /// Overwrite an existing image and tree.
    #[arg(long)]
    pub force: bool,
    /// File-system type: ext2, or ext3/ext4 with e2fsprogs' default features
    /// (ext4: extents, 64bit, metadata_csum, a journal).
    #[arg(long, value_enum, default_value_t = FsType::Ext2)]
    pub fs_type: FsType,
    #[command(flatten)]
    pub kdf: KdfSettings,
    /// Directory whose contents become the file system.
    pub dir: PathBuf,
    /// Image file to write.
    pub image: PathBuf,
}

impl MkfsSettings {
    /// The argv tail `["mkfs", "--device", ...]` that parses back to `self`.
    pub fn to_args(&self) -> Vec<String> {
        let mut argv: Vec<String> = vec![
            "mkfs".into(),
            "--device".into(),
            self.device.to_string(),
            "--size".into(),
            ImageSize(self.size.bytes()).to_string(),
        ];
        if self.force {
            argv.push("--force".into());
        }
        if self.fs_type != FsType::Ext2 {
            argv.extend(["--fs-type".into(), self.fs_type.to_string()]);
        }
        if let Some(s) = &self.secret_file {
            argv.extend(["--secret-file".into(), s.display().to_string()]);
        }
        argv.extend(self.kdf.to_args());
        if let Some(t) = &self.tree {
            argv.extend(["--tree".into(), t.display().to_string()]);
        }
        argv.extend([self.dir.display().to_string(), self.image.display().to_string()]);
        argv
    }
}

/// `conclave mkmerkle`: the Merkle tree of an existing image, rebuilt.
#[derive(clap::Args, Debug, Clone, PartialEq, Eq)]
pub struct MkmerkleSettings {
    /// Device: verity or vericrypt.
    #[arg(long)]
    pub device: DeviceKind,
    /// File holding the secret.
    #[arg(long)]
    pub secret_file: Option<PathBuf>,
    /// Tree file to write; default IMAGE.tree.
    #[arg(long)]
    pub tree: Option<PathBuf>,
    #[command(flatten)]
    pub kdf: KdfSettings,
    /// The image whose contents the tree will vouch for.
    pub image: PathBuf,
}

/// `conclave fsck`: an image checked block by block, then by e2fsck.
#[derive(clap::Args, Debug, Clone, PartialEq, Eq)]
pub struct FsckSettings {
    /// Device: std, crypt, verity or vericrypt.
    #[arg(long, default_value = "std")]
    pub device: DeviceKind,
    /// File holding the secret.
    #[arg(long)]
    pub secret_file: Option<PathBuf>,
    /// Tree file; default IMAGE.tree.
    #[arg(long)]
    pub tree: Option<PathBuf>,
    /// Refuse the image unless its sealed root is this (hex).
    #[arg(long)]
    pub expect_root: Option<String>,
    /// Directory for the plaintext copy e2fsck reads (default: the system temp dir).
    /// It holds the decrypted file system while e2fsck runs.
    #[arg(long)]
    pub scratch: Option<PathBuf>,
    /// Only verify blocks; do not run e2fsck.
    #[arg(long)]
    pub no_e2fsck: bool,
    /// The image.
    pub image: PathBuf,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(subcommand)]
        cmd: Cmd,
    }

    #[derive(clap::Subcommand)]
    enum Cmd {
        Mkfs(MkfsSettings),
    }

    fn reparse(s: &MkfsSettings) -> MkfsSettings {
        let argv = std::iter::once("conclave".to_string()).chain(s.to_args());
        match Cli::try_parse_from(argv).unwrap().cmd {
            Cmd::Mkfs(m) => m,
        }
    }

    #[test]
    fn mkfs_settings_round_trip_through_their_argv() {
        let mut s = MkfsSettings {
            device: DeviceKind::Std,
            size: ByteSize(128 << 20),
            secret_file: None,
            tree: None,
            force: false,
            fs_type: FsType::Ext2,
            kdf: KdfSettings::default(),
            dir: "/s/root".into(),
            image: "/s/fs.img".into(),
        };
        assert_eq!(reparse(&s), s);
        assert_eq!(s.to_args()[..5], ["mkfs", "--device", "std", "--size", "128M"]);
        s = MkfsSettings {
            device: DeviceKind::Vericrypt,
            size: ByteSize(3 << 30),
            secret_file: Some("/s/secret".into()),
            tree: Some("/s/t".into()),
            force: true,
            fs_type: FsType::Ext4,
            kdf: KdfSettings {
                kdf_memory_kib: 8192,
                kdf_passes: 1,
            },
            ..s
        };
        assert_eq!(reparse(&s), s);
    }

    #[test]
    fn image_sizes_are_whole_blocks_of_at_least_a_mebibyte() {
        assert_eq!(parse_image_size("128M"), Ok(ByteSize(128 << 20)));
        assert_eq!(parse_image_size("1G"), Ok(ByteSize(1 << 30)));
        assert_eq!(parse_image_size("2048k"), Ok(ByteSize(2 << 20)));
        assert!(parse_image_size("12").is_err());
        assert!(parse_image_size("abcM").is_err());
        assert!(parse_image_size("1052673").is_err(), "not whole blocks");
        assert!(check_image_size(1 << 20).is_ok());
        assert!(check_image_size(4096).is_err());
    }
}
