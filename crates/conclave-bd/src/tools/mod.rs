//! The storage tools behind `conclave mkfs`, `mkmerkle` and `fsck`: each
//! takes its settings and a writer for the lines it prints (the binary
//! passes stdout), and returns a typed error.

mod error;
mod fsck;
mod mkfs;
mod mkmerkle;

pub use error::ToolError;
pub use fsck::fsck;
pub use mkfs::mkfs;
pub use mkmerkle::mkmerkle;

use crate::{DeviceKind, DeviceSpec};
use std::path::{Path, PathBuf};

/// The device spec from the common flags (tree defaults to IMAGE.tree).
pub fn device_spec(
    kind: DeviceKind,
    image: &Path,
    tree: Option<&Path>,
    secret_file: Option<&Path>,
) -> Result<DeviceSpec, ToolError> {
    let mut spec = DeviceSpec::new(kind, image);
    if kind.has_tree() {
        let t = tree.map(Path::to_path_buf).unwrap_or_else(|| {
            let mut p = image.as_os_str().to_owned();
            p.push(".tree");
            PathBuf::from(p)
        });
        spec = spec.tree(t);
    } else if tree.is_some() {
        return Err(ToolError::NoTree(kind));
    }
    if kind.needs_secret() {
        let s = secret_file.ok_or(ToolError::NeedsSecret(kind))?;
        spec = spec.secret_file(s);
    }
    Ok(spec)
}

/// Prints one line; a closed output (`| head`) is not an error, as for
/// the binary's own listings.
fn print_line(out: &mut dyn std::io::Write, line: impl std::fmt::Display) {
    let _ = writeln!(out, "{line}");
}
