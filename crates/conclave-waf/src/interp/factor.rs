//! Necessary factors of a regular expression: a set of strings (often single bytes) one of
//! which every match contains. Used by the prefilters (`prefilter.rs`) for the `@rx` patterns
//! whose prefix and suffix literal sets are infinite or empty (`(?:^|[\\/])\.\.`,
//! `^\(\s*\)\s+{`, `[oOcC]:\d+:\".+?\":\d+:{.*}`): a value holding none of the strings of
//! the factor cannot match, whatever the rest of the pattern says.
//!
//! Derived from the pattern's `regex-syntax` HIR, as Rust's engine reads it:
//! - a literal is its own factor; a class is the set of its bytes (one string each);
//! - a concatenation may use the factor of any one member that must match at least one byte
//!   (all of its matches contain that member's match), or, for a run of members that each
//!   match one of a few exact strings, every concatenation of those (`(?i)eval` → `eval`);
//! - an alternation needs one factor per branch: the union;
//! - a repetition with a minimum of at least one has its child's factor;
//! - what may match the empty string (a minimum of zero, anchors, word boundaries) has none.
//!
//! Strings are compared ASCII-case-insensitively by the scan (a superset of what a
//! case-sensitive pattern matches, so still exact for skipping). Among the candidate factors
//! of a concatenation the one least likely in benign text wins ([`cost`]).

use regex_syntax::hir::{Class, Hir, HirKind};

/// A factor larger than this is a poor prefilter (and a big automaton).
const MAX_STRINGS: usize = 300;
/// Exact-string sets (for runs of a concatenation) larger than this are not expanded.
const MAX_EXACT: usize = 64;

/// Every match of the pattern contains one of these (non-empty, lowercase, deduplicated).
pub(crate) type Factor = Vec<Vec<u8>>;

/// The best necessary factor of `pattern` as Rust's `regex` (bytes, Unicode off, `(?sm)`) reads
/// it, or `None` when some match may contain none of any small set of strings.
pub(crate) fn necessary_factor(pattern: &str) -> Option<Factor> {
    let hir = crate::operator::parse_as_rust(pattern)?;
    necessary(&hir)
}

/// How likely a benign value is to contain one of `f`'s strings (a rough estimate: letters,
/// digits and the usual separators are common, other punctuation rare; longer strings rarer).
pub(crate) fn cost(f: &Factor) -> f64 {
    f.iter()
        .map(|s| s.iter().map(|&b| byte_commonness(b)).product::<f64>())
        .sum()
}

fn byte_commonness(b: u8) -> f64 {
    match b {
        b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' => 0.3,
        b' ' | b'/' | b'.' | b'-' | b'_' | b'=' | b';' | b',' | b':' | b'(' | b')' | b'+' | b'%' | b'&' => {
            0.2
        }
        _ => 0.02,
    }
}

fn normalize(mut f: Factor) -> Option<Factor> {
    for s in &mut f {
        s.make_ascii_lowercase();
    }
    f.sort();
    f.dedup();
    (!f.is_empty() && f.len() <= MAX_STRINGS && f.iter().all(|s| !s.is_empty())).then_some(f)
}

/// The bytes of a class, or `None` for a class with non-ASCII code points (not expected with
/// Unicode off, handled as "no factor").
fn class_bytes(c: &Class) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    match c {
        Class::Bytes(b) => {
            for r in b.ranges() {
                out.extend(r.start()..=r.end());
            }
        }
        Class::Unicode(u) => {
            for r in u.ranges() {
                let (s, e) = (r.start() as u32, r.end() as u32);
                if e > 0x7f {
                    return None;
                }
                out.extend(s as u8..=e as u8);
            }
        }
    }
    Some(out)
}

