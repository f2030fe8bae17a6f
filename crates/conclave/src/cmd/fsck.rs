//! `conclave fsck`: opens an image through its device (checking header,
//! secret, sizes and the sealed root), reads and verifies every block, then
//! runs `e2fsck -fn` on the std image or on a verified plaintext copy.

use super::mkfs::spec_from;
use anyhow::{bail, Context};
use conclave_bd::{BdError, BlockDevice, DeviceKind, BLOCK_SIZE};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Arguments.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Device: std, crypt, verity or vericrypt.
    #[arg(long, default_value = "std")]
    pub device: String,
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

fn e2fsck(path: &Path) -> anyhow::Result<()> {
    let out = Command::new("e2fsck")
        .args(["-f", "-n"])
        .arg(path)
        .output()
        .context("cannot run e2fsck (install e2fsprogs)")?;
    if !out.status.success() {
        bail!(
            "e2fsck -fn exited with {}:\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// Removes the scratch copy however fsck ends.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Runs the subcommand.
pub fn run(args: Args) -> anyhow::Result<()> {
    let mut spec = spec_from(
        &args.device,
        &args.image,
        args.tree.as_deref(),
        args.secret_file.as_deref(),
    )?;
    spec.expect_root = args.expect_root.clone();
    spec.read_only = true;
    let dev = conclave_bd::open(&spec).with_context(|| format!("opening {}", spec.image.display()))?;
    if let Some(r) = dev.sealed_root() {
        tracing::info!("sealed root {} (counter {})", r.hex(), r.counter);
    }
    let copy = (spec.kind != DeviceKind::Std && !args.no_e2fsck).then(|| {
        let dir = args.scratch.clone().unwrap_or_else(std::env::temp_dir);
        Scratch(dir.join(format!("conclave-fsck-{}.img", std::process::id())))
    });
    let mut out = match &copy {
        Some(s) => Some(std::io::BufWriter::new(
            std::fs::File::create(&s.0).with_context(|| format!("creating {}", s.0.display()))?,
        )),
        None => None,
    };
    let mut bad = Vec::new();
    let mut block = [0u8; BLOCK_SIZE];
    for b in 0..dev.block_count() {
        match dev.read_block(b, &mut block) {
            Ok(()) => {}
            Err(BdError::Integrity { .. }) => {
                bad.push(b);
                block.fill(0);
            }
            Err(e) => return Err(e).with_context(|| format!("reading block {b}")),
        }
        if let Some(w) = out.as_mut() {
            w.write_all(&block)?;
        }
    }
    if let Some(w) = out {
        w.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    }
    super::print_line(format_args!(
        "{}: {} blocks read through device {}, {} failed verification",
        spec.image.display(),
        dev.block_count(),
        spec.kind,
        bad.len()
    ));
    if !bad.is_empty() {
        let shown: Vec<String> = bad.iter().take(20).map(u64::to_string).collect();
        bail!(
            "{} blocks failed their integrity check: {}{}",
            bad.len(),
            shown.join(" "),
            if bad.len() > 20 { " ..." } else { "" }
        );
    }
    drop(dev);
    if !args.no_e2fsck {
        let target = copy
            .as_ref()
            .map(|s| s.0.clone())
            .unwrap_or_else(|| spec.image.clone());
        e2fsck(&target)?;
        super::print_line("e2fsck -fn: clean");
    }
    Ok(())
}
