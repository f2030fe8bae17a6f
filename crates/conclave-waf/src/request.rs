//! The request as the WAF sees it, and the variables ModSecurity derives from it (parsed the way
//! libmodsecurity 3 does: `ARGS` from the raw query split on `&` then at the first `=`, each part
//! decoded with `+` → space and valid `%XX`; `REQUEST_URI` and `REQUEST_FILENAME` `%XX`-decoded).

use std::ops::Range;

/// The parts of an HTTP request the rules can inspect. Borrowed, so building one per request costs
/// nothing; header names compare case-insensitively.
#[derive(Debug, Clone, Copy)]
pub struct RequestView<'a> {
    /// The request method, for example `GET`.
    pub method: &'a str,
    /// The raw request target as received (`/path?query`), not decoded.
    pub uri: &'a str,
    /// Request headers in arrival order, as (name, value).
    pub headers: &'a [(&'a str, &'a [u8])],
}

/// Scratch buffers bigger than this are freed rather than kept for the next request.
const MAX_KEPT: usize = 1 << 20;

/// Per-thread working memory for one check, reused so a check does not allocate once warm.
#[derive(Default)]
pub(crate) struct Scratch {
    /// Decoded bytes: URI forms, argument names and values.
    pub arena: Vec<u8>,
    /// Query arguments as (name, value) ranges into `arena`.
    pub args: Vec<(Range<usize>, Range<usize>)>,
    /// `REQUEST_URI` in `arena`.
    pub request_uri: Range<usize>,
    /// `REQUEST_FILENAME` in `arena`.
    pub filename: Range<usize>,
    /// Transformation output.
    pub tbuf: Vec<u8>,
    /// Matched condition ids.
    pub matched: Vec<u32>,
    /// Candidate rule indexes.
    pub rules: Vec<u32>,
}

impl Scratch {
    /// Derives the variables of `req` (clearing what the previous request left).
    pub fn extract(&mut self, req: &RequestView<'_>) {
        // One huge request must not pin its buffers to this thread for good.
        if self.arena.capacity() > MAX_KEPT
            || self.tbuf.capacity() > MAX_KEPT
            || self.matched.capacity() > MAX_KEPT
        {
            *self = Scratch::default();
        }
        self.arena.clear();
        self.args.clear();
        self.tbuf.clear();
        self.matched.clear();
        self.rules.clear();
        let uri = req.uri.as_bytes();

        // m_uri_decoded: %XX only.
        let dec_start = self.arena.len();
        uri_decode_into(uri, &mut self.arena);
        let dec = dec_start..self.arena.len();
        let decoded = &self.arena[dec.clone()];

        // REQUEST_FILENAME: the decoded URI up to its first '?'.
        let fname_end = decoded
            .iter()
            .position(|&c| c == b'?')
            .map_or(dec.end, |p| dec.start + p);
        self.filename = dec.start..fname_end;

        // REQUEST_URI: the decoded URI, minus `scheme://host` for an absolute-form target.
        self.request_uri = dec.start + parsed_uri_offset(decoded)..dec.end;

        // ARGS from the raw query string.
        if let Some(q) = uri.iter().position(|&c| c == b'?') {
            let query = &uri[q + 1..];
            if !query.is_empty() {
                self.extract_args(query);
            }
        }
    }

    fn extract_args(&mut self, query: &[u8]) {
        // std::getline semantics: a trailing separator yields no final empty piece.
        let query = query.strip_suffix(b"&").unwrap_or(query);
        for piece in query.split(|&c| c == b'&') {
            let (k, v) = match piece.iter().position(|&c| c == b'=') {
                Some(i) => (&piece[..i], &piece[i + 1..]),
                None => (piece, &b""[..]),
            };
            let ks = self.arena.len();
            url_decode_nonstrict_into(k, &mut self.arena);
            let vs = self.arena.len();
            url_decode_nonstrict_into(v, &mut self.arena);
            self.args.push((ks..vs, vs..self.arena.len()));
        }
    }
}

/// Where ModSecurity's `REQUEST_URI` starts in the decoded URI (reproducing its absolute-URI
/// check, including its quirks).
/// `REQUEST_URI` and `REQUEST_FILENAME` of a request target, as [`Scratch::extract`] derives
/// them, without its argument parsing (the interpreter parses arguments its own way).
pub(crate) fn uri_and_filename(uri: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let mut decoded = Vec::with_capacity(uri.len());
    uri_decode_into(uri, &mut decoded);
    let fname_end = decoded.iter().position(|&c| c == b'?').unwrap_or(decoded.len());
    let filename = decoded[..fname_end].to_vec();
    let off = parsed_uri_offset(&decoded);
    decoded.drain(..off);
    (decoded, filename)
}