fn necessary(h: &Hir) -> Option<Factor> {
    match h.kind() {
        HirKind::Empty | HirKind::Look(_) => None,
        HirKind::Literal(l) => normalize(vec![l.0.to_vec()]),
        HirKind::Class(c) => normalize(class_bytes(c)?.into_iter().map(|b| vec![b]).collect()),
        HirKind::Repetition(r) if r.min >= 1 => necessary(&r.sub),
        HirKind::Repetition(_) => None,
        HirKind::Capture(c) => necessary(&c.sub),
        HirKind::Alternation(alts) => {
            let mut all = Vec::new();
            for a in alts {
                all.extend(necessary(a)?);
            }
            normalize(all)
        }
        HirKind::Concat(subs) => {
            let mut best: Option<Factor> = None;
            let mut consider = |f: Option<Factor>| {
                if let Some(f) = f {
                    if best.as_ref().is_none_or(|b| cost(&f) < cost(b)) {
                        best = Some(f);
                    }
                }
            };
            // A run of exact members: every match holds one concatenation of theirs.
            let mut run: Option<Vec<Vec<u8>>> = None;
            for s in subs {
                consider(necessary(s));
                match exact(s) {
                    Some(e) => {
                        run = Some(match run.take() {
                            None => e,
                            Some(prev) => match cross(&prev, &e) {
                                Some(c) => c,
                                None => {
                                    consider(normalize(prev));
                                    e
                                }
                            },
                        });
                    }
                    None => {
                        if let Some(prev) = run.take() {
                            consider(normalize(prev));
                        }
                    }
                }
            }
            if let Some(prev) = run {
                consider(normalize(prev));
            }
            best
        }
    }
}

fn cross(a: &[Vec<u8>], b: &[Vec<u8>]) -> Option<Vec<Vec<u8>>> {
    if a.len() * b.len() > MAX_EXACT {
        return None;
    }
    let mut out = Vec::with_capacity(a.len() * b.len());
    for x in a {
        for y in b {
            let mut s = x.clone();
            s.extend_from_slice(y);
            out.push(s);
        }
    }
    Some(out)
}

/// The exact strings `h` matches, when they are few (lowercased: classes that differ only in
/// case fold to one string).
fn exact(h: &Hir) -> Option<Vec<Vec<u8>>> {
    let out = match h.kind() {
        HirKind::Literal(l) => vec![l.0.to_ascii_lowercase()],
        HirKind::Class(c) => {
            let mut b: Vec<u8> = class_bytes(c)?.iter().map(u8::to_ascii_lowercase).collect();
            b.sort_unstable();
            b.dedup();
            b.into_iter().map(|b| vec![b]).collect()
        }
        HirKind::Capture(c) => exact(&c.sub)?,
        HirKind::Concat(subs) => {
            let mut acc = vec![Vec::new()];
            for s in subs {
                acc = cross(&acc, &exact(s)?)?;
            }
            acc
        }
        HirKind::Alternation(alts) => {
            let mut all = Vec::new();
            for a in alts {
                all.extend(exact(a)?);
            }
            all
        }
        _ => return None,
    };
    let mut out = out;
    out.sort();
    out.dedup();
    (out.len() <= MAX_EXACT).then_some(out)
}

