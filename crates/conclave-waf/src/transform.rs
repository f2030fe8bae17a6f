//! ModSecurity transformations (`t:urlDecodeUni`, `t:htmlEntityDecode`, `t:cmdLine`, ...), each
//! a byte-for-byte port of libmodsecurity 3.0.9's, quirks included: rule sets such as the CRS
//! are tuned against what libmodsecurity actually produces, so "fixing" a quirk here changes
//! which requests they block. The per-transform differential tests in this file check each one
//! against libmodsecurity itself (feature `modsecurity`).

use std::borrow::Cow;

use sha1::Digest as _;

/// One transformation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Transform {
    /// `t:none`: the rule engine drops the transformations listed before it (and the default
    /// action's); applying it changes nothing.
    None,
    UrlDecode,
    UrlDecodeUni,
    HtmlEntityDecode,
    JsDecode,
    CssDecode,
    CmdLine,
    CompressWhitespace,
    RemoveWhitespace,
    RemoveNulls,
    ReplaceNulls,
    ReplaceComments,
    RemoveCommentsChar,
    RemoveComments,
    NormalisePath,
    NormalisePathWin,
    Base64Decode,
    Base64DecodeExt,
    HexDecode,
    HexEncode,
    Utf8ToUnicode,
    Length,
    Sha1,
    Md5,
    Lowercase,
    Uppercase,
    Trim,
    TrimLeft,
    TrimRight,
    EscapeSeqDecode,
    SqlHexDecode,
}

/// Names as written after `t:` (compared case-insensitively), with their aliases.
const NAMES: &[(&str, Transform)] = &[
    ("none", Transform::None),
    ("urldecode", Transform::UrlDecode),
    ("urldecodeuni", Transform::UrlDecodeUni),
    ("htmlentitydecode", Transform::HtmlEntityDecode),
    ("jsdecode", Transform::JsDecode),
    ("cssdecode", Transform::CssDecode),
    ("cmdline", Transform::CmdLine),
    ("compresswhitespace", Transform::CompressWhitespace),
    ("removewhitespace", Transform::RemoveWhitespace),
    ("removenulls", Transform::RemoveNulls),
    ("replacenulls", Transform::ReplaceNulls),
    ("replacecomments", Transform::ReplaceComments),
    ("removecommentschar", Transform::RemoveCommentsChar),
    ("removecomments", Transform::RemoveComments),
    ("normalisepath", Transform::NormalisePath),
    ("normalizepath", Transform::NormalisePath),
    ("normalisepathwin", Transform::NormalisePathWin),
    ("normalizepathwin", Transform::NormalisePathWin),
    ("base64decode", Transform::Base64Decode),
    ("base64decodeext", Transform::Base64DecodeExt),
    ("hexdecode", Transform::HexDecode),
    ("hexencode", Transform::HexEncode),
    ("utf8tounicode", Transform::Utf8ToUnicode),
    ("length", Transform::Length),
    ("sha1", Transform::Sha1),
    ("md5", Transform::Md5),
    ("lowercase", Transform::Lowercase),
    ("uppercase", Transform::Uppercase),
    ("trim", Transform::Trim),
    ("trimleft", Transform::TrimLeft),
    ("trimright", Transform::TrimRight),
    ("escapeseqdecode", Transform::EscapeSeqDecode),
    ("sqlhexdecode", Transform::SqlHexDecode),
];

