//! `@rx`: libmodsecurity compiles every pattern with PCRE2 (`DOTALL | MULTILINE`, no UTF) and
//! searches once. Patterns Rust's `regex` reads the same way run on its automata (fast, no
//! backtracking blow-up); the rest (look-around, back-references, possessive quantifiers,
//! constructs `regex` would read differently) run on PCRE2 itself, the library libmodsecurity
//! links, so the semantics are the same by construction.

use std::sync::{Arc, Mutex};

use super::OpContext;

/// One compiled pattern.
#[derive(Debug)]
enum Engine {
    /// `.*` or `^.*$` (with PCRE's DOTALL and MULTILINE as libmodsecurity compiles them):
    /// always matches the whole input at offset 0 (`.*` takes every byte, `$` holds at the
    /// end), so group 0 is the input and there is no other group. Rule 920450 runs it with
    /// `capture` on every header name; this skips a regex search and a copy per name.
    WholeInput,
    Rust(regex::bytes::Regex),
    Pcre(pcre2::bytes::Regex),
}

impl Engine {
    fn compile(pattern: &str) -> Result<Engine, String> {
        // libmodsecurity replaces an empty pattern by ".*".
        let pattern = if pattern.is_empty() { ".*" } else { pattern };
        if pattern == ".*" || pattern == "^.*$" {
            return Ok(Engine::WholeInput);
        }
        let same = match rust_reading(pattern) {
            Reading::Same => true,
            Reading::SameUnlessEmptyAtEnd => never_empty(pattern),
            Reading::Differs => false,
        };
        if same {
            let built = regex::bytes::RegexBuilder::new(pattern)
                .unicode(false)
                .dot_matches_new_line(true)
                .multi_line(true)
                .build();
            if let Ok(re) = built {
                return Ok(Engine::Rust(re));
            }
        }
        pcre2::bytes::RegexBuilder::new()
            .dotall(true)
            .multi_line(true)
            .jit_if_available(true)
            .build(pattern)
            .map(Engine::Pcre)
            .map_err(|e| format!("@rx {pattern:?}: {e}"))
    }

    /// Searches once; calls `found(group, bytes)` for every set group when `want` is set.
    fn search(&self, input: &[u8], want: bool, found: &mut dyn FnMut(usize, &[u8])) -> bool {
        match self {
            Engine::WholeInput => {
                if want {
                    found(0, input);
                }
                true
            }
            Engine::Rust(re) => {
                // Most values do not match: the capture machinery (an allocation per search)
                // only runs for those that do.
                if !re.is_match(input) {
                    return false;
                }
                if !want {
                    return true;
                }
                let Some(caps) = re.captures(input) else {
                    return false;
                };
                for (i, m) in caps.iter().enumerate() {
                    if let Some(m) = m {
                        found(i, m.as_bytes());
                    }
                }
                true
            }
            Engine::Pcre(re) => {
                // A match error (match or JIT stack limit) is "no match" in libmodsecurity.
                if !re.is_match(input).unwrap_or(false) {
                    return false;
                }
                if !want {
                    return true;
                }
                let Ok(Some(caps)) = re.captures(input) else {
                    return false;
                };
                for i in 0..caps.len() {
                    if let Some(m) = caps.get(i) {
                        found(i, m.as_bytes());
                    }
                }
                true
            }
        }
    }
}

/// A parsed `@rx`.
#[derive(Debug)]
pub(crate) struct Rx {
    source: Box<str>,
    /// `None` when the pattern holds macros: compiled per distinct expansion.
    fixed: Option<Engine>,
    /// The last macro expansion and its compiled pattern (values like `%{tx.allowed_x}` rarely
    /// change between requests).
    last: Mutex<Option<(String, Arc<Engine>)>>,
}

impl Rx {
    pub(crate) fn new(pattern: &str) -> Result<Rx, String> {
        let fixed = if pattern.contains("%{") {
            None
        } else {
            Some(Engine::compile(pattern)?)
        };
        Ok(Rx {
            source: pattern.into(),
            fixed,
            last: Mutex::new(None),
        })
    }

    /// The pattern as written (with its macros, if any).
    pub(crate) fn source(&self) -> &str {
        &self.source
    }

    /// The pattern when it has no macros.
    pub(crate) fn fixed_pattern(&self) -> Option<&str> {
        self.fixed.as_ref().map(|_| &*self.source)
    }

