//! Reading ModSecurity configuration files into directives: comments, `\` line continuations,
//! double-quoted arguments and `Include`/`IncludeOptional` (relative to the including file, with `*`/`?` globs).

use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::WafError;

/// Includes nested deeper than this are taken to be a loop.
const MAX_INCLUDE_DEPTH: usize = 32;

/// One directive with its arguments (quotes removed) and where it was written.
/// Borrowed from the file's text where possible: a million-rule file is read in a few seconds only
/// if each directive costs few allocations.
#[derive(Debug)]
pub(crate) struct Directive<'a> {
    /// File holding the directive.
    pub file: Arc<Path>,
    /// Line where the directive starts (1-based).
    pub line: usize,
    /// Directive name as written.
    pub name: Cow<'a, str>,
    /// Arguments, quotes removed, `\"` unescaped.
    pub args: Vec<Cow<'a, str>>,
}

impl Directive<'_> {
    /// A copy that does not borrow the file's text.
    pub fn into_owned(self) -> Directive<'static> {
        Directive {
            file: self.file,
            line: self.line,
            name: Cow::Owned(self.name.into_owned()),
            args: self
                .args
                .into_iter()
                .map(|a| Cow::Owned(a.into_owned()))
                .collect(),
        }
    }

    /// A syntax error about this directive.
    pub fn syntax(&self, msg: impl Into<String>) -> WafError {
        WafError::Syntax {
            file: self.file.to_path_buf(),
            line: self.line,
            directive: self.name.to_string(),
            msg: msg.into(),
        }
    }

    /// An "outside the subset" error about this directive.
    pub fn unsupported(&self, what: impl Into<String>) -> WafError {
        WafError::Unsupported {
            file: self.file.to_path_buf(),
            line: self.line,
            directive: self.name.to_string(),
            what: what.into(),
        }
    }
}