impl Transform {
    /// The transformation named `name` (without the `t:` prefix), if conclave has it.
    pub(crate) fn parse(name: &str) -> Option<Transform> {
        NAMES
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|&(_, t)| t)
    }

    /// The canonical name (for logs and error messages).
    pub(crate) fn name(self) -> &'static str {
        NAMES
            .iter()
            .find(|&&(_, t)| t == self)
            .map(|&(n, _)| n)
            .unwrap_or("none")
    }

    /// Bytes whose absence from a value leaves it unchanged by this transformation (`apply`
    /// returns it as is), or `None` when the transformation may change any value (decoders
    /// without a marker byte, hashes, `length`). A chain's union of these tells, in one pass
    /// over a value, that the whole chain is the identity on it (`interp::Program::chain_bytes`).
    pub(crate) fn touched_bytes(&self) -> Option<[bool; 256]> {
        let mut t = [false; 256];
        let mut set = |bytes: &mut dyn Iterator<Item = u8>| {
            for b in bytes {
                t[b as usize] = true;
            }
        };
        let space = || [b' ', b'\t', b'\n', 0x0b, 0x0c, b'\r'].into_iter();
        match self {
            Transform::None => {}
            Transform::Lowercase => set(&mut (b'A'..=b'Z')),
            Transform::Uppercase => set(&mut (b'a'..=b'z')),
            Transform::UrlDecode | Transform::UrlDecodeUni => set(&mut [b'%', b'+'].into_iter()),
            Transform::HtmlEntityDecode => set(&mut [b'&'].into_iter()),
            Transform::JsDecode | Transform::EscapeSeqDecode => set(&mut [b'\\'].into_iter()),
            Transform::CssDecode => set(&mut [b'\\', 0].into_iter()),
            Transform::CmdLine => {
                set(&mut (b'A'..=b'Z'));
                set(&mut [b'"', b'\'', b'\\', b'^', b' ', b',', b';', b'\t', b'\r', b'\n'].into_iter());
            }
            Transform::CompressWhitespace | Transform::Trim | Transform::TrimLeft | Transform::TrimRight => {
                set(&mut space())
            }
            Transform::RemoveWhitespace => {
                set(&mut space());
                set(&mut [0xa0, 0xc2].into_iter());
            }
            Transform::RemoveNulls | Transform::ReplaceNulls => set(&mut [0].into_iter()),
            Transform::ReplaceComments => set(&mut [b'/'].into_iter()),
            Transform::RemoveCommentsChar => set(&mut [b'/', b'*', b'<', b'-', b'#'].into_iter()),
            Transform::RemoveComments => set(&mut [b'/', b'<', b'-', b'#'].into_iter()),
            Transform::NormalisePath => set(&mut [b'/', b'.'].into_iter()),
            Transform::NormalisePathWin => set(&mut [b'/', b'.', b'\\'].into_iter()),
            Transform::Utf8ToUnicode => {
                set(&mut (0x80..=0xff));
                set(&mut [0].into_iter());
            }
            Transform::Base64Decode
            | Transform::Base64DecodeExt
            | Transform::HexDecode
            | Transform::HexEncode
            | Transform::Length
            | Transform::Sha1
            | Transform::Md5
            | Transform::SqlHexDecode => return None,
        }
        Some(t)
    }

    /// Applies the transformation; a value the transformation cannot change (checked by a quick
    /// scan) comes back as it went in, without a copy.
    pub(crate) fn apply<'a>(&self, input: Cow<'a, [u8]>) -> Cow<'a, [u8]> {
        let s: &[u8] = &input;
        let out = match self {
            Transform::None => return input,
            Transform::Lowercase => {
                if !s.iter().any(u8::is_ascii_uppercase) {
                    return input;
                }
                s.to_ascii_lowercase()
            }
            Transform::Uppercase => {
                if !s.iter().any(u8::is_ascii_lowercase) {
                    return input;
                }
                s.to_ascii_uppercase()
            }
            Transform::UrlDecode => {
                if memchr::memchr2(b'%', b'+', s).is_none() {
                    return input;
                }
                url_decode(s)
            }
            Transform::UrlDecodeUni => {
                if memchr::memchr2(b'%', b'+', s).is_none() {
                    return input;
                }
                url_decode_uni(s)
            }
            Transform::HtmlEntityDecode => {
                if memchr::memchr(b'&', s).is_none() {
                    return input;
                }
                html_entity_decode(s)
            }
            Transform::JsDecode => {
                if memchr::memchr(b'\\', s).is_none() {
                    return input;
                }
                js_decode(s)
            }
            Transform::CssDecode => {
                if memchr::memchr2(b'\\', 0, s).is_none() {
                    return input;
                }
                // libmodsecurity builds the result from the C string: it ends at the first NUL.
                let mut out = css_decode(s);
                if let Some(nul) = out.iter().position(|&b| b == 0) {
                    out.truncate(nul);
                }
                out
            }
            Transform::EscapeSeqDecode => {
                if memchr::memchr(b'\\', s).is_none() {
                    return input;
                }
                escape_seq_decode(s)
            }
            Transform::CmdLine => {
                if !s.iter().any(|&b| {
                    b.is_ascii_uppercase()
                        || matches!(
                            b,
                            b'"' | b'\'' | b'\\' | b'^' | b' ' | b',' | b';' | b'\t' | b'\r' | b'\n'
                        )
                }) {
                    return input;
                }
                cmd_line(s)
            }
            Transform::CompressWhitespace => {
                // Unchanged unless a run of whitespace or a whitespace byte other than ' '.
                let changes = s.windows(2).any(|w| is_space(w[0]) && is_space(w[1]))
                    || s.iter().any(|&b| is_space(b) && b != b' ');
                if !changes {
                    return input;
                }
                compress_whitespace(s)
            }
            Transform::RemoveWhitespace => {
                if !s.iter().any(|&b| is_space(b) || b == 0xa0 || b == 0xc2) {
                    return input;
                }
                s.iter()
                    .copied()
                    .filter(|&b| !(is_space(b) || b == 0xa0 || b == 0xc2))
                    .collect()
            }
            Transform::RemoveNulls => {
                if memchr::memchr(0, s).is_none() {
                    return input;
                }
                s.iter().copied().filter(|&b| b != 0).collect()
            }
            Transform::ReplaceNulls => {
                if memchr::memchr(0, s).is_none() {
                    return input;
                }
                s.iter().map(|&b| if b == 0 { b' ' } else { b }).collect()
            }
            Transform::ReplaceComments => {
                if memchr::memmem::find(s, b"/*").is_none() {
                    return input;
                }
                replace_comments(s)
            }
            Transform::RemoveCommentsChar => {
                if !s.iter().any(|&b| matches!(b, b'/' | b'*' | b'<' | b'-' | b'#')) {
                    return input;
                }
                remove_comments_char(s)
            }
            Transform::RemoveComments => {
                if !s.iter().any(|&b| matches!(b, b'/' | b'<' | b'-' | b'#')) {
                    return input;
                }
                remove_comments(s)
            }
            Transform::NormalisePath => {
                if !s.iter().any(|&b| b == b'/' || b == b'.') {
                    return input;
                }
                normalise_path(s, false)
            }
            Transform::NormalisePathWin => {
                if !s.iter().any(|&b| b == b'/' || b == b'.' || b == b'\\') {
                    return input;
                }
                normalise_path(s, true)
            }
            Transform::Base64Decode => base64_decode(s),
            Transform::Base64DecodeExt => base64_decode_ext(s),
            Transform::HexDecode => hex_decode(s),
            Transform::HexEncode => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                let mut out = Vec::with_capacity(s.len() * 2);
                for &b in s {
                    out.push(HEX[usize::from(b >> 4)]);
                    out.push(HEX[usize::from(b & 15)]);
                }
                out
            }
            Transform::Utf8ToUnicode => {
                if s.is_ascii() && memchr::memchr(0, s).is_none() {
                    return input;
                }
                utf8_to_unicode(s)
            }
            Transform::Length => s.len().to_string().into_bytes(),
            Transform::Sha1 => sha1::Sha1::digest(s).to_vec(),
            Transform::Md5 => md5::Md5::digest(s).to_vec(),
            Transform::Trim | Transform::TrimLeft | Transform::TrimRight => {
                let left = !matches!(self, Transform::TrimRight);
                let right = !matches!(self, Transform::TrimLeft);
                let start = if left { s.len() - trim_left(s).len() } else { 0 };
                let end = if right {
                    trim_right(s).len().max(start)
                } else {
                    s.len()
                };
                return match input {
                    Cow::Borrowed(b) => Cow::Borrowed(&b[start..end]),
                    Cow::Owned(mut v) => {
                        v.truncate(end);
                        v.drain(..start);
                        Cow::Owned(v)
                    }
                };
            }
            Transform::SqlHexDecode => sql_hex_decode(s),
        };
        Cow::Owned(out)
    }
}

