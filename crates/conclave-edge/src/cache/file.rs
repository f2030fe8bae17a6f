//! One cached response as a file in the cache directory.
//!
//! Layout: `"CCF2"`, status u16 LE, 2 reserved bytes, key length u32 LE,
//! header-block length u32 LE, the key (to catch hash collisions, and for
//! prefix purges), the header block (`name: value\n` lines), the body. The
//! head comes first so a body streamed from the origin is appended as it
//! arrives; a hit reads the head, then only the body bytes it sends.

use bytes::Bytes;

const MAGIC: &[u8; 4] = b"CCF2";
/// Fixed part of the head.
pub const FIXED: usize = 16;

/// A cache file that does not parse (truncated, foreign or for another key).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("corrupt cache file: {0}")]
pub struct CorruptCacheFile(&'static str);

impl CorruptCacheFile {
    /// A corrupt file, for `why`.
    pub fn new(why: &'static str) -> CorruptCacheFile {
        CorruptCacheFile(why)
    }
}

/// The head of a cache file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    /// The stored response's status.
    pub status: u16,
    /// The cache key it was stored under.
    pub key: String,
    /// Stored headers (end-to-end headers of the origin's response).
    pub headers: Vec<(String, String)>,
    /// Where the body starts.
    pub body_offset: u64,
}

/// Serializes a head; the body follows it in the file.
pub fn encode_head(key: &str, status: u16, headers: &[(String, String)]) -> Vec<u8> {
    let mut h = String::new();
    for (k, v) in headers {
        h.push_str(k);
        h.push_str(": ");
        h.push_str(v);
        h.push('\n');
    }
    let mut out = Vec::with_capacity(FIXED + key.len() + h.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&status.to_le_bytes());
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(&(key.len() as u32).to_le_bytes());
    out.extend_from_slice(&(h.len() as u32).to_le_bytes());
    out.extend_from_slice(key.as_bytes());
    out.extend_from_slice(h.as_bytes());
    out
}

/// The whole head's length, from the first [`FIXED`] bytes of a file.
pub fn head_len(fixed: &[u8]) -> Result<usize, CorruptCacheFile> {
    if fixed.len() < FIXED || &fixed[..4] != MAGIC {
        return Err(CorruptCacheFile("bad magic"));
    }
    let kl = u32::from_le_bytes([fixed[8], fixed[9], fixed[10], fixed[11]]) as usize;
    let hl = u32::from_le_bytes([fixed[12], fixed[13], fixed[14], fixed[15]]) as usize;
    FIXED
        .checked_add(kl)
        .and_then(|x| x.checked_add(hl))
        .filter(|&n| n <= 1 << 20)
        .ok_or(CorruptCacheFile("lengths"))
}

/// Parses the head at the start of `data` (which may hold more: the body).
/// With `key`, checks the file belongs to it.
pub fn decode_head(key: Option<&str>, data: &[u8]) -> Result<Head, CorruptCacheFile> {
    let end = head_len(data)?;
    if end > data.len() {
        return Err(CorruptCacheFile("truncated"));
    }
    let status = u16::from_le_bytes([data[4], data[5]]);
    let kl = u32::from_le_bytes([data[8], data[9], data[10], data[11]]) as usize;
    let stored_key =
        std::str::from_utf8(&data[FIXED..FIXED + kl]).map_err(|_| CorruptCacheFile("key not UTF-8"))?;
    if key.is_some_and(|k| k != stored_key) {
        return Err(CorruptCacheFile("key mismatch"));
    }
    let h = std::str::from_utf8(&data[FIXED + kl..end]).map_err(|_| CorruptCacheFile("headers not UTF-8"))?;
    let headers = h
        .lines()
        .map(|l| l.split_once(": ").map(|(k, v)| (k.to_string(), v.to_string())))
        .collect::<Option<Vec<_>>>()
        .ok_or(CorruptCacheFile("bad header line"))?;
    if !(100..1000).contains(&status) {
        return Err(CorruptCacheFile("status"));
    }
    Ok(Head {
        status,
        key: stored_key.to_string(),
        headers,
        body_offset: end as u64,
    })
}

/// Parses a whole file read at once (small bodies): head and body.
pub fn decode(key: &str, data: Bytes) -> Result<(Head, Bytes), CorruptCacheFile> {
    let head = decode_head(Some(key), &data)?;
    let body = data.slice(head.body_offset as usize..);
    Ok((head, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_corruption() {
        let h = vec![("content-type".to_string(), "text/plain".to_string())];
        let mut f = encode_head("/a", 301, &h);
        assert_eq!(head_len(&f[..FIXED]), Ok(f.len()));
        f.extend_from_slice(b"body");
        let (d, body) = decode("/a", Bytes::from(f.clone())).unwrap();
        assert_eq!((d.status, d.headers, d.key.as_str()), (301, h, "/a"));
        assert_eq!(body.as_ref(), b"body");
        assert_eq!(
            decode("/b", Bytes::from(f.clone())).unwrap_err().0,
            "key mismatch"
        );
        assert_eq!(
            decode("/a", Bytes::from(f[..18].to_vec())).unwrap_err().0,
            "truncated"
        );
        assert_eq!(
            decode("/a", Bytes::from_static(b"xx")).unwrap_err().0,
            "bad magic"
        );
        let mut huge = f.clone();
        huge[12..16].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(head_len(&huge).unwrap_err().0, "lengths");
    }
}
