//! `conclave mkfs`: builds an ext2/3/4 image from a directory with `mke2fs -d`
//! (no mount, no root), then encrypts it and/or builds its Merkle tree as
//! the device needs, and prints the sealed root of tree devices.

use super::{device_spec, print_line, ToolError};
use crate::settings::{check_image_size, MkfsSettings};
use crate::DeviceKind;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Makes the image (and tree) `s` describes; prints the sealed root, if any.
pub fn mkfs(s: &MkfsSettings, out: &mut dyn Write) -> Result<(), ToolError> {
    let size = s.size.bytes();
    check_image_size(size)?;
    let spec = device_spec(s.device, &s.image, s.tree.as_deref(), s.secret_file.as_deref())?;
    if !s.dir.is_dir() {
        return Err(ToolError::NotADirectory(s.dir.clone()));
    }
    for p in std::iter::once(&spec.image).chain(spec.tree.as_ref()) {
        if p.exists() && !s.force {
            return Err(ToolError::Exists(p.clone()));
        }
    }
    if spec.kind == DeviceKind::Std {
        let _ = std::fs::remove_file(&spec.image);
        crate::mke2fs_as(&s.dir, &spec.image, size, s.fs_type)?;
        crate::forget_commits(&spec.image)?;
        return Ok(());
    }
    // The raw file system goes next to the image and is removed afterwards.
    let mut raw = spec.image.as_os_str().to_owned();
    raw.push(".raw-tmp");
    let raw = PathBuf::from(raw);
    let _ = std::fs::remove_file(&raw);
    let res = crate::mke2fs_as(&s.dir, &raw, size, s.fs_type)
        .and_then(|()| crate::create(&spec, &raw, &s.kdf.options()));
    let _ = std::fs::remove_file(&raw);
    let made = res
        .and_then(|made| crate::forget_commits(&spec.image).map(|()| made))
        .map_err(|source| ToolError::Make {
            kind: spec.kind,
            image: spec.image.clone(),
            source,
        })?;
    if let Some(root) = made {
        let tree = spec.tree.as_deref().unwrap_or(Path::new("")).display();
        tracing::info!("sealed root (counter {}) written to {tree}", root.counter);
        print_line(out, root.hex());
    }
    Ok(())
}
