//! `@detectSQLi` and `@detectXSS` through libinjection (the pure-Rust port `libinjectionrs`; no C
//! to build, no download at build time).

use super::OpContext;

/// libinjection's SQLi test; on a hit the fingerprint becomes the matched string and `TX:0`
/// when the rule captures (as libmodsecurity does).
pub(super) fn detect_sqli(input: &[u8], ctx: &mut dyn OpContext) -> bool {
    if one_plain_token(input) {
        return false;
    }
    let result = libinjectionrs::detect_sqli(input);
    if !result.is_injection() {
        return false;
    }
    let fp = result
        .fingerprint
        .as_ref()
        .map(|f| f.as_str().as_bytes().to_vec())
        .unwrap_or_default();
    ctx.set_matched(&fp);
    if ctx.capture_wanted() {
        ctx.set_capture(0, &fp);
    }
    true
}

/// Whether `input` is one word (an ASCII letter, then letters, digits and `_`) or one run of
/// digits, a shape for which libinjection's SQLi test is false — so the test need not run
/// (most names and many values of benign requests have it).
///
/// Why this is exact (libinjection as `libinjectionrs` 0.1.1 implements it):
/// - Without `'` or `"` only the "as is" passes run (ANSI, then maybe MySQL); both tokenize
///   the same way here.
/// - A letter starts a word: `CHAR_MAP` sends letters to `parse_word`, or for `b e n q u x`
///   to string parsers that fall back to `parse_word` unless a `'` (or `&'`) follows. The word
///   runs to the first of `parse_word`'s delimiters (space, punctuation, quotes, NUL…), none of
///   which occur, and is split only at `.` or `` ` ``, which do not occur: one token, typed by
///   the keyword table (or a bareword). A run of digits is one number token (`parse_number`:
///   no `0x`/`0b` prefix, `.` or exponent).
/// - The fingerprint of one token is one character; the only one-character fingerprint on
///   the blacklist is `X` ("evil"), which only comments (`/*`, `/*!`) and the `{``` ` case
///   produce, and no keyword has that type. The whitelist step is never reached.
///
/// The tests pin the two facts taken from the library's data (the blacklist's one-character
/// entries, the keyword table's types) and check the whole keyword table and a generated set
/// against `libinjectionrs` itself.
pub(crate) fn one_plain_token(input: &[u8]) -> bool {
    match input.first() {
        Some(c) if c.is_ascii_alphabetic() => input.iter().all(|b| b.is_ascii_alphanumeric() || *b == b'_'),
        Some(c) if c.is_ascii_digit() => input.iter().all(u8::is_ascii_digit),
        _ => false,
    }
}

/// libinjection's XSS test.
pub(super) fn detect_xss(input: &[u8]) -> bool {
    libinjectionrs::detect_xss(input).is_injection()
}

#[cfg(test)]
mod tests {
    use super::super::test_ctx::{eval, Ctx};
    use super::*;

    #[test]
    fn sqli_fingerprint_is_captured() {
        let mut ctx = Ctx {
            capture: true,
            ..Ctx::default()
        };
        assert!(detect_sqli(b"1' OR '1'='1", &mut ctx));
        assert_eq!(ctx.captures.len(), 1);
        assert_eq!(ctx.captures[0].0, 0);
        assert_eq!(ctx.matched.as_deref(), Some(&ctx.captures[0].1[..]));
        assert!(!eval("detectSQLi", "", b"hello world"));
    }

    /// The library facts the guard relies on: of all one-character fingerprints only `X` is
    /// blacklisted, and no keyword is typed `X` or is a fingerprint entry starting with a letter.
    #[test]
    fn only_the_evil_fingerprint_is_blacklisted_alone() {
        let alone: Vec<char> = (0x20u8..0x7f)
            .map(char::from)
            .filter(|c| libinjectionrs::sqli::blacklist::is_blacklisted(&c.to_string()))
            .collect();
        assert_eq!(alone, vec!['X', 'x']);
        for k in libinjectionrs::sqli::sqli_data::SQL_KEYWORDS {
            assert_ne!(k.token_type, b'X', "{}", k.word);
            if k.token_type == b'F' {
                assert!(k.word.starts_with('0'), "{}", k.word);
            }
        }
    }

    /// Every keyword of libinjection's table and 200,000 generated words and numbers: the guard's
    /// shapes are never SQLi, and shapes just outside it are not taken by the guard.
    #[test]
    fn plain_tokens_are_never_sqli() {
        let mut inputs: Vec<Vec<u8>> = Vec::new();
        for k in libinjectionrs::sqli::sqli_data::SQL_KEYWORDS {
            let w = k.word.as_bytes();
            inputs.push(w.to_vec());
            inputs.push(w.to_ascii_lowercase());
            let mut cap = w.to_ascii_lowercase();
            cap[0] = cap[0].to_ascii_uppercase();
            inputs.push(cap);
        }
        let mut rng = crate::rng::SplitMix64(22);
        let word = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_";
        for _ in 0..100_000 {
            let n = 1 + rng.below(40);
            let mut v = vec![rng.pick(&word[..52])];
            v.extend((1..n).map(|_| rng.pick(word)));
            inputs.push(v);
            let n = 1 + rng.below(25);
            inputs.push((0..n).map(|_| rng.pick(b"0123456789")).collect());
        }
        let mut guarded = 0;
        for v in &inputs {
            if one_plain_token(v) {
                guarded += 1;
                assert!(
                    !libinjectionrs::detect_sqli(v).is_injection(),
                    "{}",
                    String::from_utf8_lossy(v)
                );
            }
        }
        assert!(guarded > 200_000, "{guarded}");
        for v in [
            &b"1 or 1"[..],
            b"1'",
            b"a b",
            b"0x1f",
            b"1e5",
            b"a.b",
            b"-1",
            b"_a",
            b"",
        ] {
            assert!(!one_plain_token(v), "{}", String::from_utf8_lossy(v));
        }
    }

    #[test]
    fn xss_vectors_match() {
        assert!(eval("detectXSS", "", b"<script>alert(1)</script>"));
        assert!(!eval("detectXSS", "", b"hello world"));
    }
}
