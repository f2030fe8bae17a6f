//! Request-body processors for phase 2, named as ModSecurity v3 names their results:
//! `URLENCODED` (arguments split on the argument separator), `JSON` (one argument per leaf, named
//! `json.a.b`, array members `json.a.array_0`), `MULTIPART` (form fields as arguments, file parts in
//! `FILES`/`FILES_NAMES`, part headers in `MULTIPART_PART_HEADERS`, strict-validation flags).

use crate::request::url_decode_nonstrict_into;

/// A name/value pair of bytes (argument, cookie, header, file).
pub(crate) type Pair = (Vec<u8>, Vec<u8>);

/// Which processor parses the body (`REQBODY_PROCESSOR`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Processor {
    UrlEncoded,
    Multipart,
    Json,
    Xml,
}

impl Processor {
    /// The processor `ctl:requestBodyProcessor=NAME` names.
    pub(crate) fn parse(name: &str) -> Option<Processor> {
        Some(match name.to_ascii_uppercase().as_str() {
            "URLENCODED" => Processor::UrlEncoded,
            "MULTIPART" => Processor::Multipart,
            "JSON" => Processor::Json,
            "XML" => Processor::Xml,
            _ => return None,
        })
    }

    /// What `REQBODY_PROCESSOR` holds.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Processor::UrlEncoded => "URLENCODED",
            Processor::Multipart => "MULTIPART",
            Processor::Json => "JSON",
            Processor::Xml => "XML",
        }
    }

    /// The processor ModSecurity picks from `Content-Type` before any `ctl` changes it.
    pub(crate) fn from_content_type(ct: &[u8]) -> Option<Processor> {
        let ct = ct.to_ascii_lowercase();
        if ct.starts_with(b"application/x-www-form-urlencoded") {
            Some(Processor::UrlEncoded)
        } else if ct.starts_with(b"multipart/form-data") {
            Some(Processor::Multipart)
        } else {
            None
        }
    }
}

/// What a body processor found.
#[derive(Debug, Default)]
pub(crate) struct Parsed {
    pub args: Vec<Pair>,
    /// (form field name, file name) of each file part.
    pub files: Vec<Pair>,
    /// (form field name, size) of each file part.
    pub file_sizes: Vec<(Vec<u8>, usize)>,
    /// Part headers: (the part's form field name, whole `Name: value` line), as
    /// `MULTIPART_PART_HEADERS` holds them.
    pub part_headers: Vec<Pair>,
    /// `REQBODY_ERROR_MSG` when the body could not be parsed.
    pub error: Option<String>,
    pub multipart: MultipartFlags,
}

/// The multipart parser's strict-validation flags (`MULTIPART_*`, 0 or 1).
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct MultipartFlags {
    pub boundary_quoted: bool,
    pub boundary_whitespace: bool,
    pub data_before: bool,
    pub data_after: bool,
    pub header_folding: bool,
    pub lf_line: bool,
    pub missing_semicolon: bool,
    pub invalid_quoting: bool,
    pub invalid_part: bool,
    pub invalid_header_folding: bool,
    pub unmatched_boundary: bool,
}

impl MultipartFlags {
    /// `MULTIPART_STRICT_ERROR`: any flag set (or a parse error).
    pub(crate) fn strict_error(&self) -> bool {
        self.boundary_quoted
            || self.boundary_whitespace
            || self.data_before
            || self.data_after
            || self.header_folding
            || self.lf_line
            || self.missing_semicolon
            || self.invalid_quoting
            || self.invalid_part
            || self.invalid_header_folding
            || self.unmatched_boundary
    }
}

/// Splits `a=1<sep>b=2` into decoded (name, value) pairs as ModSecurity does for query strings and
/// urlencoded bodies (a trailing separator adds nothing, `+` is a space, invalid `%` kept).
pub(crate) fn parse_urlencoded(s: &[u8], sep: u8, out: &mut Vec<Pair>) {
    if s.is_empty() {
        return;
    }
    let s = s.strip_suffix(&[sep]).unwrap_or(s);
    for piece in s.split(|&c| c == sep) {
        let (k, v) = match piece.iter().position(|&c| c == b'=') {
            Some(i) => (&piece[..i], &piece[i + 1..]),
            None => (piece, &b""[..]),
        };
        let mut kd = Vec::with_capacity(k.len());
        url_decode_nonstrict_into(k, &mut kd);
        let mut vd = Vec::with_capacity(v.len());
        url_decode_nonstrict_into(v, &mut vd);
        out.push((kd, vd));
    }
}