    /// The pattern when it has no macros and runs on Rust's automata (its `regex-syntax`
    /// reading is then the one that decides, so literals extracted from it are exact).
    pub(crate) fn rust_pattern(&self) -> Option<&str> {
        match &self.fixed {
            Some(Engine::Rust(_)) => Some(if self.source.is_empty() {
                ".*"
            } else {
                &self.source
            }),
            _ => None,
        }
    }

    /// Whether this pattern runs on Rust's automata (for tests and statistics).
    #[cfg(test)]
    fn is_rust(&self) -> bool {
        matches!(self.fixed, Some(Engine::Rust(_)))
    }

    pub(crate) fn eval(&self, input: &[u8], ctx: &mut dyn OpContext) -> bool {
        let want = ctx.capture_wanted();
        if let Some(Engine::WholeInput) = self.fixed {
            if want {
                ctx.set_capture(0, input);
            }
            return true;
        }
        let mut caps: Vec<(usize, Vec<u8>)> = Vec::new();
        let mut found = |i: usize, b: &[u8]| caps.push((i, b.to_vec()));
        let hit = match &self.fixed {
            Some(engine) => engine.search(input, want, &mut found),
            None => {
                let expanded = ctx.expand(&self.source).into_owned();
                match self.compiled_for(&expanded) {
                    Some(engine) => engine.search(input, want, &mut found),
                    None => false,
                }
            }
        };
        for (i, v) in &caps {
            ctx.set_capture(*i, v);
        }
        hit
    }

    fn compiled_for(&self, expanded: &str) -> Option<Arc<Engine>> {
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((src, engine)) = last.as_ref() {
            if src == expanded {
                return Some(engine.clone());
            }
        }
        // A pattern that does not compile after expansion never matches (libmodsecurity logs it).
        let engine = Arc::new(Engine::compile(expanded).ok()?);
        *last = Some((expanded.to_string(), engine.clone()));
        Some(engine)
    }
}

/// How Rust's `regex` reads a pattern compared with PCRE2.
#[derive(Debug, PartialEq, Eq)]
enum Reading {
    Same,
    /// Same, except that `^` (multi-line) also matches after a final newline in `regex`: only
    /// a match of zero length at the very end can tell them apart.
    SameUnlessEmptyAtEnd,
    Differs,
}

/// `pattern` as Rust's `regex` reads it for the WAF (bytes, Unicode off, `(?sm)`), or `None`
/// if it does not parse: the one reading shared by the prefilters' literal and factor analyses.
pub(crate) fn parse_as_rust(pattern: &str) -> Option<regex_syntax::hir::Hir> {
    regex_syntax::ParserBuilder::new()
        .unicode(false)
        .utf8(false)
        .dot_matches_new_line(true)
        .multi_line(true)
        .build()
        .parse(pattern)
        .ok()
}

/// Whether every match of `pattern` is at least one byte long (then the `^` difference cannot
/// show).
fn never_empty(pattern: &str) -> bool {
    parse_as_rust(pattern)
        .and_then(|hir| hir.properties().minimum_len())
        .is_some_and(|n| n > 0)
}

