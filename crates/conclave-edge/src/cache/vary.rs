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
    fn records_round_trip_and_reject_garbage() {
        let n = vec!["accept-language".to_string(), "cookie".to_string()];
        assert_eq!(decode_record(&encode_record(&n)), Some(n));
        assert_eq!(decode_record(b"a:b"), None);
        assert_eq!(decode_record(b""), None);
    }
}