/// Runs `processor` over `body` (`content_type` gives the multipart boundary).
pub(crate) fn parse(
    processor: Processor,
    body: &[u8],
    content_type: &[u8],
    sep: u8,
    depth_limit: usize,
) -> Parsed {
    let mut p = Parsed::default();
    match processor {
        Processor::UrlEncoded => parse_urlencoded(body, sep, &mut p.args),
        Processor::Json => parse_json(body, depth_limit, &mut p),
        Processor::Multipart => parse_multipart(body, content_type, &mut p),
        // No XML parser: the body stays available as REQUEST_BODY (see docs/waf.md).
        Processor::Xml => {}
    }
    p
}

fn parse_json(body: &[u8], depth_limit: usize, p: &mut Parsed) {
    use serde::de::DeserializeSeed;
    let mut de = serde_json::Deserializer::from_slice(body);
    let mut name = b"json".to_vec();
    let walk = JsonWalk {
        name: &mut name,
        depth: 0,
        limit: depth_limit,
        out: &mut p.args,
    };
    let r = walk.deserialize(&mut de).and_then(|()| de.end());
    if let Err(e) = r {
        p.error = Some(format!("JSON parsing error: {e}"));
    }
}

/// Walks a JSON document as it is read, emitting one argument per leaf: every member of an object
/// counts, a repeated name included (as libmodsecurity's yajl parser sees them), which a
/// `serde_json::Value` map would fold into one.
struct JsonWalk<'n> {
    name: &'n mut Vec<u8>,
    depth: usize,
    limit: usize,
    out: &'n mut Vec<Pair>,
}

impl<'de> serde::de::DeserializeSeed<'de> for JsonWalk<'_> {
    type Value = ();
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl JsonWalk<'_> {
    fn leaf(self, v: Vec<u8>) {
        self.out.push((self.name.clone(), v));
    }

    fn child(&mut self) -> JsonWalk<'_> {
        JsonWalk {
            name: self.name,
            depth: self.depth + 1,
            limit: self.limit,
            out: self.out,
        }
    }
}

impl<'de> serde::de::Visitor<'de> for JsonWalk<'_> {
    type Value = ();
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<(), E> {
        self.leaf(if v { b"true".to_vec() } else { b"false".to_vec() });
        Ok(())
    }
    fn visit_i64<E>(self, v: i64) -> Result<(), E> {
        self.leaf(v.to_string().into_bytes());
        Ok(())
    }
    fn visit_u64<E>(self, v: u64) -> Result<(), E> {
        self.leaf(v.to_string().into_bytes());
        Ok(())
    }
    fn visit_f64<E>(self, v: f64) -> Result<(), E> {
        self.leaf(
            serde_json::Number::from_f64(v)
                .map_or_else(String::new, |n| n.to_string())
                .into_bytes(),
        );
        Ok(())
    }
    fn visit_str<E>(self, v: &str) -> Result<(), E> {
        self.leaf(v.as_bytes().to_vec());
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        self.leaf(Vec::new());
        Ok(())
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(mut self, mut m: A) -> Result<(), A::Error> {
        if self.depth >= self.limit {
            return Err(serde::de::Error::custom("maximum nesting depth exceeded"));
        }
        let len = self.name.len();
        while let Some(k) = m.next_key::<std::borrow::Cow<'_, str>>()? {
            self.name.push(b'.');
            self.name.extend_from_slice(k.as_bytes());
            m.next_value_seed(self.child())?;
            self.name.truncate(len);
        }
        Ok(())
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(mut self, mut s: A) -> Result<(), A::Error> {
        if self.depth >= self.limit {
            return Err(serde::de::Error::custom("maximum nesting depth exceeded"));
        }
        let len = self.name.len();
        let mut i = 0usize;
        loop {
            self.name.extend_from_slice(format!(".array_{i}").as_bytes());
            let more = s.next_element_seed(self.child())?;
            self.name.truncate(len);
            if more.is_none() {
                break;
            }
            i += 1;
        }
        Ok(())
    }
}

