//! `Vary` (RFC 9111 §4.1): the request headers a stored response was
//! selected by, and the secondary key a variant is stored under.
//!
//! The primary key's index entry then holds a small *vary record* (the names),
//! and each variant is a normal entry under `primary key + secondary key`, so
//! a variant is only ever found by a request whose selecting headers match.

use http::header::{self, HeaderMap};

/// The header names of the response's `Vary` fields, lower-cased, in order,
/// without duplicates; empty when the response does not vary.
pub fn names(resp: &HeaderMap) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for v in resp.get_all(header::VARY) {
        let Ok(v) = v.to_str() else { continue };
        for n in v.split(',') {
            let n = n.trim().to_ascii_lowercase();
            if !n.is_empty() && !out.contains(&n) {
                out.push(n);
            }
        }
    }
    out
}

/// One selecting header's value as a key part: its field lines joined by
/// `,`, with the optional whitespace around list items removed (§4.1 allows
/// this normalisation), or absent.
fn normalised(req: &HeaderMap, name: &str) -> Option<String> {
    let mut lines = req.get_all(name).iter().peekable();
    lines.peek()?;
    let mut parts = Vec::new();
    for l in lines {
        let s = String::from_utf8_lossy(l.as_bytes()).into_owned();
        parts.extend(
            s.split(',')
                .map(|p| p.split_whitespace().collect::<Vec<_>>().join(" ")),
        );
    }
    Some(parts.join(","))
}

/// The secondary key: for each name, `\n name: value` (or `name` alone when
/// absent, so an absent header and an empty one differ).
pub fn secondary_key(names: &[String], req: &HeaderMap) -> String {
    let mut k = String::new();
    for n in names {
        k.push('\n');
        k.push_str(n);
        if let Some(v) = normalised(req, n) {
            k.push_str(": ");
            k.push_str(&v);
        }
    }
    k
}

/// The header of a vary record naming its generation: variants are stored
/// under keys that include it, so replacing the record (an invalidation,
/// RFC 9111 §4.4) leaves every old variant unreachable at once, without
/// finding them (they age out of the index as unused entries do).
pub const GENERATION: &str = "generation";

/// A fresh generation: unique per process and, by the clock, across workers.
pub fn new_generation() -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{t:x}.{:x}.{n:x}", std::process::id())
}

/// The key a variant is stored under: the primary key, the record's
/// generation (`\n@`, a character no header name has; none for records
/// written before generations existed), then the secondary key.
pub fn variant_key(primary: &str, generation: Option<&str>, names: &[String], req: &HeaderMap) -> String {
    let mut k = String::from(primary);
    if let Some(g) = generation {
        k.push_str("\n@");
        k.push_str(g);
    }
    k.push_str(&secondary_key(names, req));
    k
}

/// Encodes a vary record (the body of the primary key's marker entry).
pub fn encode_record(names: &[String]) -> Vec<u8> {
    names.join(",").into_bytes()
}

/// Decodes a vary record; `None` if it is not one.
pub fn decode_record(b: &[u8]) -> Option<Vec<String>> {
    let s = std::str::from_utf8(b).ok()?;
    let names: Vec<String> = s.split(',').map(str::to_string).collect();
    names
        .iter()
        .all(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_graphic() && b != b':'))
        .then_some(names)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn h(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.append(*k, HeaderValue::from_str(v).unwrap());
        }
        m
    }

    #[test]
    fn names_are_lowercased_and_deduplicated() {
        let r = h(&[
            ("vary", "Accept-Language, accept-encoding"),
            ("vary", "ACCEPT-LANGUAGE"),
        ]);
        assert_eq!(names(&r), vec!["accept-language", "accept-encoding"]);
        assert!(names(&h(&[])).is_empty());
    }

    #[test]
    fn secondary_keys_tell_variants_apart_and_ignore_whitespace() {
        let n = vec!["accept-language".to_string()];
        let fr = secondary_key(&n, &h(&[("accept-language", "fr")]));
        let en = secondary_key(&n, &h(&[("accept-language", "en")]));
        let none = secondary_key(&n, &h(&[]));
        let empty = secondary_key(&n, &h(&[("accept-language", "")]));
        assert_ne!(fr, en);
        assert_ne!(none, empty);
        assert_eq!(
            secondary_key(&n, &h(&[("accept-language", "fr,  en")])),
            secondary_key(&n, &h(&[("accept-language", "fr"), ("accept-language", "en")]))
        );
    }

    #[test]
    fn generations_tell_variant_keys_apart() {
        let n = vec!["accept-language".to_string()];
        let req = h(&[("accept-language", "fr")]);
        let (g1, g2) = (new_generation(), new_generation());
        assert_ne!(g1, g2);
        let k1 = variant_key("p", Some(&g1), &n, &req);
        assert_ne!(k1, variant_key("p", Some(&g2), &n, &req));
        assert_eq!(k1.split('\n').next(), Some("p"));
        assert_eq!(
            variant_key("p", None, &n, &req),
            format!("p{}", secondary_key(&n, &req))
        );
    }

    #[test]
    fn records_round_trip_and_reject_garbage() {
        let n = vec!["accept-language".to_string(), "cookie".to_string()];
        assert_eq!(decode_record(&encode_record(&n)), Some(n));
        assert_eq!(decode_record(b"a:b"), None);
        assert_eq!(decode_record(b""), None);
    }
}
