//! One cached response as a file in the cache directory.
//!
//! Layout: `"CCF1"`, key length u32 LE, header-block length u32 LE, the key
//! (to catch hash collisions), the header block (`name: value\n` lines), the body.
//! Only 200 responses are stored, so no status is kept.

use bytes::Bytes;

const MAGIC: &[u8; 4] = b"CCF1";

/// A cache file that does not parse (truncated, foreign or for another key).
#[derive(Debug, thiserror::Error)]
#[error("corrupt cache file: {0}")]
pub struct CorruptCacheFile(&'static str);

/// A parsed cache file.
#[derive(Debug)]
pub struct CacheFile {
    /// Stored headers.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Bytes,
}

/// Serializes a cache file.
pub fn encode(key: &str, headers: &[(String, String)], body: &[u8]) -> Vec<u8> {
    let mut h = String::new();
    for (k, v) in headers {
        h.push_str(k);
        h.push_str(": ");
        h.push_str(v);
        h.push('\n');
    }
    let mut out = Vec::with_capacity(12 + key.len() + h.len() + body.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(key.len() as u32).to_le_bytes());
    out.extend_from_slice(&(h.len() as u32).to_le_bytes());
    out.extend_from_slice(key.as_bytes());
    out.extend_from_slice(h.as_bytes());
    out.extend_from_slice(body);
    out
}

/// Parses a cache file and checks it belongs to `key`.
pub fn decode(key: &str, data: Bytes) -> Result<CacheFile, CorruptCacheFile> {
    if data.len() < 12 || &data[..4] != MAGIC {
        return Err(CorruptCacheFile("bad magic"));
    }
    let kl = u32::from_le_bytes([data[4], data[5], data[6], data[7]]) as usize;
    let hl = u32::from_le_bytes([data[8], data[9], data[10], data[11]]) as usize;
    let end = 12usize
        .checked_add(kl)
        .and_then(|x| x.checked_add(hl))
        .ok_or(CorruptCacheFile("lengths"))?;
    if end > data.len() {
        return Err(CorruptCacheFile("truncated"));
    }
    if &data[12..12 + kl] != key.as_bytes() {
        return Err(CorruptCacheFile("key mismatch"));
    }
    let h = std::str::from_utf8(&data[12 + kl..end]).map_err(|_| CorruptCacheFile("headers not UTF-8"))?;
    let headers = h
        .lines()
        .map(|l| l.split_once(": ").map(|(k, v)| (k.to_string(), v.to_string())))
        .collect::<Option<Vec<_>>>()
        .ok_or(CorruptCacheFile("bad header line"))?;
    Ok(CacheFile {
        headers,
        body: data.slice(end..),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_corruption() {
        let h = vec![("content-type".to_string(), "text/plain".to_string())];
        let f = encode("/a", &h, b"body");
        let d = decode("/a", Bytes::from(f.clone())).unwrap();
        assert_eq!(d.headers, h);
        assert_eq!(d.body.as_ref(), b"body");
        assert!(decode("/b", Bytes::from(f.clone())).is_err());
        assert!(decode("/a", Bytes::from(f[..14].to_vec())).is_err());
        assert!(decode("/a", Bytes::from_static(b"xx")).is_err());
    }
}