/// The `boundary=` parameter of a multipart `Content-Type`, noting quoting and whitespace.
fn boundary(ct: &[u8], flags: &mut MultipartFlags) -> Option<Vec<u8>> {
    let lower = ct.to_ascii_lowercase();
    let i = find(&lower, b"boundary")?;
    let mut rest = &ct[i + 8..];
    while let [b' ' | b'\t', r @ ..] = rest {
        flags.boundary_whitespace = true;
        rest = r;
    }
    rest = rest.strip_prefix(b"=")?;
    while let [b' ' | b'\t', r @ ..] = rest {
        flags.boundary_whitespace = true;
        rest = r;
    }
    let b = if let Some(q) = rest.strip_prefix(b"\"") {
        flags.boundary_quoted = true;
        let end = q.iter().position(|&c| c == b'"')?;
        &q[..end]
    } else {
        let end = rest
            .iter()
            .position(|&c| c == b';' || c == b',')
            .unwrap_or(rest.len());
        rest[..end].strip_suffix(b" ").unwrap_or(&rest[..end])
    };
    if b.is_empty() {
        None
    } else {
        Some(b.to_vec())
    }
}

fn find(h: &[u8], n: &[u8]) -> Option<usize> {
    h.windows(n.len()).position(|w| w == n)
}

fn parse_multipart(body: &[u8], ct: &[u8], p: &mut Parsed) {
    let Some(b) = boundary(ct, &mut p.multipart) else {
        p.error = Some("Multipart: boundary not found in C-T".into());
        return;
    };
    let mut delim = b"--".to_vec();
    delim.extend_from_slice(&b);
    let Some(first) = find(body, &delim) else {
        p.multipart.unmatched_boundary = true;
        p.error = Some("Multipart: final boundary missing".into());
        return;
    };
    if body[..first].iter().any(|c| !c.is_ascii_whitespace()) {
        p.multipart.data_before = true;
    }
    let mut pos = first + delim.len();
    let mut finished = false;
    while pos <= body.len() {
        let rest = &body[pos..];
        if rest.starts_with(b"--") {
            finished = true;
            if rest[2..].iter().any(|c| !c.is_ascii_whitespace()) {
                p.multipart.data_after = true;
            }
            break;
        }
        let rest = match rest.strip_prefix(b"\r\n") {
            Some(r) => r,
            None => match rest.strip_prefix(b"\n") {
                Some(r) => {
                    p.multipart.lf_line = true;
                    r
                }
                None => {
                    p.multipart.invalid_part = true;
                    break;
                }
            },
        };
        let start = body.len() - rest.len();
        let Some(next) = find(rest, &delim) else {
            p.multipart.unmatched_boundary = true;
            break;
        };
        let mut part = &rest[..next];
        part = part
            .strip_suffix(b"\r\n")
            .or_else(|| part.strip_suffix(b"\n"))
            .unwrap_or(part);
        multipart_part(part, p);
        pos = start + next + delim.len();
    }
    if !finished {
        p.error
            .get_or_insert_with(|| "Multipart: final boundary missing".into());
        p.multipart.unmatched_boundary = true;
    }
}

fn multipart_part(part: &[u8], p: &mut Parsed) {
    let (head, data) = match find(part, b"\r\n\r\n") {
        Some(i) => (&part[..i], &part[i + 4..]),
        None => match find(part, b"\n\n") {
            Some(i) => {
                p.multipart.lf_line = true;
                (&part[..i], &part[i + 2..])
            }
            None => {
                p.multipart.invalid_part = true;
                return;
            }
        },
    };
    let mut name: Option<Vec<u8>> = None;
    let mut filename: Option<Vec<u8>> = None;
    let mut lines: Vec<Vec<u8>> = Vec::new();
    for line in head.split(|&c| c == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            continue;
        }
        if line[0] == b' ' || line[0] == b'\t' {
            p.multipart.header_folding = true;
            continue;
        }
        let Some(colon) = line.iter().position(|&c| c == b':') else {
            p.multipart.invalid_part = true;
            continue;
        };
        let hname = &line[..colon];
        lines.push(line.to_vec());
        if hname.eq_ignore_ascii_case(b"content-disposition") {
            let v = &line[colon + 1..];
            for param in v.split(|&c| c == b';').skip(1) {
                let param = trim(param);
                let Some(eq) = param.iter().position(|&c| c == b'=') else {
                    continue;
                };
                let (k, mut val) = (trim(&param[..eq]), trim(&param[eq + 1..]));
                if let Some(q) = val.strip_prefix(b"\"") {
                    match q.strip_suffix(b"\"") {
                        Some(q) => val = q,
                        None => {
                            p.multipart.invalid_quoting = true;
                            val = q;
                        }
                    }
                } else if val.contains(&b'\'') {
                    p.multipart.invalid_quoting = true;
                }
                if k.eq_ignore_ascii_case(b"name") {
                    name = Some(val.to_vec());
                } else if k.eq_ignore_ascii_case(b"filename") {
                    filename = Some(val.to_vec());
                }
            }
            if !v.contains(&b';') {
                p.multipart.missing_semicolon = true;
            }
        }
    }
    let Some(name) = name else {
        p.multipart.invalid_part = true;
        return;
    };
    p.part_headers
        .extend(lines.into_iter().map(|l| (name.clone(), l)));
    match filename {
        Some(f) => {
            p.file_sizes.push((name.clone(), data.len()));
            p.files.push((name, f));
        }
        None => p.args.push((name, data.to_vec())),
    }
}

