//! Encoding validators: `@validateByteRange`, `@validateUrlEncoding`, `@validateUtf8Encoding`.
//! Each *matches* when the value is invalid.

use super::c_isspace;
use super::numeric::atoll;

/// The allowed bytes of `@validateByteRange 1-255` / `9,10,13,32-126`.
#[derive(Debug, Clone)]
pub(crate) struct ByteRanges {
    allowed: [bool; 256],
}

impl ByteRanges {
    /// Parses comma-separated bytes and `a-b` ranges. Like libmodsecurity (whose `init` ignores
    /// `getRange`'s errors), an entry that is not a valid byte or range adds nothing; it is not
    /// an error, so rule sets load exactly where libmodsecurity loads them.
    pub(crate) fn parse(arg: &str) -> Result<ByteRanges, String> {
        let mut allowed = [false; 256];
        for entry in arg.split(',') {
            if let Some((a, b)) = entry.split_once('-') {
                let (Some(a), Some(b)) = (stoi(a), stoi(b)) else {
                    continue;
                };
                if !(0..=255).contains(&a) || !(0..=255).contains(&b) || a > b {
                    continue;
                }
                for x in a..=b {
                    allowed[x as usize] = true;
                }
            } else if let Some(a) = stoi(entry) {
                if (0..=255).contains(&a) {
                    allowed[a as usize] = true;
                }
            }
        }
        Ok(ByteRanges { allowed })
    }

    /// Whether any byte is outside the allowed set.
    pub(crate) fn any_outside(&self, input: &[u8]) -> bool {
        input.iter().any(|&b| !self.allowed[usize::from(b)])
    }
}

/// `std::stoi` that reports failure (no digits) as `None`.
fn stoi(s: &str) -> Option<i64> {
    let t = s.trim_start_matches(|c: char| c.is_ascii() && c_isspace(c as u8));
    let t = t.strip_prefix(['+', '-']).unwrap_or(t);
    if !t.starts_with(|c: char| c.is_ascii_digit()) {
        return None;
    }
    Some(atoll(s.as_bytes()))
}

/// `@validateUrlEncoding`: a `%` not followed by two hex digits (an empty value is valid).
pub(crate) fn url_encoding_invalid(input: &[u8]) -> bool {
    let mut i = 0;
    while i < input.len() {
        if input[i] == b'%' {
            if i + 2 >= input.len() {
                return true;
            }
            if !(input[i + 1].is_ascii_hexdigit() && input[i + 2].is_ascii_hexdigit()) {
                return true;
            }
            i += 3;
        } else {
            i += 1;
        }
    }
    false
}

/// `@validateUtf8Encoding`: libmodsecurity's `detect_utf8_character` over the value: truncated
/// or malformed sequences, overlong forms, surrogates and lead bytes from 0xF5 are invalid
/// (4-byte sequences above U+10FFFF led by 0xF4 pass, as there).
pub(crate) fn utf8_invalid(input: &[u8]) -> bool {
    let mut i = 0;
    while i < input.len() {
        match utf8_char_len(&input[i..]) {
            Some(n) => i += n,
            None => return true,
        }
    }
    false
}

fn utf8_char_len(s: &[u8]) -> Option<usize> {
    let c = s[0];
    let cont = |k: usize| s.get(k).is_some_and(|&b| b & 0xC0 == 0x80);
    let (len, d) = if c & 0x80 == 0 {
        return Some(1);
    } else if c & 0xE0 == 0xC0 {
        if s.len() < 2 || !cont(1) {
            return None;
        }
        (2, (u32::from(c & 0x1F) << 6) | u32::from(s[1] & 0x3F))
    } else if c & 0xF0 == 0xE0 {
        if s.len() < 3 || !cont(1) || !cont(2) {
            return None;
        }
        (
            3,
            (u32::from(c & 0x0F) << 12) | (u32::from(s[1] & 0x3F) << 6) | u32::from(s[2] & 0x3F),
        )
    } else if c & 0xF8 == 0xF0 {
        if c >= 0xF5 || s.len() < 4 || !cont(1) || !cont(2) || !cont(3) {
            return None;
        }
        (
            4,
            (u32::from(c & 0x07) << 18)
                | (u32::from(s[1] & 0x3F) << 12)
                | (u32::from(s[2] & 0x3F) << 6)
                | u32::from(s[3] & 0x3F),
        )
    } else {
        return None;
    };
    let overlong = match len {
        2 => d < 0x80,
        3 => d < 0x800,
        _ => d < 0x10000,
    };
    if (0xD800..=0xDFFF).contains(&d) || overlong {
        return None;
    }
    Some(len)
}

#[cfg(test)]
mod tests {
    use super::super::test_ctx::eval;

    #[test]
    fn byte_range() {
        assert!(!eval("validateByteRange", "1-255", b"abc"));
        assert!(eval("validateByteRange", "1-255", b"a\0c"));
        assert!(eval("validateByteRange", "32-126", b"caf\xc3\xa9"));
        assert!(!eval("validateByteRange", "9,10,13,32-126", b"a\tb"));
        assert!(eval("validateByteRange", "9,10,13,32-126", b"a\x0bb"));
        assert!(!eval(
            "validateByteRange",
            "38, 44-46, 48-58, 61, 65-90, 95, 97-122",
            b"a=b&c"
        ));
        // a bad entry adds nothing and is no error
        assert!(eval("validateByteRange", "300,97-98", b"abc"));
    }

    #[test]
    fn url_encoding() {
        assert!(!eval("validateUrlEncoding", "", b"a%41b"));
        assert!(!eval("validateUrlEncoding", "", b"%41"));
        assert!(eval("validateUrlEncoding", "", b"a%4"));
        assert!(eval("validateUrlEncoding", "", b"a%zz"));
        assert!(eval("validateUrlEncoding", "", b"%"));
        assert!(!eval("validateUrlEncoding", "", b""));
    }

    #[test]
    fn utf8_encoding() {
        assert!(!eval("validateUtf8Encoding", "", "héllo €𝄞".as_bytes()));
        assert!(eval("validateUtf8Encoding", "", b"\xc3"));
        assert!(eval("validateUtf8Encoding", "", b"\xc0\xaf"));
        assert!(eval("validateUtf8Encoding", "", b"\xed\xa0\x80"));
        assert!(eval("validateUtf8Encoding", "", b"\xf5\x80\x80\x80"));
        assert!(eval("validateUtf8Encoding", "", b"\xff"));
        assert!(!eval("validateUtf8Encoding", "", b"\xf4\x90\x80\x80"));
    }
}
