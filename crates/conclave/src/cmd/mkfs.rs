//! `conclave mkfs`: builds an ext2 image from a directory with `mke2fs -d`
//! (no mount, no root), then encrypts it and/or builds its Merkle tree as
//! the device needs, and prints the sealed root of tree devices.

use anyhow::{bail, Context};
use conclave_bd::{CreateOptions, DeviceKind, DeviceSpec, KdfParams};
use std::path::{Path, PathBuf};

/// Arguments.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Device: std, crypt, verity or vericrypt.
    #[arg(long, default_value = "std")]
    pub device: String,
    /// Image size, in bytes or with a K, M or G suffix.
    #[arg(long, default_value = "128M")]
    pub size: String,
    /// File holding the secret (crypt, verity, vericrypt).
    #[arg(long)]
    pub secret_file: Option<PathBuf>,
    /// Tree file (verity, vericrypt); default IMAGE.tree.
    #[arg(long)]
    pub tree: Option<PathBuf>,
    /// Overwrite an existing image and tree.
    #[arg(long)]
    pub force: bool,
    #[command(flatten)]
    pub kdf: KdfArgs,
    /// Directory whose contents become the file system.
    pub dir: PathBuf,
    /// Image file to write.
    pub image: PathBuf,
}

/// Argon2id costs for new devices (recorded in the header).
#[derive(clap::Args, Debug)]
pub struct KdfArgs {
    /// Argon2id memory in KiB.
    #[arg(long, default_value_t = KdfParams::DEFAULT.m_kib)]
    pub kdf_memory_kib: u32,
    /// Argon2id passes.
    #[arg(long, default_value_t = KdfParams::DEFAULT.t)]
    pub kdf_passes: u32,
}

impl KdfArgs {
    /// The options for `conclave_bd::create` / `rebuild_tree`.
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
}

/// Parses `128M`, `1G`, `4096K` or a byte count.
pub fn parse_size(s: &str) -> anyhow::Result<u64> {
    let s = s.trim();
    let (num, mult) = match s.char_indices().last() {
        Some((i, 'K' | 'k')) => (&s[..i], 1u64 << 10),
        Some((i, 'M' | 'm')) => (&s[..i], 1 << 20),
        Some((i, 'G' | 'g')) => (&s[..i], 1 << 30),
        _ => (s, 1),
    };
    let n: u64 = num
        .parse()
        .with_context(|| format!("bad size {s:?}: expected e.g. 128M"))?;
    let bytes = n
        .checked_mul(mult)
        .with_context(|| format!("size {s:?} is too large"))?;
    if bytes < 1 << 20 || !bytes.is_multiple_of(4096) {
        bail!("size {s:?} must be at least 1M and a multiple of 4096 bytes");
    }
    Ok(bytes)
}

/// The device spec from the common flags (tree defaults to IMAGE.tree).
pub fn spec_from(
    device: &str,
    image: &Path,
    tree: Option<&Path>,
    secret_file: Option<&Path>,
) -> anyhow::Result<DeviceSpec> {
    let kind: DeviceKind = device.parse()?;
    let mut spec = DeviceSpec::new(kind, image);
    if kind.has_tree() {
        let t = tree.map(Path::to_path_buf).unwrap_or_else(|| {
            let mut p = image.as_os_str().to_owned();
            p.push(".tree");
            PathBuf::from(p)
        });
        spec = spec.tree(t);
    } else if tree.is_some() {
        bail!("device {kind} has no tree file");
    }
    if kind.needs_secret() {
        let s = secret_file.with_context(|| format!("device {kind} needs --secret-file"))?;
        spec = spec.secret_file(s);
    }
    Ok(spec)
}

/// Runs `mke2fs -d dir` into a new file `out` of `size` bytes.
pub fn run_mke2fs(dir: &Path, out: &Path, size: u64) -> anyhow::Result<()> {
    Ok(conclave_bd::mke2fs(dir, out, size)?)
}

/// Runs the subcommand.
pub fn run(args: Args) -> anyhow::Result<()> {
    let size = parse_size(&args.size)?;
    let spec = spec_from(
        &args.device,
        &args.image,
        args.tree.as_deref(),
        args.secret_file.as_deref(),
    )?;
    if !args.dir.is_dir() {
        bail!("{} is not a directory", args.dir.display());
    }
    for p in std::iter::once(&spec.image).chain(spec.tree.as_ref()) {
        if p.exists() && !args.force {
            bail!("{} exists (use --force to overwrite)", p.display());
        }
    }
    if spec.kind == DeviceKind::Std {
        let _ = std::fs::remove_file(&spec.image);
        run_mke2fs(&args.dir, &spec.image, size)?;
        return Ok(());
    }
    // The raw file system goes next to the image and is removed afterwards.
    let mut raw = spec.image.as_os_str().to_owned();
    raw.push(".raw-tmp");
    let raw = PathBuf::from(raw);
    let _ = std::fs::remove_file(&raw);
    let res = run_mke2fs(&args.dir, &raw, size)
        .and_then(|()| conclave_bd::create(&spec, &raw, &args.kdf.options()).map_err(Into::into));
    let _ = std::fs::remove_file(&raw);
    if let Some(root) =
        res.with_context(|| format!("making {} device {}", spec.kind, spec.image.display()))?
    {
        let tree = spec.tree.as_deref().unwrap_or(Path::new("")).display();
        tracing::info!("sealed root (counter {}) written to {tree}", root.counter);
        super::print_line(root.hex());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sizes() {
        assert_eq!(parse_size("128M").unwrap(), 128 << 20);
        assert_eq!(parse_size("1G").unwrap(), 1 << 30);
        assert_eq!(parse_size("2048k").unwrap(), 2 << 20);
        assert!(parse_size("12").is_err());
        assert!(parse_size("abcM").is_err());
    }
}