/// Whether Rust's `regex` (bytes, Unicode off, `(?sm)`) gives `pattern` the meaning PCRE2 gives
/// it, as far as a syntax scan can tell. Constructs `regex` rejects need no check (they fall back
/// when it fails to compile); this looks for those it *accepts* with another meaning:
/// - `^` in multi-line mode: PCRE2 does not match after a trailing newline, `regex` does (fine
///   when no match can be empty, see [`never_empty`]);
/// - `\v` (PCRE: vertical space class; `regex`: VT only), `\<` `\>` (PCRE: literal; `regex`: word
///   boundaries);
/// - inside a class: `[` (nested class in `regex`), `&&` `--` `~~` (set operations in `regex`);
/// - possessive quantifiers (`a++`): `regex` reads them as nested repetitions;
/// - `(?x)`: `regex` also ignores whitespace inside classes;
/// - non-ASCII bytes: PCRE without UTF reads each byte alone.
fn rust_reading(pattern: &str) -> Reading {
    if !pattern.is_ascii() {
        return Reading::Differs;
    }
    let mut caret = false;
    let b = pattern.as_bytes();
    let mut i = 0;
    let mut in_class = false;
    while i < b.len() {
        let c = b[i];
        match c {
            b'\\' => {
                match b.get(i + 1) {
                    Some(b'v' | b'<' | b'>') => return Reading::Differs,
                    Some(b'Q') => return Reading::Differs,
                    _ => {}
                }
                i += 2;
                continue;
            }
            b'[' if in_class => {
                // POSIX classes `[:alpha:]` read the same.
                if b.get(i + 1) != Some(&b':') {
                    return Reading::Differs;
                }
                match pattern[i + 2..].find(":]") {
                    Some(end) => i += 2 + end + 2,
                    None => return Reading::Differs,
                }
                continue;
            }
            b'[' => {
                in_class = true;
                i += 1;
                if b.get(i) == Some(&b'^') {
                    i += 1;
                }
                // A `]` first in a class is a literal in both.
                if b.get(i) == Some(&b']') {
                    i += 1;
                }
                continue;
            }
            b']' if in_class => in_class = false,
            b'&' | b'-' | b'~' if in_class && b.get(i + 1) == Some(&c) => return Reading::Differs,
            b'^' if !in_class => caret = true,
            // Possessive quantifiers: `regex` reads `a++` as `(a+)+`.
            b'+' | b'*' | b'?' | b'}' if !in_class && b.get(i + 1) == Some(&b'+') => return Reading::Differs,
            b'(' if !in_class && b.get(i + 1) == Some(&b'?') => {
                // Inline flags: only i, s, m, U (same in both) and groups.
                let rest = &b[i + 2..];
                let flags_end = rest
                    .iter()
                    .position(|&x| !(x.is_ascii_alphabetic() || x == b'-'))
                    .unwrap_or(rest.len());
                if rest[..flags_end].contains(&b'x') {
                    return Reading::Differs;
                }
            }
            _ => {}
        }
        i += 1;
    }
    if caret {
        Reading::SameUnlessEmptyAtEnd
    } else {
        Reading::Same
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_ctx::{eval, Ctx};
    use super::*;

    /// `.*`, `^.*$` and the empty pattern take the whole-input path, and it answers as PCRE2
    /// (DOTALL, MULTILINE) does, captures included, on inputs with newlines, NULs and none.
    #[test]
    fn whole_input_patterns_match_pcre2() {
        for pattern in [".*", "^.*$", ""] {
            let rx = Rx::new(pattern).unwrap();
            assert!(matches!(rx.fixed, Some(Engine::WholeInput)), "{pattern}");
            let pcre = pcre2::bytes::RegexBuilder::new()
                .dotall(true)
                .multi_line(true)
                .build(if pattern.is_empty() { ".*" } else { pattern })
                .unwrap();
            for input in [
                &b""[..],
                b"user-agent",
                b"a\nb\n",
                b"\n",
                b"x\0y\r\n",
                b"\xff\xfe",
            ] {
                let mut ctx = Ctx {
                    capture: true,
                    ..Ctx::default()
                };
                assert!(rx.eval(input, &mut ctx));
                let caps = pcre.captures(input).unwrap().unwrap();
                assert_eq!(caps.len(), 1);
                assert_eq!(ctx.captures, vec![(0, caps.get(0).unwrap().as_bytes().to_vec())]);
                assert_eq!(ctx.captures[0].1, input.to_vec());
            }
        }
    }

    #[test]
    fn pcre_only_constructs_fall_back_to_pcre2() {
        assert!(!Rx::new(r"(?<=a)b").unwrap().is_rust());
        assert!(!Rx::new(r"(a)\1").unwrap().is_rust());
        assert!(!Rx::new(r"a++b").unwrap().is_rust());
        assert!(Rx::new(r"^abc").unwrap().is_rust());
        assert!(!Rx::new(r"^\s*$").unwrap().is_rust());
        assert!(!Rx::new(r"[a&&b]").unwrap().is_rust());
        assert!(Rx::new(r"(?i)union\s+select").unwrap().is_rust());
        assert!(Rx::new(r"[^a-z][[:alpha:]]").unwrap().is_rust());
    }

    #[test]
    fn lookbehind_and_backreference_match_as_in_pcre() {
        assert!(eval("rx", r"(?<=a)b", b"ab"));
        assert!(!eval("rx", r"(?<=a)b", b"cb"));
        assert!(eval("rx", r"(['`])x\1", b"'x'"));
        assert!(!eval("rx", r"(['`])x\1", b"'x`"));
    }

    #[test]
    fn dotall_and_multiline_are_on() {
        assert!(eval("rx", "a.b", b"a\nb"));
        assert!(eval("rx", "^b$", b"a\nb\nc"));
        assert!(eval("rx", "x$", b"x\n"));
        // PCRE2: `^` does not match after the final newline.
        assert!(!eval("rx", r"^\s*$", b"abc\n"));
    }

    #[test]
    fn case_sensitive_unless_asked() {
        assert!(!eval("rx", "select", b"SELECT"));
        assert!(eval("rx", "(?i)select", b"SELECT"));
    }

    #[test]
    fn empty_pattern_matches_everything() {
        assert!(eval("rx", "", b""));
        assert!(eval("rx", "", b"abc"));
    }

    #[test]
    fn bytes_above_ascii_match_as_single_bytes() {
        assert!(eval("rx", r"\xc3", "é".as_bytes()));
        assert!(eval("rx", r"[\x80-\xff]", b"a\xffb"));
        assert!(eval("rx", "\u{e9}", "é".as_bytes()));
    }

    #[test]
    fn captures_go_to_the_context() {
        let rx = Rx::new(r"(a+)(b)?(c)").unwrap();
        let mut ctx = Ctx {
            capture: true,
            ..Ctx::default()
        };
        assert!(rx.eval(b"xaac", &mut ctx));
        assert_eq!(
            ctx.captures,
            vec![(0, b"aac".to_vec()), (1, b"aa".to_vec()), (3, b"c".to_vec())]
        );
    }

    #[test]
    fn macro_pattern_is_compiled_after_expansion() {
        let rx = Rx::new(r"^%{tx.allowed}$").unwrap();
        let mut ctx = Ctx::default();
        ctx.vars.insert("tx.allowed".into(), "(?:GET|HEAD)".into());
        assert!(rx.eval(b"GET", &mut ctx));
        assert!(!rx.eval(b"POST", &mut ctx));
    }

    #[test]
    fn bad_pattern_is_an_error() {
        assert!(Rx::new("(").is_err());
    }

    /// Every `@rx` of Debian's CRS compiles, most run on Rust's automata, and those give the
    /// same answers as PCRE2 on corpus values (skipped without `modsecurity-crs`).
    #[test]
    fn every_crs_pattern_compiles() {
        let dir = std::path::Path::new("/usr/share/modsecurity-crs/rules");
        let Ok(entries) = std::fs::read_dir(dir) else {
            eprintln!("skipped: modsecurity-crs is not installed");
            return;
        };
        let arg = regex::Regex::new(r#"(?s)SecRule\s+\S+\s+"((?:[^"\\]|\\.)*)""#).unwrap();
        let (mut rust, mut pcre) = (0, 0);
        // Values to compare the two engines on: every part of corpus requests, and their
        // lines with a final newline (where `^` differs).
        let mut values: Vec<Vec<u8>> = Vec::new();
        for r in crate::corpus::generate(400, 5) {
            values.push(r.uri.clone().into_bytes());
            values.push(format!("{}\n", r.uri).into_bytes());
            values.extend(r.headers.iter().map(|(_, v)| v.clone()));
            values.push(r.body.clone());
        }
        for e in entries {
            let path = e.unwrap().path();
            if path.extension().is_none_or(|x| x != "conf") {
                continue;
            }
            let text: String = std::fs::read_to_string(&path)
                .unwrap()
                .lines()
                .filter(|l| !l.trim_start().starts_with('#'))
                .map(|l| format!("{l}\n"))
                .collect();
            let text = text.replace("\\\n", "");
            for c in arg.captures_iter(&text) {
                let Some(pattern) = c[1].strip_prefix("@rx ") else {
                    continue;
                };
                let pattern = pattern.replace("\\\"", "\"");
                let rx = Rx::new(&pattern).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                if rx.is_rust() {
                    same_as_pcre2(&pattern, &rx, &values);
                    rust += 1;
                } else if rx.fixed.is_some() {
                    pcre += 1;
                }
            }
        }
        eprintln!("CRS @rx: {rust} on Rust's regex, {pcre} on PCRE2");
        assert!(rust + pcre > 150, "{rust} + {pcre}");
    }

    /// The Rust engine finds a match exactly where PCRE2 (as libmodsecurity compiles the
    /// pattern) does.
    fn same_as_pcre2(pattern: &str, rx: &Rx, values: &[Vec<u8>]) {
        let pcre = pcre2::bytes::RegexBuilder::new()
            .dotall(true)
            .multi_line(true)
            .jit_if_available(true)
            .build(pattern)
            .unwrap();
        for v in values {
            let want = pcre.is_match(v).unwrap_or(false);
            let got = rx.eval(v, &mut Ctx::default());
            assert_eq!(got, want, "@rx {pattern:?} on {:?}", String::from_utf8_lossy(v));
        }
    }
}
