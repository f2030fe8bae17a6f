//! Finding the files a server leaves on the host (sealed segments, images).

use std::path::{Path, PathBuf};

/// The first file in `dir` whose extension is `ext`; fails the test if there is none.
pub fn file_with_extension(dir: &Path, ext: &str) -> PathBuf {
    std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == ext))
        .unwrap_or_else(|| panic!("no .{ext} file in {}", dir.display()))
}

/// Writes a secret or key file as a user should: mode 0600 (conclave
/// refuses private files that group or others may read).
pub fn write_private(path: impl AsRef<Path>, contents: impl AsRef<[u8]>) {
    let path = path.as_ref();
    conclave_secret::write_private(path, contents.as_ref())
        .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
}