/// C `isspace` in the "C" locale.
fn is_space(b: u8) -> bool {
    crate::operator::c_isspace(b)
}

fn is_hex(b: u8) -> bool {
    b.is_ascii_hexdigit()
}

/// libmodsecurity's `x2c`: two hex digits to a byte, with no validation (garbage in, wrapped
/// arithmetic out, as the C code).
fn x2c(a: u8, b: u8) -> u8 {
    let digit = |c: u8| -> u8 {
        if c >= b'A' {
            (c & 0xdf).wrapping_sub(b'A').wrapping_add(10)
        } else {
            c.wrapping_sub(b'0')
        }
    };
    digit(a).wrapping_mul(16).wrapping_add(digit(b))
}

/// `xsingle2c`: one hex digit.
fn xsingle2c(c: u8) -> u8 {
    if c >= b'A' {
        (c & 0xdf).wrapping_sub(b'A').wrapping_add(10)
    } else {
        c.wrapping_sub(b'0')
    }
}

/// `strtol(digits, base)` cast to `unsigned char`: saturates at `LONG_MAX` first.
fn strtol_byte(digits: &[u8], radix: u32) -> u8 {
    let mut v: i64 = 0;
    for &d in digits {
        let Some(x) = (d as char).to_digit(radix) else {
            break;
        };
        v = v
            .checked_mul(i64::from(radix))
            .and_then(|v| v.checked_add(i64::from(x)))
            .unwrap_or(i64::MAX);
        if v == i64::MAX {
            break;
        }
    }
    v as u8
}

/// `urldecode_nonstrict_inplace`: `%XX` decoded when valid, `+` to space, the rest kept.
fn url_decode(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        let c = s[i];
        if c == b'%' && i + 2 < s.len() && is_hex(s[i + 1]) && is_hex(s[i + 2]) {
            out.push(x2c(s[i + 1], s[i + 2]));
            i += 3;
        } else {
            out.push(if c == b'+' { b' ' } else { c });
            i += 1;
        }
    }
    out
}

/// `UrlDecodeUni::inplace` without a unicode map: `%uHHHH` keeps the low byte (full-width ASCII
/// `%uFF01`-`%uFF5E` gets 0x20 added), `%XX`, `+`.
fn url_decode_uni(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        let c = s[i];
        if c != b'%' {
            out.push(if c == b'+' { b' ' } else { c });
            i += 1;
            continue;
        }
        if i + 1 < s.len() && (s[i + 1] == b'u' || s[i + 1] == b'U') {
            if i + 5 < s.len() && s[i + 2..i + 6].iter().all(|&b| is_hex(b)) {
                let mut d = x2c(s[i + 4], s[i + 5]);
                if d > 0 && d < 0x5f && (s[i + 2] | 0x20) == b'f' && (s[i + 3] | 0x20) == b'f' {
                    d += 0x20;
                }
                out.push(d);
                i += 6;
            } else {
                out.extend_from_slice(&s[i..i + 2]);
                i += 2;
            }
        } else if i + 2 < s.len() && is_hex(s[i + 1]) && is_hex(s[i + 2]) {
            out.push(x2c(s[i + 1], s[i + 2]));
            i += 3;
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

/// `HtmlEntityDecode::inplace`: `&#DDD;`, `&#xHH;` (semicolon optional, low byte kept) and
/// `&quot; &amp; &lt; &gt; &nbsp;`; anything else copied.
fn html_entity_decode(s: &[u8]) -> Vec<u8> {
    let n = s.len();
    let mut out = Vec::with_capacity(n);
    let mut i = 0;
    'outer: while i < n && out.len() < n {
        let mut copy = 1;
        'entity: {
            if !(s[i] == b'&' && i + 1 < n) {
                break 'entity;
            }
            let mut j = i + 1;
            if s[j] == b'#' {
                copy += 1;
                if j + 1 >= n {
                    break 'entity;
                }
                j += 1;
                let (radix, is_digit): (u32, fn(&u8) -> bool) = if s[j] == b'x' || s[j] == b'X' {
                    copy += 1;
                    if j + 1 >= n {
                        break 'entity;
                    }
                    j += 1;
                    (16, u8::is_ascii_hexdigit)
                } else {
                    (10, u8::is_ascii_digit)
                };
                let k = j;
                while j < n && is_digit(&s[j]) {
                    j += 1;
                }
                if j == k {
                    break 'entity;
                }
                out.push(strtol_byte(&s[k..j], radix));
            } else {
                let k = j;
                while j < n && s[j].is_ascii_alphanumeric() {
                    j += 1;
                }
                if j == k {
                    break 'entity;
                }
                let name = &s[k..j];
                let b = if name.eq_ignore_ascii_case(b"quot") {
                    b'"'
                } else if name.eq_ignore_ascii_case(b"amp") {
                    b'&'
                } else if name.eq_ignore_ascii_case(b"lt") {
                    b'<'
                } else if name.eq_ignore_ascii_case(b"gt") {
                    b'>'
                } else if name.eq_ignore_ascii_case(b"nbsp") {
                    0xa0
                } else {
                    copy = j - k + 1;
                    break 'entity;
                };
                out.push(b);
            }
            i = if j < n && s[j] == b';' { j + 1 } else { j };
            continue 'outer;
        }
        let mut z = 0;
        while z < copy && out.len() < n && i < n {
            out.push(s[i]);
            i += 1;
            z += 1;
        }
    }
    out
}

