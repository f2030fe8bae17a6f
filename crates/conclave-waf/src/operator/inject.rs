//! `@detectSQLi` and `@detectXSS` through libinjection (the pure-Rust port `libinjectionrs`; no C
//! to build, no download at build time).

use super::OpContext;

/// libinjection's SQLi test; on a hit the fingerprint becomes the matched string and `TX:0`
/// when the rule captures (as libmodsecurity does).
pub(super) fn detect_sqli(input: &[u8], ctx: &mut dyn OpContext) -> bool {
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

    #[test]
    fn xss_vectors_match() {
        assert!(eval("detectXSS", "", b"<script>alert(1)</script>"));
        assert!(!eval("detectXSS", "", b"hello world"));
    }
}
