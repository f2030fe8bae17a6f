//! NGINX's `gzip_static` (and `brotli_static`, `zstd_static`): a standalone
//! site answers a client that accepts a coding with the precompressed
//! sibling (`file.gz`, `file.br`, `file.zst`) instead of the file itself, so
//! static assets are compressed once, at build time, at the best level.

use super::{ranked, Coding};
use crate::config::CompressionConfig;
use crate::storage::{FileMeta, Storage};
use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use std::io;

/// Which representation of a file was read, and what its response must say.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Representation {
    /// The sibling's coding; `None` for the file itself.
    pub coding: Option<Coding>,
    /// Whether the file has siblings, so the response depends on
    /// `Accept-Encoding` (and says so in `Vary`).
    pub varies: bool,
}

impl Representation {
    /// The headers this representation adds: `Content-Encoding` for a
    /// sibling, `Vary: Accept-Encoding` whenever siblings exist.
    pub fn headers(&self) -> impl Iterator<Item = (HeaderName, HeaderValue)> {
        let encoding = self
            .coding
            .map(|c| (header::CONTENT_ENCODING, HeaderValue::from_static(c.token())));
        let vary = self
            .varies
            .then(|| (header::VARY, HeaderValue::from_static("Accept-Encoding")));
        encoding.into_iter().chain(vary)
    }
}

/// Reads `name` from `storage` for the client of `req`: the best sibling the
/// client accepts and the site serves, else the file. A sibling that cannot
/// be read (absent, a directory, an I/O error) is skipped: the file is the
/// truth, siblings only an optimisation.
pub fn read_for_client(
    cfg: &CompressionConfig,
    req: &HeaderMap,
    storage: &dyn Storage,
    name: &str,
) -> io::Result<(FileMeta, Bytes, Representation)> {
    if !cfg.any_static() {
        let (meta, body) = storage.read_all(name)?;
        return Ok((meta, body, Representation::default()));
    }
    let tried = ranked(req, |c| cfg.static_sibling(c));
    for &c in &tried {
        if let Ok((meta, body)) = storage.read_all(&format!("{name}{}", c.suffix())) {
            if !meta.is_dir {
                let rep = Representation {
                    coding: Some(c),
                    varies: true,
                };
                return Ok((meta, body, rep));
            }
        }
    }
    let (meta, body) = storage.read_all(name)?;
    // A client that accepts none of the siblings still gets a response that
    // another client would get encoded: shared caches must know.
    let varies = !meta.is_dir
        && Coding::ALL
            .into_iter()
            .filter(|&c| cfg.static_sibling(c) && !tried.contains(&c))
            .any(|c| {
                storage
                    .stat(&format!("{name}{}", c.suffix()))
                    .is_ok_and(|m| !m.is_dir)
            });
    Ok((meta, body, Representation { coding: None, varies }))
}