fn is_odigit(b: u8) -> bool {
    (b'0'..=b'7').contains(&b)
}

/// Reads up to three octal digits after `s[i]` (a backslash) as the C code does; returns the
/// digits' count (0 if none).
fn octal_digits(s: &[u8], i: usize) -> usize {
    let mut j = 0;
    while i + 1 + j < s.len() && j < 3 {
        j += 1;
        if !s.get(i + 1 + j).is_some_and(|&b| is_odigit(b)) {
            break;
        }
    }
    j
}

/// `JsDecode::inplace`: `\uHHHH` (low byte, full-width fix), `\xHH`, `\OOO`, `\C`.
fn js_decode(s: &[u8]) -> Vec<u8> {
    let n = s.len();
    let mut out = Vec::with_capacity(n);
    let mut i = 0;
    while i < n {
        if s[i] != b'\\' {
            out.push(s[i]);
            i += 1;
            continue;
        }
        if i + 5 < n && s[i + 1] == b'u' && s[i + 2..i + 6].iter().all(|&b| is_hex(b)) {
            let mut d = x2c(s[i + 4], s[i + 5]);
            if d > 0 && d < 0x5f && (s[i + 2] | 0x20) == b'f' && (s[i + 3] | 0x20) == b'f' {
                d += 0x20;
            }
            out.push(d);
            i += 6;
        } else if i + 3 < n && s[i + 1] == b'x' && is_hex(s[i + 2]) && is_hex(s[i + 3]) {
            out.push(x2c(s[i + 2], s[i + 3]));
            i += 4;
        } else if i + 1 < n && is_odigit(s[i + 1]) {
            let mut j = octal_digits(s, i);
            if j == 3 && s[i + 1] > b'3' {
                j = 2;
            }
            out.push(strtol_byte(&s[i + 1..i + 1 + j], 8));
            i += 1 + j;
        } else if i + 1 < n {
            out.push(match s[i + 1] {
                b'a' => 0x07,
                b'b' => 0x08,
                b'f' => 0x0c,
                b'n' => b'\n',
                b'r' => b'\r',
                b't' => b'\t',
                b'v' => 0x0b,
                c => c,
            });
            i += 2;
        } else {
            out.extend_from_slice(&s[i..]);
            i = n;
        }
    }
    out
}

/// `CssDecode::css_decode_inplace`: `\` + 1-6 hex digits (last two used, full-width fix), one
/// whitespace after the escape swallowed, `\` newline dropped, `\C` to `C`.
fn css_decode(s: &[u8]) -> Vec<u8> {
    let n = s.len();
    let mut out = Vec::with_capacity(n);
    let mut i = 0;
    while i < n {
        if s[i] != b'\\' {
            out.push(s[i]);
            i += 1;
            continue;
        }
        if i + 1 >= n {
            i += 1;
            continue;
        }
        i += 1;
        let mut j = 0;
        while j < 6 && i + j < n && is_hex(s[i + j]) {
            j += 1;
        }
        if j > 0 {
            let fullcheck = match j {
                1 => {
                    out.push(xsingle2c(s[i]));
                    false
                }
                2 | 3 => {
                    out.push(x2c(s[i + j - 2], s[i + j - 1]));
                    false
                }
                4 => true,
                5 => s[i] == b'0',
                _ => s[i] == b'0' && s[i + 1] == b'0',
            };
            if j >= 4 {
                let mut d = x2c(s[i + j - 2], s[i + j - 1]);
                if fullcheck
                    && d > 0
                    && d < 0x5f
                    && (s[i + j - 3] | 0x20) == b'f'
                    && (s[i + j - 4] | 0x20) == b'f'
                {
                    d += 0x20;
                }
                out.push(d);
            }
            if i + j < n && is_space(s[i + j]) {
                j += 1;
            }
            i += j;
        } else if s[i] == b'\n' {
            i += 1;
        } else {
            out.push(s[i]);
            i += 1;
        }
    }
    out
}

