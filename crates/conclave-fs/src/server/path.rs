//! Paths from clients: absolute inside the image, normalised lexically so a
//! `..` can never climb above the root, with POSIX length limits.

use crate::proto::{MAX_NAME, MAX_PATH};
use conclave_rpc::{BodyReader, Status};

/// Reads a path field and normalises it.
pub fn read(r: &mut BodyReader<'_>) -> Result<String, Status> {
    normalize(r.name(MAX_PATH)?)
}

/// `/a/./b/../c//` → `/a/c`. Refuses `..` above the root (`EACCES`), names over
/// 255 bytes (`ENAMETOOLONG`), NUL bytes and empty paths (`EINVAL`).
pub fn normalize(p: &str) -> Result<String, Status> {
    if p.is_empty() || p.contains('\0') {
        return Err(Status::EINVAL);
    }
    let mut parts: Vec<&str> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                if parts.pop().is_none() {
                    return Err(Status::EACCES);
                }
            }
            name if name.len() > MAX_NAME => return Err(Status::ENAMETOOLONG),
            name => parts.push(name),
        }
    }
    Ok(format!("/{}", parts.join("/")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_and_refuses_escapes() {
        assert_eq!(normalize("/a/./b/../c//").unwrap(), "/a/c");
        assert_eq!(normalize("a").unwrap(), "/a");
        assert_eq!(normalize("/").unwrap(), "/");
        assert_eq!(normalize("/a/../..").unwrap_err(), Status::EACCES);
        assert_eq!(normalize("/../etc/passwd").unwrap_err(), Status::EACCES);
        assert_eq!(
            normalize(&format!("/{}", "x".repeat(256))).unwrap_err(),
            Status::ENAMETOOLONG
        );
        assert_eq!(normalize("/a\0b").unwrap_err(), Status::EINVAL);
        assert_eq!(normalize("").unwrap_err(), Status::EINVAL);
    }
}