fn trim(s: &[u8]) -> &[u8] {
    let s = match s.iter().position(|c| !c.is_ascii_whitespace()) {
        Some(i) => &s[i..],
        None => return &[],
    };
    let e = s
        .iter()
        .rposition(|c| !c.is_ascii_whitespace())
        .map_or(0, |i| i + 1);
    &s[..e]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(p: &Parsed) -> Vec<(String, String)> {
        p.args
            .iter()
            .map(|(k, v)| {
                (
                    String::from_utf8_lossy(k).into_owned(),
                    String::from_utf8_lossy(v).into_owned(),
                )
            })
            .collect()
    }

    #[test]
    fn json_leaves_are_named_like_modsecurity() {
        let p = parse(
            Processor::Json,
            br#"{"a":{"b":"x"},"c":[1,true,null],"d":"e"}"#,
            b"application/json",
            b'&',
            512,
        );
        let n = names(&p);
        assert!(n.contains(&("json.a.b".into(), "x".into())));
        assert!(n.contains(&("json.c.array_0".into(), "1".into())));
        assert!(n.contains(&("json.c.array_1".into(), "true".into())));
        assert!(n.contains(&("json.d".into(), "e".into())));
        assert!(p.error.is_none());
        // Every occurrence of a repeated name is an argument.
        let dup = parse(Processor::Json, br#"{"a":"x","a":"y"}"#, b"", b'&', 512);
        assert_eq!(
            names(&dup),
            vec![("json.a".into(), "x".into()), ("json.a".into(), "y".into())]
        );
        let bad = parse(Processor::Json, b"{\"a\":", b"", b'&', 512);
        assert!(bad.error.is_some());
    }

    #[test]
    fn multipart_fields_and_files() {
        let body = b"--XyZ\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nhello\r\n--XyZ\r\nContent-Disposition: form-data; name=\"f\"; filename=\"x.php\"\r\nContent-Type: text/plain\r\n\r\n<?php\r\n--XyZ--\r\n";
        let p = parse(
            Processor::Multipart,
            body,
            b"multipart/form-data; boundary=XyZ",
            b'&',
            512,
        );
        assert_eq!(names(&p), vec![("a".to_string(), "hello".to_string())]);
        assert_eq!(p.files, vec![(b"f".to_vec(), b"x.php".to_vec())]);
        assert_eq!(p.file_sizes, vec![(b"f".to_vec(), 5)]);
        assert_eq!(p.part_headers.len(), 3);
        assert!(!p.multipart.strict_error(), "{:?}", p.multipart);
        assert!(p.error.is_none());
        let p = parse(
            Processor::Multipart,
            b"--XyZ\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nx",
            b"multipart/form-data; boundary=XyZ",
            b'&',
            512,
        );
        assert!(p.multipart.unmatched_boundary);
    }

    #[test]
    fn urlencoded_body_uses_the_separator() {
        let mut v = Vec::new();
        parse_urlencoded(b"a=1;b=x+y;", b';', &mut v);
        assert_eq!(
            v,
            vec![(b"a".to_vec(), b"1".to_vec()), (b"b".to_vec(), b"x y".to_vec())]
        );
    }
}