/// `EscapeSeqDecode::ansi_c_sequences_decode_inplace`: C escapes, `\xHH`, `\OOO`; an unknown
/// escape keeps the character without the backslash.
fn escape_seq_decode(s: &[u8]) -> Vec<u8> {
    let n = s.len();
    let mut out = Vec::with_capacity(n);
    let mut i = 0;
    while i < n {
        if !(s[i] == b'\\' && i + 1 < n) {
            out.push(s[i]);
            i += 1;
            continue;
        }
        let mut c: Option<u8> = match s[i + 1] {
            b'a' => Some(0x07),
            b'b' => Some(0x08),
            b'f' => Some(0x0c),
            b'n' => Some(b'\n'),
            b'r' => Some(b'\r'),
            b't' => Some(b'\t'),
            b'v' => Some(0x0b),
            b'\\' => Some(b'\\'),
            b'?' => Some(b'?'),
            b'\'' => Some(b'\''),
            b'"' => Some(b'"'),
            _ => None,
        };
        if c.is_some() {
            i += 2;
        } else if s[i + 1] == b'x' || s[i + 1] == b'X' {
            if i + 3 < n && is_hex(s[i + 2]) && is_hex(s[i + 3]) {
                c = Some(x2c(s[i + 2], s[i + 3]));
                i += 4;
            }
        } else if is_odigit(s[i + 1]) {
            let j = octal_digits(s, i);
            if j > 0 {
                let mut v: u32 = 0;
                for &d in &s[i + 1..i + 1 + j] {
                    v = v * 8 + u32::from(d - b'0');
                }
                c = Some(v as u8);
                i += 1 + j;
            }
        }
        match c {
            Some(c) => out.push(c),
            None => {
                out.push(s[i + 1]);
                i += 2;
            }
        }
    }
    out
}

/// `CmdLine::evaluate`: drops `" ' \ ^`, folds runs of ` , ; \t \r \n` into one space, drops
/// a space before `/` or `(`, lowercases.
fn cmd_line(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    let mut space = false;
    for &a in s {
        match a {
            b'"' | b'\'' | b'\\' | b'^' => {}
            b' ' | b',' | b';' | b'\t' | b'\r' | b'\n' => {
                if !space {
                    out.push(b' ');
                    space = true;
                }
            }
            b'/' | b'(' => {
                if space {
                    out.pop();
                }
                space = false;
                out.push(a);
            }
            _ => {
                out.push(a.to_ascii_lowercase());
                space = false;
            }
        }
    }
    out
}

/// `CompressWhitespace::evaluate`: runs of C whitespace become one space (its NBSP test compares
/// a signed `char` with 160 and never holds).
fn compress_whitespace(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    let mut in_ws = false;
    for &b in s {
        if is_space(b) {
            if !in_ws {
                in_ws = true;
                out.push(b' ');
            }
        } else {
            in_ws = false;
            out.push(b);
        }
    }
    out
}

/// `ReplaceComments::evaluate`: each `/* ... */` (or an unterminated `/*` to the end) becomes
/// one space.
fn replace_comments(s: &[u8]) -> Vec<u8> {
    let n = s.len();
    let mut out = Vec::with_capacity(n);
    let (mut i, mut incomment) = (0, false);
    while i < n {
        if !incomment {
            if s[i] == b'/' && i + 1 < n && s[i + 1] == b'*' {
                incomment = true;
                i += 2;
            } else {
                out.push(s[i]);
                i += 1;
            }
        } else if s[i] == b'*' && i + 1 < n && s[i + 1] == b'/' {
            incomment = false;
            i += 2;
            out.push(b' ');
        } else {
            i += 1;
        }
    }
    if incomment {
        out.push(b' ');
    }
    out
}

/// `RemoveCommentsChar::evaluate`: drops the comment markers `/*`, `*/`, `<!--`, `-->`, `--`,
/// `#` (not the text between them).
fn remove_comments_char(s: &[u8]) -> Vec<u8> {
    let n = s.len();
    let mut out = Vec::with_capacity(n);
    let mut i = 0;
    while i < n {
        let rest = &s[i..];
        if rest.starts_with(b"/*") || rest.starts_with(b"*/") {
            i += 2;
        } else if rest.starts_with(b"<!--") {
            i += 4;
        } else if rest.starts_with(b"-->") {
            i += 3;
        } else if rest.starts_with(b"--") {
            i += 2;
        } else if s[i] == b'#' {
            i += 1;
        } else {
            out.push(s[i]);
            i += 1;
        }
    }
    out
}

/// `RemoveComments::evaluate`, quirks included: `/* */` and `<!-- -->` removed; `--` or `#`
/// outside a comment cut the value there; the byte right after a closing `*/` or `-->` is
/// copied unexamined (the C string's terminating NUL when the value ends there); an unterminated
/// comment ends in one space.
fn remove_comments(s: &[u8]) -> Vec<u8> {
    let n = s.len();
    // The C code works on a NUL-terminated copy and may read the terminator.
    let at = |k: usize| if k < n { s[k] } else { 0 };
    let mut out = Vec::with_capacity(n);
    let (mut i, mut incomment) = (0, false);
    while i < n {
        if !incomment {
            if s[i] == b'/' && i + 1 < n && s[i + 1] == b'*' {
                incomment = true;
                i += 2;
            } else if s[i] == b'<' && i + 3 < n && &s[i + 1..i + 4] == b"!--" {
                incomment = true;
                i += 4;
            } else if (s[i] == b'-' && i + 1 < n && s[i + 1] == b'-') || s[i] == b'#' {
                break;
            } else {
                out.push(s[i]);
                i += 1;
            }
        } else if s[i] == b'*' && i + 1 < n && s[i + 1] == b'/' {
            incomment = false;
            i += 2;
            out.push(at(i));
            i += 1;
        } else if s[i] == b'-' && i + 2 < n && s[i + 1] == b'-' && s[i + 2] == b'>' {
            incomment = false;
            i += 3;
            out.push(at(i));
            i += 1;
        } else {
            i += 1;
        }
    }
    if incomment {
        out.push(b' ');
    }
    out
}

