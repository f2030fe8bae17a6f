//! Request-path normalization: the one gate between a URL and a storage path.
//!
//! Nothing that leaves here can name a file outside the root: `.` and `..`
//! segments (also percent-encoded), encoded separators and NUL are refused rather
//! than resolved.

/// Why a request path was refused (all map to 400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// The path does not start with `/`.
    #[error("path must start with '/'")]
    NotAbsolute,
    /// A `.` or `..` segment.
    #[error("path has a '.' or '..' segment")]
    DotSegment,
    /// `%2f`, `%5c`, `\` or NUL.
    #[error("path has an encoded separator, a backslash or NUL")]
    BadByte,
    /// Bad percent-encoding or not UTF-8.
    #[error("path is not valid percent-encoded UTF-8")]
    BadEncoding,
}

/// A normalized path: relative, `/`-separated, no empty segments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CleanPath {
    /// Relative path (empty for the root).
    pub rel: String,
    /// The request named a directory (trailing `/` or root).
    pub dir: bool,
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Normalizes the path part of a request target.
pub fn normalize(path: &str) -> Result<CleanPath, PathError> {
    if !path.starts_with('/') {
        return Err(PathError::NotAbsolute);
    }
    let mut rel = String::with_capacity(path.len());
    let mut dir = true;
    for raw in path.split('/').skip(1) {
        dir = raw.is_empty();
        if raw.is_empty() {
            continue;
        }
        let mut seg = Vec::with_capacity(raw.len());
        let b = raw.as_bytes();
        let mut i = 0;
        while i < b.len() {
            if b[i] == b'%' {
                let (Some(h), Some(l)) = (
                    b.get(i + 1).copied().and_then(hex),
                    b.get(i + 2).copied().and_then(hex),
                ) else {
                    return Err(PathError::BadEncoding);
                };
                seg.push(h << 4 | l);
                i += 3;
            } else {
                seg.push(b[i]);
                i += 1;
            }
        }
        if seg.iter().any(|&c| c == b'/' || c == b'\\' || c == 0) {
            return Err(PathError::BadByte);
        }
        if seg == b"." || seg == b".." {
            return Err(PathError::DotSegment);
        }
        let seg = std::str::from_utf8(&seg).map_err(|_| PathError::BadEncoding)?;
        if !rel.is_empty() {
            rel.push('/');
        }
        rel.push_str(seg);
    }
    Ok(CleanPath { rel, dir })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_plain_paths_and_collapses_slashes() {
        assert_eq!(
            normalize("/a//b.txt").unwrap(),
            CleanPath {
                rel: "a/b.txt".into(),
                dir: false
            }
        );
        assert_eq!(
            normalize("/").unwrap(),
            CleanPath {
                rel: "".into(),
                dir: true
            }
        );
        assert_eq!(
            normalize("/d/").unwrap(),
            CleanPath {
                rel: "d".into(),
                dir: true
            }
        );
        assert_eq!(normalize("/a%20b").unwrap().rel, "a b");
    }

    #[test]
    fn refuses_escapes() {
        for p in [
            "/../etc/passwd",
            "/a/..",
            "/%2e%2e/x",
            "/%2E%2e/x",
            "/a/%2e/b",
            "/./a",
        ] {
            assert_eq!(normalize(p), Err(PathError::DotSegment), "{p}");
        }
        for p in ["/a%2fb", "/a%5Cb", "/a%00b", "/a\\b"] {
            assert_eq!(normalize(p), Err(PathError::BadByte), "{p}");
        }
        assert_eq!(normalize("/a%zz"), Err(PathError::BadEncoding));
        assert_eq!(normalize("/a%ff"), Err(PathError::BadEncoding));
        assert_eq!(normalize("a"), Err(PathError::NotAbsolute));
        assert_eq!(normalize("*"), Err(PathError::NotAbsolute));
    }
}