/// A pattern in `regex-syntax`'s syntax that matches every string PCRE2 (without UTF) matches
/// with `pcre` — possibly more — for the factors of the patterns that run on PCRE2. `None`
/// when the pattern uses a construct this does not translate (back-references, `\Q..\E`,
/// conditionals, recursion, `(?x)`, octal escapes, non-ASCII bytes...): no prefilter then.
///
/// - zero-width assertions (`(?=..)`, `(?!..)`, `(?<=..)`, `(?<!..)`, `\K`, `\Z`) are dropped:
///   a match of the pattern is a match without them;
/// - possessive quantifiers and atomic groups become ordinary ones (a possessive match is
///   also a backtracking match);
/// - PCRE's literal readings are spelled out: a `{` that does not start a quantifier, `\<`,
///   `\>`, `[` inside a class; `\v` and `\h` become their byte classes.
pub(crate) fn pcre_superset(pcre: &str) -> Option<String> {
    if !pcre.is_ascii() {
        return None;
    }
    let b = pcre.as_bytes();
    let mut out = String::with_capacity(b.len() + 16);
    let mut i = 0;
    // After a quantifier a `+` makes it possessive.
    let mut after_quantifier = false;
    while i < b.len() {
        let c = b[i];
        if after_quantifier && c == b'+' {
            after_quantifier = false;
            i += 1;
            continue;
        }
        after_quantifier = false;
        match c {
            b'\\' => {
                let e = *b.get(i + 1)?;
                match e {
                    b'<' | b'>' => out.push(e as char),
                    b'v' => out.push_str(r"[\x0A-\x0D\x85]"),
                    b'h' => out.push_str(r"[\x09\x20\xA0]"),
                    b'K' | b'Z' => {}
                    b'e' => out.push_str(r"\x1B"),
                    b'0'..=b'9'
                    | b'Q'
                    | b'E'
                    | b'R'
                    | b'X'
                    | b'C'
                    | b'G'
                    | b'g'
                    | b'k'
                    | b'N'
                    | b'p'
                    | b'P'
                    | b'c'
                    | b'o' => return None,
                    _ => {
                        out.push('\\');
                        out.push(e as char);
                    }
                }
                i += 2;
            }
            b'{' => match quantifier_len(&b[i..]) {
                Some(n) => {
                    out.push_str(&pcre[i..i + n]);
                    i += n;
                    after_quantifier = true;
                }
                None => {
                    out.push_str(r"\{");
                    i += 1;
                }
            },
            b'}' => {
                out.push_str(r"\}");
                i += 1;
            }
            b'*' | b'+' | b'?' => {
                out.push(c as char);
                i += 1;
                // `a+?` is lazy, `a++` possessive (its `+` dropped above).
                if b.get(i) == Some(&b'?') {
                    out.push('?');
                    i += 1;
                } else {
                    after_quantifier = true;
                }
            }
            b'(' if b.get(i + 1) == Some(&b'?') => {
                let rest = &b[i + 2..];
                if rest.starts_with(b"=")
                    || rest.starts_with(b"!")
                    || rest.starts_with(b"<=")
                    || rest.starts_with(b"<!")
                {
                    i = group_end(b, i)?;
                } else if rest.starts_with(b">") {
                    out.push_str("(?:");
                    i += 3;
                } else if rest.starts_with(b"<") || rest.starts_with(b"P<") || rest.starts_with(b":") {
                    out.push_str("(?");
                    i += 2;
                } else {
                    // Inline flags: only those both read alike.
                    let n = rest.iter().position(|&x| x == b')' || x == b':')?;
                    if !rest[..n]
                        .iter()
                        .all(|x| matches!(x, b'i' | b's' | b'm' | b'U' | b'-'))
                    {
                        return None;
                    }
                    out.push_str("(?");
                    i += 2;
                }
            }
            b'[' => {
                let (class, n) = class_superset(&b[i..])?;
                out.push_str(&class);
                i += n;
            }
            _ => {
                out.push(c as char);
                i += 1;
            }
        }
    }
    Some(out)
}

/// The length of a PCRE quantifier `{n}`, `{n,}` or `{n,m}` at the start of `b`.
fn quantifier_len(b: &[u8]) -> Option<usize> {
    let mut i = 1;
    let digits = |i: &mut usize| {
        let s = *i;
        while b.get(*i).is_some_and(u8::is_ascii_digit) {
            *i += 1;
        }
        *i > s
    };
    if !digits(&mut i) {
        return None;
    }
    if b.get(i) == Some(&b',') {
        i += 1;
        digits(&mut i);
    }
    (b.get(i) == Some(&b'}')).then_some(i + 1)
}

/// The index after the group opening at `b[start]` (escapes and classes skipped).
fn group_end(b: &[u8], start: usize) -> Option<usize> {
    let mut depth = 0usize;
    let mut i = start;
    while i < b.len() {
        match b[i] {
            b'\\' => i += 1,
            b'[' => {
                let (_, n) = class_superset(&b[i..])?;
                i += n;
                continue;
            }
            b'(' => depth += 1,
            b')' => {
                depth -= 1;
                if depth == 0 {
                    return Some(i + 1);
                }
            }
            _ => {}
        }
        i += 1;
    }
    None
}