/// `NormalisePath::normalize_path_inplace`, ported pointer for index: removes `./`, resolves
/// `../` (never above the root; relative paths keep leading `..`), collapses `//`, keeps a
/// trailing slash only if there was one; `win` also turns `\` into `/`.
fn normalise_path(input: &[u8], win: bool) -> Vec<u8> {
    if input.is_empty() {
        return Vec::new();
    }
    let mut s = input.to_vec();
    let end = s.len() - 1;
    let is_slash = |b: u8| b == b'/' || (win && b == b'\\');
    let relative = !is_slash(s[0]);
    let trailing = is_slash(s[end]);
    let (mut src, mut dst): (usize, isize) = (0, 0);
    let mut hitroot = false;
    let mut done = false;
    let mut ldst: isize = 1;

    while !done && src <= end && dst <= end as isize {
        if win {
            if s[src] == b'\\' {
                s[src] = b'/';
            }
            if src < end && s[src + 1] == b'\\' {
                s[src + 1] = b'/';
            }
        }
        if src == end {
            done = true;
        } else if s[src + 1] != b'/' {
            s[dst as usize] = s[src];
            dst += 1;
            src += 1;
            continue;
        }

        // `goto copy` / `goto length` of the C code.
        let mut skip_copy = false;
        let empty_segment = src != end && s[src] == b'/';
        if !empty_segment {
            if s[src] == b'.' {
                if dst > 0 && s[dst as usize - 1] == b'.' {
                    if relative && (hitroot || dst - 2 <= 0) {
                        hitroot = true;
                    } else {
                        dst -= 3;
                        while dst > 0 && s[dst as usize] != b'/' {
                            dst -= 1;
                        }
                        if dst <= 0 {
                            hitroot = true;
                            dst = 0;
                            if !relative && src == end {
                                dst += 1;
                            }
                        }
                        if done {
                            ldst = dst;
                            continue;
                        }
                        src += 1;
                    }
                } else if dst == 0 {
                    if done {
                        ldst = dst;
                        continue;
                    }
                    src += 1;
                } else if s[dst as usize - 1] == b'/' {
                    if done {
                        ldst = dst;
                        continue;
                    }
                    dst -= 1;
                    src += 1;
                }
            } else if dst > 0 {
                hitroot = false;
            }
        }

        // copy:
        if src <= end && s[src] == b'/' {
            while src < end && is_slash(s[src + 1]) {
                src += 1;
            }
            if relative && dst == 0 {
                src += 1;
                skip_copy = true;
            }
        }
        if !skip_copy {
            // `src` may have stepped past the last byte; the C code then reads its NUL.
            s[dst as usize] = if src <= end { s[src] } else { 0 };
            dst += 1;
            src += 1;
        }
        ldst = dst;
    }
    if !trailing && dst > 0 && s[dst as usize - 1] == b'/' {
        ldst -= 1;
    }
    s.truncate(ldst.max(0) as usize);
    s
}

/// The base64 alphabet's values (`=` is 64, invalid 127), as mbedtls's `base64_dec_map`.
fn b64_value(c: u8) -> u8 {
    match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        b'=' => 64,
        _ => 127,
    }
}

/// `Base64::decode` (mbedtls, strict): any invalid character makes the result empty; only
/// complete 4-character groups produce bytes; the value is read as a C string.
fn base64_decode(s: &[u8]) -> Vec<u8> {
    let s = &s[..s.iter().position(|&b| b == 0).unwrap_or(s.len())];
    // First pass: validity, as mbedtls_base64_decode.
    let mut i = 0;
    let mut equals = 0;
    while i < s.len() {
        let mut spaces = 0;
        while i < s.len() && s[i] == b' ' {
            i += 1;
            spaces += 1;
        }
        if i == s.len() {
            break;
        }
        if s.len() - i >= 2 && s[i] == b'\r' && s[i + 1] == b'\n' {
            i += 1;
            continue;
        }
        if s[i] == b'\n' {
            i += 1;
            continue;
        }
        if spaces != 0 {
            return Vec::new();
        }
        if s[i] == b'=' {
            equals += 1;
            if equals > 2 {
                return Vec::new();
            }
        }
        let v = b64_value(s[i]);
        if v == 127 || (v < 64 && equals != 0) {
            return Vec::new();
        }
        i += 1;
    }
    let mut out = Vec::with_capacity(s.len() / 4 * 3);
    let (mut j, mut n, mut x) = (3u32, 0u32, 0u32);
    for &c in s {
        if c == b'\r' || c == b'\n' || c == b' ' {
            continue;
        }
        let v = b64_value(c);
        if v == 64 {
            j -= 1;
        }
        x = (x << 6) | u32::from(v & 0x3f);
        n += 1;
        if n == 4 {
            n = 0;
            if j > 0 {
                out.push((x >> 16) as u8);
            }
            if j > 1 {
                out.push((x >> 8) as u8);
            }
            if j > 2 {
                out.push(x as u8);
            }
        }
    }
    out
}

/// `Base64::decode_forgiven`: both alphabets (`+/` and `-_`), skips other characters and `=`
/// (a `=` alone after the second character of a group makes the result empty), keeps the
/// complete bytes of an incomplete last group.
fn base64_decode_ext(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len() / 4 * 3 + 2);
    let mut cur: u8 = 0;
    let mut i = 0usize;
    for (k, &c) in s.iter().enumerate() {
        if c == b'=' {
            if s.get(k + 1) != Some(&b'=') && i % 4 == 1 {
                return Vec::new();
            }
            continue;
        }
        let v = b64_value(c);
        if v >= 64 {
            continue;
        }
        match i % 4 {
            0 => cur = v << 2,
            1 => {
                out.push(cur | (v >> 4));
                cur = (v & 0x0f) << 4;
            }
            2 => {
                out.push(cur | (v >> 2));
                cur = (v & 0x03) << 6;
            }
            _ => out.push(cur | v),
        }
        i += 1;
    }
    out
}