/// Reads `path` and every file it includes, handing each directive (other than `Include`) to `sink`
/// in configuration order.
pub(crate) fn read_config(
    path: &Path,
    sink: &mut dyn FnMut(Directive<'_>) -> Result<(), WafError>,
) -> Result<(), WafError> {
    read_file(path, 0, sink)
}

fn read_file(
    path: &Path,
    depth: usize,
    sink: &mut dyn FnMut(Directive<'_>) -> Result<(), WafError>,
) -> Result<(), WafError> {
    let text = std::fs::read_to_string(path).map_err(|source| WafError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let file: Arc<Path> = Arc::from(path);
    let mut lines = text.split('\n').enumerate();
    let mut logical = String::new();
    while let Some((idx, raw)) = lines.next() {
        let start_line = idx + 1;
        logical.clear();
        let mut cur = raw.strip_suffix('\r').unwrap_or(raw);
        loop {
            match cur.strip_suffix('\\') {
                Some(head) => {
                    logical.push_str(head);
                    match lines.next() {
                        Some((_, next)) => cur = next.strip_suffix('\r').unwrap_or(next),
                        None => break,
                    }
                }
                None => {
                    logical.push_str(cur);
                    break;
                }
            }
        }
        let body = logical.trim();
        if body.is_empty() || body.starts_with('#') {
            continue;
        }
        let mut tokens = tokenize(body).map_err(|msg| WafError::Syntax {
            file: path.to_path_buf(),
            line: start_line,
            directive: body.split_whitespace().next().unwrap_or("").to_string(),
            msg,
        })?;
        let name = tokens.remove(0);
        let d = Directive {
            file: file.clone(),
            line: start_line,
            name,
            args: tokens,
        };
        if d.name.eq_ignore_ascii_case("Include") {
            include(&d, path, depth, false, sink)?;
        } else if d.name.eq_ignore_ascii_case("IncludeOptional") {
            include(&d, path, depth, true, sink)?;
        } else {
            sink(d)?;
        }
    }
    Ok(())
}

fn include(
    d: &Directive<'_>,
    from: &Path,
    depth: usize,
    optional: bool,
    sink: &mut dyn FnMut(Directive<'_>) -> Result<(), WafError>,
) -> Result<(), WafError> {
    if d.args.len() != 1 {
        return Err(d.syntax("expects exactly one path"));
    }
    if depth >= MAX_INCLUDE_DEPTH {
        return Err(d.syntax(format!(
            "includes nested deeper than {MAX_INCLUDE_DEPTH} (a loop?)"
        )));
    }
    let target = Path::new(&*d.args[0]);
    let target: PathBuf = if target.is_absolute() {
        target.to_path_buf()
    } else {
        from.parent().unwrap_or(Path::new(".")).join(target)
    };
    let files = match expand_glob(d, &target, optional)? {
        // `IncludeOptional` of a missing file (or an empty glob) includes nothing.
        files if optional => files.into_iter().filter(|f| f.exists()).collect(),
        files => files,
    };
    for file in files {
        read_file(&file, depth + 1, sink).map_err(|e| match e {
            // Name the Include line, not just the missing file.
            WafError::Io { path, source } if path == file => {
                d.syntax(format!("cannot read rule file {}: {source}", path.display()))
            }
            e => e,
        })?;
    }
    Ok(())
}

/// Expands `*` and `?` in the last path component (sorted, as glob(3) does).
fn expand_glob(d: &Directive<'_>, target: &Path, optional: bool) -> Result<Vec<PathBuf>, WafError> {
    let name = target.file_name().and_then(|n| n.to_str()).unwrap_or("");
    let dir = target.parent().unwrap_or(Path::new("."));
    if !name.contains(['*', '?', '[']) {
        if dir.to_str().is_some_and(|s| s.contains(['*', '?', '['])) {
            return Err(d.unsupported("wildcards in a directory of an Include path"));
        }
        return Ok(vec![target.to_path_buf()]);
    }
    if name.contains('[') || dir.to_str().is_some_and(|s| s.contains(['*', '?', '['])) {
        return Err(d.unsupported("Include globs other than `*`/`?` in the file name"));
    }
    if optional && !dir.is_dir() {
        return Ok(Vec::new());
    }
    let entries = std::fs::read_dir(dir).map_err(|source| WafError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let mut out = Vec::new();
    for e in entries {
        let e = e.map_err(|source| WafError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        if let Some(n) = e.file_name().to_str() {
            if !n.starts_with('.') && wildcard_match(name.as_bytes(), n.as_bytes()) {
                out.push(dir.join(n));
            }
        }
    }
    if out.is_empty() && !optional {
        return Err(d.syntax(format!("no file matches {}", target.display())));
    }
    out.sort();
    Ok(out)
}

/// `*` and `?` matching of a whole name.
fn wildcard_match(pat: &[u8], name: &[u8]) -> bool {
    match pat.split_first() {
        None => name.is_empty(),
        Some((b'*', rest)) => (0..=name.len()).any(|i| wildcard_match(rest, &name[i..])),
        Some((b'?', rest)) => !name.is_empty() && wildcard_match(rest, &name[1..]),
        Some((c, rest)) => name.first() == Some(c) && wildcard_match(rest, &name[1..]),
    }
}

/// Splits a logical line into whitespace-separated words; a word starting with `"` runs to the
/// next unescaped `"` (with `\"` standing for a quote; other backslashes are kept).
fn tokenize(s: &str) -> Result<Vec<Cow<'_, str>>, String> {
    let b = s.as_bytes();
    let mut i = 0;
    let mut out = Vec::with_capacity(4);
    loop {
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        if i >= b.len() {
            break;
        }
        if b[i] == b'"' {
            i += 1;
            let start = i;
            let mut escaped = false;
            loop {
                match b.get(i) {
                    None => return Err("unterminated double quote".into()),
                    Some(b'\\') if b.get(i + 1) == Some(&b'"') => {
                        escaped = true;
                        i += 2;
                    }
                    Some(b'"') => break,
                    Some(_) => i += 1,
                }
            }
            // Slicing at ASCII bytes keeps each word valid UTF-8.
            let word = &s[start..i];
            i += 1;
            out.push(if escaped {
                Cow::Owned(word.replace("\\\"", "\""))
            } else {
                Cow::Borrowed(word)
            });
        } else {
            let start = i;
            while i < b.len() && !b[i].is_ascii_whitespace() {
                i += 1;
            }
            out.push(Cow::Borrowed(&s[start..i]));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokenize_handles_quotes_and_escapes() {
        let t = tokenize(r#"SecRule ARGS "@rx a\"b c" "id:1,deny""#).unwrap();
        assert_eq!(t, vec!["SecRule", "ARGS", "@rx a\"b c", "id:1,deny"]);
        assert!(tokenize(r#"SecRule ARGS "@rx"#).is_err());
    }

    #[test]
    fn wildcard_matches_like_glob() {
        assert!(wildcard_match(b"*.conf", b"a.conf"));
        assert!(!wildcard_match(b"*.conf", b"a.conf.bak"));
        assert!(wildcard_match(b"r?.conf", b"r1.conf"));
    }
}