/// A PCRE class at the start of `b` in `regex-syntax`'s syntax, and its length in `b`.
fn class_superset(b: &[u8]) -> Option<(String, usize)> {
    let mut out = String::from("[");
    let mut i = 1;
    if b.get(i) == Some(&b'^') {
        out.push('^');
        i += 1;
    }
    // A `]` first in a class is a literal.
    if b.get(i) == Some(&b']') {
        out.push_str(r"\]");
        i += 1;
    }
    loop {
        let c = *b.get(i)?;
        match c {
            b']' => {
                out.push(']');
                return Some((out, i + 1));
            }
            b'\\' => {
                let e = *b.get(i + 1)?;
                match e {
                    b'<' | b'>' => out.push(e as char),
                    b'v' => out.push_str(r"\x0A-\x0D\x85"),
                    b'h' => out.push_str(r"\x09\x20\xA0"),
                    b'b' => out.push_str(r"\x08"),
                    b'e' => out.push_str(r"\x1B"),
                    b'0'..=b'9' | b'Q' | b'E' | b'p' | b'P' | b'c' | b'o' | b'N' => return None,
                    _ => {
                        out.push('\\');
                        out.push(e as char);
                    }
                }
                i += 2;
            }
            b'[' if b.get(i + 1) == Some(&b':') => {
                let end = b[i..].windows(2).position(|w| w == b":]")?;
                out.push_str(std::str::from_utf8(&b[i..i + end + 2]).ok()?);
                i += end + 2;
            }
            b'[' | b'&' | b'~' => {
                out.push('\\');
                out.push(c as char);
                i += 1;
            }
            b'-' if b.get(i + 1) == Some(&b'-') => return None,
            _ => {
                out.push(c as char);
                i += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The best necessary factor of a pattern that runs on PCRE2.
    fn pcre_necessary_factor(pcre: &str) -> Option<Factor> {
        necessary_factor(&pcre_superset(pcre)?)
    }

    fn f(p: &str) -> Option<Vec<String>> {
        necessary_factor(p).map(|f| f.into_iter().map(|s| String::from_utf8(s).unwrap()).collect())
    }

    #[test]
    fn factors_of_crs_shapes() {
        assert_eq!(f(r"(?:^|[\\/])\.\.(?:[\\/]|$)"), Some(vec!["..".into()]));
        // `{` unescaped: not Rust syntax (the pattern runs on PCRE2).
        assert_eq!(f(r"^\(\s*\)\s+{"), None);
        assert_eq!(f(r#"[oOcC]:\d+:\".+?\":\d+:\{.*\}"#), Some(vec![":\"".into()]));
        assert_eq!(
            f(r"(?i)x(?:eval|exec)\("),
            Some(vec!["xeval(".into(), "xexec(".into()])
        );
        let p = |p: &str| {
            pcre_necessary_factor(p).map(|f| {
                f.into_iter()
                    .map(|s| String::from_utf8(s).unwrap())
                    .collect::<Vec<_>>()
            })
        };
        assert_eq!(p(r"^\(\s*\)\s+{"), Some(vec!["{".into()]));
        assert_eq!(p(r#"[oOcC]:\d+:\".+?\":\d+:{.*}"#), Some(vec![":\"".into()]));
        assert_eq!(p(r"(?<!&(?:amp))x\<y"), Some(vec!["x<y".into()]));
        assert_eq!(p(r"a++b{2}c*+"), Some(vec!["a".into()]));
        assert_eq!(p(r"(\w)\1"), None);
        assert_eq!(f(r"a|[<>]"), Some(vec!["<".into(), ">".into(), "a".into()]));
        assert_eq!(f(r"a?"), None);
        assert_eq!(f(r"^$"), None);
        assert_eq!(f(r"(?:a|b?)c*"), None);
        assert_eq!(
            f(r"\w+"),
            Some(
                (b'0'..=b'9')
                    .chain(b'_'..=b'_')
                    .chain(b'a'..=b'z')
                    .map(|b| (b as char).to_string())
                    .collect()
            )
        );
    }
}