/// `HexDecode::inplace`: pairs through `x2c` without validation; an odd last byte dropped.
fn hex_decode(s: &[u8]) -> Vec<u8> {
    s.chunks_exact(2).map(|p| x2c(p[0], p[1])).collect()
}

/// `Utf8ToUnicode::inplace`: each valid multi-byte UTF-8 sequence becomes `%uHHHH` (lowercase,
/// at least 4 digits); malformed sequences are dropped, stray continuation bytes and other
/// invalid lead bytes kept, overlong forms and surrogates written and followed by their lead
/// byte, NULs removed.
fn utf8_to_unicode(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len() * 2);
    // The C code runs over the value plus its NUL terminator, checking lengths against the
    // whole buffer, never against what is left.
    let total = s.len() + 1;
    let at = |k: usize| if k < s.len() { s[k] } else { 0 };
    let cont = |k: usize| at(k) & 0xC0 == 0x80;
    let mut i = 0;
    while i < total {
        let c = at(i);
        let (len, d): (usize, u32) = if c & 0x80 == 0 {
            if c != 0 {
                out.push(c);
            }
            (0, 0)
        } else if c & 0xE0 == 0xC0 {
            if total < 2 || !cont(i + 1) {
                (0, 0)
            } else {
                (2, (u32::from(c & 0x1F) << 6) | u32::from(at(i + 1) & 0x3F))
            }
        } else if c & 0xF0 == 0xE0 {
            if total < 3 || !cont(i + 1) || !cont(i + 2) {
                (0, 0)
            } else {
                (
                    3,
                    (u32::from(c & 0x0F) << 12)
                        | (u32::from(at(i + 1) & 0x3F) << 6)
                        | u32::from(at(i + 2) & 0x3F),
                )
            }
        } else if c & 0xF8 == 0xF0 {
            if total < 4 || !cont(i + 1) || !cont(i + 2) || !cont(i + 3) {
                (0, 0)
            } else {
                (
                    4,
                    (u32::from(c & 0x07) << 18)
                        | (u32::from(at(i + 1) & 0x3F) << 12)
                        | (u32::from(at(i + 2) & 0x3F) << 6)
                        | u32::from(at(i + 3) & 0x3F),
                )
            }
        } else {
            out.push(c);
            (0, 0)
        };
        if len > 0 {
            out.extend_from_slice(format!("%u{d:04x}").as_bytes());
        }
        if (0xD800..=0xDFFF).contains(&d) {
            out.push(c);
        }
        let overlong = match len {
            4 => d < 0x10000,
            3 => d < 0x800,
            2 => d < 0x80,
            _ => false,
        };
        if overlong {
            out.push(c);
        }
        i += len.max(1);
    }
    out
}

fn trim_left(s: &[u8]) -> &[u8] {
    let start = s.iter().position(|&b| !is_space(b)).unwrap_or(s.len());
    &s[start..]
}

fn trim_right(s: &[u8]) -> &[u8] {
    let end = s.iter().rposition(|&b| !is_space(b)).map_or(0, |p| p + 1);
    &s[..end]
}

