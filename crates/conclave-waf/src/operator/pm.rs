//! `@pm` and `@pmFromFile`: ASCII case-insensitive phrase search anywhere in the value (an
//! Aho-Corasick automaton, as libmodsecurity's `acmp`).

use std::path::Path;

use aho_corasick::AhoCorasick;

use super::{c_isspace, read_data_file, OpContext};

/// A compiled phrase list.
#[derive(Debug)]
pub(crate) struct PhraseSet {
    phrases: Vec<Vec<u8>>,
    ac: Option<AhoCorasick>,
}

impl PhraseSet {
    /// `@pm` argument: `parse_pm_content` (quotes, `|hex|`, `\` escapes), then split on
    /// whitespace. If the content cannot be parsed, libmodsecurity splits the raw argument.
    pub(crate) fn from_param(arg: &str) -> Result<PhraseSet, String> {
        let content = parse_pm_content(arg.as_bytes()).unwrap_or_else(|| arg.as_bytes().to_vec());
        let phrases = content
            .split(|&b| c_isspace(b))
            .filter(|w| !w.is_empty())
            .map(<[u8]>::to_vec)
            .collect();
        PhraseSet::build(phrases)
    }

    /// `@pmFromFile a.data b.data`: one phrase per line; empty lines and lines whose first
    /// non-blank byte is `#` are comments.
    pub(crate) fn from_files(arg: &str, dir: &Path) -> Result<PhraseSet, String> {
        let mut phrases = Vec::new();
        for name in arg.split_ascii_whitespace() {
            let text = read_data_file(name, dir)?;
            for line in text.split('\n') {
                if !is_comment(line) {
                    phrases.push(line.as_bytes().to_vec());
                }
            }
        }
        PhraseSet::build(phrases)
    }

    fn build(phrases: Vec<Vec<u8>>) -> Result<PhraseSet, String> {
        let ac = if phrases.is_empty() {
            None
        } else {
            Some(
                AhoCorasick::builder()
                    .ascii_case_insensitive(true)
                    .build(&phrases)
                    .map_err(|e| format!("@pm: {e}"))?,
            )
        };
        Ok(PhraseSet { phrases, ac })
    }

    /// The phrases (for the rule engine's set matchers).
    pub(crate) fn phrases(&self) -> &[Vec<u8>] {
        &self.phrases
    }

    pub(crate) fn eval(&self, input: &[u8], ctx: &mut dyn OpContext) -> bool {
        let Some(ac) = &self.ac else {
            return false;
        };
        match ac.find(input) {
            Some(m) => {
                let phrase = &self.phrases[m.pattern().as_usize()];
                if ctx.capture_wanted() {
                    ctx.set_capture(0, phrase);
                }
                true
            }
            None => false,
        }
    }
}

/// libmodsecurity's comment test for data files: empty, or only whitespace before a `#`.
fn is_comment(line: &str) -> bool {
    if line.is_empty() {
        return true;
    }
    match line.find('#') {
        Some(pos) => line.as_bytes()[..pos].iter().all(|&b| c_isspace(b)),
        None => false,
    }
}

/// libmodsecurity's `parse_pm_content`, quirks included: surrounding double quotes are dropped,
/// `|...|` holds hex pairs (its digit test compares against the integers 0..9, so only `a-f`
/// count as digits and decimal digits are skipped), `\` escapes only `: ; \ "`. `None` where
/// libmodsecurity reports an error (then the raw argument is used).
fn parse_pm_content(param: &[u8]) -> Option<Vec<u8>> {
    let start = param
        .iter()
        .position(|&b| b != b' ' && b != b'\t')
        .unwrap_or(param.len());
    let body = &param[start..];
    let body = if body.len() >= 2 && body[0] == b'"' && param.last() == Some(&b'"') {
        &body[1..body.len() - 1]
    } else if body.len() == 1 && body[0] == b'"' {
        // `"` alone: libmodsecurity copies from after the quote and truncates at -1; empty.
        &body[..0]
    } else {
        body
    };
    if body.is_empty() {
        return None;
    }
    let mut out = Vec::with_capacity(body.len());
    let (mut bin, mut esc) = (false, false);
    let mut pair: Vec<u8> = Vec::with_capacity(2);
    for &c in body {
        if c == b'|' {
            bin = !bin;
        } else if !esc && c == b'\\' {
            esc = true;
        } else if bin {
            if c.is_ascii_hexdigit() && !c.is_ascii_digit() || c <= 9 {
                pair.push(c);
                if pair.len() == 2 {
                    out.push(hex_pair(&pair));
                    pair.clear();
                }
            }
        } else if esc {
            if matches!(c, b':' | b';' | b'\\' | b'"') {
                out.push(c);
            } else {
                return None;
            }
            esc = false;
        } else {
            out.push(c);
        }
    }
    // The C code hands the result on as a C string.
    if let Some(nul) = out.iter().position(|&b| b == 0) {
        out.truncate(nul);
    }
    Some(out)
}

/// `strtol(pair, 16) & 0xff` for the two bytes collected (control bytes 0..9 stop the number).
fn hex_pair(pair: &[u8]) -> u8 {
    let mut v: u32 = 0;
    for &c in pair {
        match (c as char).to_digit(16) {
            Some(d) => v = v * 16 + d,
            None => break,
        }
    }
    v as u8
}

#[cfg(test)]
mod tests {
    use super::super::test_ctx::eval;
    use super::*;

    #[test]
    fn matches_any_phrase_case_insensitively() {
        assert!(eval("pm", "nikto sqlmap", b"Mozilla (SQLMap 1.0)"));
        assert!(!eval("pm", "nikto sqlmap", b"Mozilla/5.0"));
        assert!(eval("pm", "\"a b\"", b"xxbxx"));
    }

    #[test]
    fn hex_blocks_only_take_letters() {
        assert_eq!(parse_pm_content(b"|4a 4b|"), Some(b"\xab".to_vec()));
        assert_eq!(parse_pm_content(b"a\\;b"), Some(b"a;b".to_vec()));
        assert_eq!(parse_pm_content(b"a\\xb"), None);
    }

    #[test]
    fn data_files_skip_comments_and_keep_inner_spaces() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("x.data"),
            "# comment\n\n  # also\nfoo bar\n.htaccess\n",
        )
        .unwrap();
        let set = PhraseSet::from_files("x.data", dir.path()).unwrap();
        assert_eq!(set.phrases(), &[b"foo bar".to_vec(), b".htaccess".to_vec()]);
        let err = PhraseSet::from_files("missing.data", dir.path()).unwrap_err();
        assert!(err.contains("missing.data"), "{err}");
        assert!(PhraseSet::from_files("https://x/y.data", dir.path()).is_err());
    }
}
