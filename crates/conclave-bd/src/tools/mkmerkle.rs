//! `conclave mkmerkle`: builds or rebuilds the Merkle tree of an existing
//! verity or vericrypt image from its current contents and prints the root.

use super::{device_spec, print_line, ToolError};
use crate::settings::MkmerkleSettings;
use std::io::Write;

/// Rebuilds the tree `s` describes and prints its root (hex).
pub fn mkmerkle(s: &MkmerkleSettings, out: &mut dyn Write) -> Result<(), ToolError> {
    let spec = device_spec(s.device, &s.image, s.tree.as_deref(), s.secret_file.as_deref())?;
    let root = crate::rebuild_tree(&spec, &s.kdf.options())
        .and_then(|root| crate::forget_commits(&spec.image).map(|()| root))
        .map_err(|source| ToolError::Tree {
            image: spec.image.clone(),
            source,
        })?;
    print_line(out, root.hex());
    Ok(())
}