/// `SqlHexDecode::inplace`: `0xHHHH...` runs decoded, as the C loop does it (which stops before
/// the value's last byte and at a NUL, and reads the result back as a C string).
fn sql_hex_decode(s: &[u8]) -> Vec<u8> {
    let len = s.len();
    if len == 0 {
        return Vec::new();
    }
    let at = |k: usize| if k < len { s[k] } else { 0 };
    let mut out = Vec::with_capacity(len);
    let mut data = 0usize;
    let mut count = 0usize;
    loop {
        count += 1;
        if count >= len || at(data) == 0 {
            break;
        }
        'body: {
            if at(data) != b'0' {
                break 'body;
            }
            if !at(data + 1).eq_ignore_ascii_case(&b'x') {
                break 'body;
            }
            if !(is_hex(at(data + 2)) && is_hex(at(data + 3))) {
                break 'body;
            }
            data += 2;
            count += 2;
            while is_hex(at(data)) && is_hex(at(data + 1)) {
                out.push(x2c(at(data), at(data + 1)));
                data += 2;
                count += 2;
            }
        }
        // The `for` increment: copy one byte.
        out.push(at(data));
        data += 1;
    }
    if let Some(nul) = out.iter().position(|&b| b == 0) {
        out.truncate(nul);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `touched_bytes` is exact for the chain fast path: a value holding none of a
    /// transformation's bytes comes back unchanged (random values over all bytes, with the
    /// touched ones removed), and the transformations without a set are the ones that may
    /// change anything.
    #[test]
    fn values_without_touched_bytes_are_unchanged() {
        let mut rng = crate::rng::SplitMix64(3);
        for &(name, t) in NAMES {
            let Some(touched) = t.touched_bytes() else {
                assert!(
                    matches!(
                        t,
                        Transform::Base64Decode
                            | Transform::Base64DecodeExt
                            | Transform::HexDecode
                            | Transform::HexEncode
                            | Transform::Length
                            | Transform::Sha1
                            | Transform::Md5
                            | Transform::SqlHexDecode
                    ),
                    "{name}"
                );
                continue;
            };
            for _ in 0..20_000 {
                let n = rng.below(24);
                let v: Vec<u8> = (0..n)
                    .map(|_| rng.next() as u8)
                    .filter(|&b| !touched[b as usize])
                    .collect();
                let out = t.apply(Cow::Borrowed(&v));
                assert_eq!(&*out, &v[..], "{name} changed {v:?}");
            }
        }
    }

    fn t(name: &str, input: &[u8]) -> Vec<u8> {
        Transform::parse(name)
            .unwrap_or_else(|| panic!("no transform {name}"))
            .apply(Cow::Borrowed(input))
            .into_owned()
    }

    #[test]
    fn parses_names_case_insensitively() {
        assert_eq!(Transform::parse("urlDecodeUni"), Some(Transform::UrlDecodeUni));
        assert_eq!(Transform::parse("normalizePath"), Some(Transform::NormalisePath));
        assert_eq!(Transform::parse("LOWERCASE"), Some(Transform::Lowercase));
        assert_eq!(Transform::parse("parityEven7bit"), None);
        assert_eq!(Transform::UrlDecodeUni.name(), "urldecodeuni");
    }

    #[test]
    fn unchanged_values_stay_borrowed() {
        let v = Transform::Lowercase.apply(Cow::Borrowed(b"abc"));
        assert!(matches!(v, Cow::Borrowed(_)));
        let v = Transform::UrlDecode.apply(Cow::Borrowed(b"abc"));
        assert!(matches!(v, Cow::Borrowed(_)));
    }

    #[test]
    fn url_decodes() {
        assert_eq!(t("urlDecode", b"a%41+b%4%zz%"), b"aA b%4%zz%");
        assert_eq!(t("urlDecodeUni", b"%u0041%uFF01%u12%41+"), b"A!%u12A ");
    }

    #[test]
    fn html_entities() {
        assert_eq!(
            t("htmlEntityDecode", b"&lt;a&#65;&#x42;&amp&nbsp;&foo;&"),
            b"<aAB&\xa0&foo;&"
        );
        assert_eq!(t("htmlEntityDecode", b"&#x;&#;"), b"&#x;&#;");
    }

    #[test]
    fn js_and_css_and_escape_sequences() {
        assert_eq!(t("jsDecode", b"\\x41\\u0042\\uff01\\101\\n\\q\\"), b"AB!A\nq\\");
        assert_eq!(t("cssDecode", b"\\41 b\\000042c\\\nd\\"), b"AbBcd");
        assert_eq!(t("escapeSeqDecode", b"\\x41\\101\\n\\q\\x4"), b"AA\nqx4");
    }

    #[test]
    fn cmd_line_and_whitespace() {
        assert_eq!(t("cmdLine", b"C:\\\"Pro^gram\" ,;  /c ( X)"), b"c:program/c( x)");
        assert_eq!(t("compressWhitespace", b"a \t\n b"), b"a b");
        assert_eq!(t("removeWhitespace", b" a b\xa0c "), b"abc");
        assert_eq!(t("trim", b" \ta b\n"), b"a b");
        assert_eq!(t("trimLeft", b"  a "), b"a ");
        assert_eq!(t("trimRight", b"  a "), b"  a");
    }

    #[test]
    fn comments() {
        assert_eq!(t("replaceComments", b"a/*x*/b/*y"), b"a b ");
        assert_eq!(t("removeCommentsChar", b"a/*x*/b--c#d<!--e-->"), b"axbcde");
        assert_eq!(t("removeComments", b"a/*x*/bc-- d"), b"abc");
        assert_eq!(t("removeComments", b"a#b"), b"a");
    }

    #[test]
    fn normalises_paths() {
        assert_eq!(t("normalisePath", b"/a/b/../c/./d//e"), b"/a/c/d/e");
        assert_eq!(t("normalisePath", b"/../../etc/passwd"), b"/etc/passwd");
        assert_eq!(t("normalisePath", b"../../etc/passwd"), b"../../etc/passwd");
        assert_eq!(t("normalisePath", b"a/b/"), b"a/b/");
        assert_eq!(t("normalisePath", b"/a/b/.."), b"/a");
        assert_eq!(t("normalisePathWin", b"c:\\a\\..\\b"), b"c:/b");
    }

    #[test]
    fn base64_and_hex() {
        assert_eq!(t("base64Decode", b"QUJD"), b"ABC");
        assert_eq!(t("base64Decode", b"QUI="), b"AB");
        assert_eq!(t("base64Decode", b"QU!D"), b"");
        assert_eq!(t("base64DecodeExt", b"QU!JD"), b"ABC");
        assert_eq!(t("hexDecode", b"41424"), b"AB");
        assert_eq!(t("hexEncode", b"AB"), b"4142");
        // the C loop stops before the last byte
        assert_eq!(t("sqlHexDecode", b"x 0x414243 y"), b"x ABC ");
    }

    #[test]
    fn digests_and_length() {
        assert_eq!(t("length", b"abcd"), b"4");
        assert_eq!(
            t("md5", b"abc"),
            [
                0x90, 0x01, 0x50, 0x98, 0x3c, 0xd2, 0x4f, 0xb0, 0xd6, 0x96, 0x3f, 0x7d, 0x28, 0xe1, 0x7f,
                0x72
            ]
        );
        assert_eq!(t("sha1", b"abc").len(), 20);
        assert_eq!(t("sha1", b"abc")[..4], [0xa9, 0x99, 0x3e, 0x36]);
    }

    #[test]
    fn utf8_to_unicode() {
        assert_eq!(t("utf8toUnicode", "aé€".as_bytes()), b"a%u00e9%u20ac");
        assert_eq!(t("utf8toUnicode", b"a\xc3"), b"a");
        assert_eq!(t("utf8toUnicode", b"\x80"), b"\x80");
    }

    #[test]
    fn nulls() {
        assert_eq!(t("removeNulls", b"a\0b"), b"ab");
        assert_eq!(t("replaceNulls", b"a\0b"), b"a b");
    }
}
