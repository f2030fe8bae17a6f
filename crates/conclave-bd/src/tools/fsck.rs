//! `conclave fsck`: opens an image through its device (checking header,
//! secret, sizes and the sealed root), reads and verifies every block, then
//! runs `e2fsck -fn` on the std image or on a verified plaintext copy.

use super::{device_spec, print_line, ToolError};
use crate::settings::FsckSettings;
use crate::{BdError, DeviceKind, BLOCK_SIZE};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

fn e2fsck(path: &Path) -> Result<(), ToolError> {
    let out = Command::new("e2fsck")
        .args(["-f", "-n"])
        .arg(path)
        .output()
        .map_err(ToolError::E2fsckMissing)?;
    if !out.status.success() {
        return Err(ToolError::E2fsck {
            status: out.status,
            output: format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        });
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

/// Verifies every block of the image `s` describes, then runs e2fsck;
/// prints a summary line and `e2fsck -fn: clean`.
pub fn fsck(s: &FsckSettings, out: &mut dyn Write) -> Result<(), ToolError> {
    let mut spec = device_spec(s.device, &s.image, s.tree.as_deref(), s.secret_file.as_deref())?;
    spec.expect_root = s.expect_root.clone();
    spec.read_only = true;
    let dev = crate::open(&spec).map_err(|source| ToolError::Open {
        image: spec.image.clone(),
        source,
    })?;
    if let Some(r) = dev.sealed_root() {
        tracing::info!("sealed root {} (counter {})", r.hex(), r.counter);
    }
    let copy = (spec.kind != DeviceKind::Std && !s.no_e2fsck).then(|| {
        let dir = s.scratch.clone().unwrap_or_else(std::env::temp_dir);
        Scratch(dir.join(format!("conclave-fsck-{}.img", std::process::id())))
    });
    let mut plain = match &copy {
        Some(c) => Some(std::io::BufWriter::new(std::fs::File::create(&c.0).map_err(
            |source| ToolError::Create {
                path: c.0.clone(),
                source,
            },
        )?)),
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
            Err(source) => return Err(ToolError::Read { block: b, source }),
        }
        if let Some(w) = plain.as_mut() {
            w.write_all(&block)?;
        }
    }
    if let Some(w) = plain {
        w.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    }
    print_line(
        out,
        format_args!(
            "{}: {} blocks read through device {}, {} failed verification",
            spec.image.display(),
            dev.block_count(),
            spec.kind,
            bad.len()
        ),
    );
    if !bad.is_empty() {
        let shown: Vec<String> = bad.iter().take(20).map(u64::to_string).collect();
        return Err(ToolError::Integrity {
            count: bad.len(),
            shown: format!("{}{}", shown.join(" "), if bad.len() > 20 { " ..." } else { "" }),
        });
    }
    drop(dev);
    if !s.no_e2fsck {
        let target = copy
            .as_ref()
            .map(|c| c.0.clone())
            .unwrap_or_else(|| spec.image.clone());
        e2fsck(&target)?;
        print_line(out, "e2fsck -fn: clean");
    }
    Ok(())
}