fn parsed_uri_offset(d: &[u8]) -> usize {
    if d.is_empty() || d[0] == b'/' {
        return 0;
    }
    // scheme = find(":") + 1, where a missing ':' wraps npos to 0.
    let scheme = find(d, b":", 0).map_or(0, |p| p + 1);
    let Some(p) = find(d, b"//", scheme) else { return 0 };
    let netloc = p + 2;
    if netloc != scheme + 2 {
        return 0;
    }
    find(d, b"/", netloc).unwrap_or(0)
}

fn find(h: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    if from > h.len() {
        return None;
    }
    h[from..]
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| p + from)
}

fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// ModSecurity's `uri_decode`: valid `%XX` decoded, everything else (including `+`) kept.
pub(crate) fn uri_decode_into(s: &[u8], out: &mut Vec<u8>) {
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'%' && i + 2 < s.len() {
            if let (Some(a), Some(b)) = (hex_val(s[i + 1]), hex_val(s[i + 2])) {
                out.push(a << 4 | b);
                i += 3;
                continue;
            }
        }
        out.push(s[i]);
        i += 1;
    }
}

/// ModSecurity's `urldecode_nonstrict`: `+` → space, valid `%XX` decoded, invalid `%` kept.
pub(crate) fn url_decode_nonstrict_into(s: &[u8], out: &mut Vec<u8>) {
    let mut i = 0;
    while i < s.len() {
        match s[i] {
            b'%' if i + 2 < s.len() => {
                if let (Some(a), Some(b)) = (hex_val(s[i + 1]), hex_val(s[i + 2])) {
                    out.push(a << 4 | b);
                    i += 3;
                } else {
                    out.push(b'%');
                    i += 1;
                }
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
}

/// In-place `t:urlDecode` (the output is never longer than the input).
pub(crate) fn url_decode_in_place(buf: &mut Vec<u8>) {
    let mut r = 0;
    let mut w = 0;
    let n = buf.len();
    while r < n {
        let c = buf[r];
        if c == b'%' && r + 2 < n {
            if let (Some(a), Some(b)) = (hex_val(buf[r + 1]), hex_val(buf[r + 2])) {
                buf[w] = a << 4 | b;
                w += 1;
                r += 3;
                continue;
            }
        }
        buf[w] = if c == b'+' { b' ' } else { c };
        w += 1;
        r += 1;
    }
    buf.truncate(w);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(uri: &str) -> Vec<(String, String)> {
        let mut s = Scratch::default();
        s.extract(&RequestView {
            method: "GET",
            uri,
            headers: &[],
        });
        s.args
            .iter()
            .map(|(k, v)| {
                (
                    String::from_utf8_lossy(&s.arena[k.clone()]).into_owned(),
                    String::from_utf8_lossy(&s.arena[v.clone()]).into_owned(),
                )
            })
            .collect()
    }

    #[test]
    fn query_parsing_matches_modsecurity() {
        let p = |k: &str, v: &str| (k.to_string(), v.to_string());
        assert_eq!(
            args("/a?x=1&y=a+b%41&x=%zz"),
            vec![p("x", "1"), p("y", "a bA"), p("x", "%zz")]
        );
        assert_eq!(
            args("/a?a=b=c&&flag&"),
            vec![p("a", "b=c"), p("", ""), p("flag", "")]
        );
        assert_eq!(args("/a?"), vec![]);
        assert_eq!(args("/a?x=%4"), vec![p("x", "%4")]);
    }

    #[test]
    fn uri_variables_are_decoded() {
        let mut s = Scratch::default();
        s.extract(&RequestView {
            method: "GET",
            uri: "/a%20b+c%3Fd?q=1",
            headers: &[],
        });
        assert_eq!(&s.arena[s.request_uri.clone()], b"/a b+c?d?q=1");
        assert_eq!(&s.arena[s.filename.clone()], b"/a b+c");
        s.extract(&RequestView {
            method: "GET",
            uri: "http://h.example/p?q",
            headers: &[],
        });
        assert_eq!(&s.arena[s.request_uri.clone()], b"/p?q");
    }

    #[test]
    fn url_decode_in_place_matches_nonstrict() {
        for s in ["a+b%41%", "%4", "%%41", "x%zz+", ""] {
            let mut want = Vec::new();
            url_decode_nonstrict_into(s.as_bytes(), &mut want);
            let mut got = s.as_bytes().to_vec();
            url_decode_in_place(&mut got);
            assert_eq!(got, want, "{s}");
        }
    }
}
