//! `@eq @ge @gt @lt @le`: integer comparisons of the value with the (macro-expanded) argument,
//! reading numbers as libmodsecurity does: `@eq` with `std::stoi` (anything unreadable or outside
//! `int` is 0), the others with `atoll` (leading number, saturating, 0 if none).

use super::c_isspace;

/// Which comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NumOp {
    Eq,
    Ge,
    Gt,
    Le,
    Lt,
}

impl NumOp {
    pub(crate) fn parse(lower_name: &str) -> Option<NumOp> {
        Some(match lower_name {
            "eq" => NumOp::Eq,
            "ge" => NumOp::Ge,
            "gt" => NumOp::Gt,
            "le" => NumOp::Le,
            "lt" => NumOp::Lt,
            _ => return None,
        })
    }

    pub(crate) fn eval(self, input: &[u8], param: &[u8]) -> bool {
        match self {
            NumOp::Eq => stoi(input) == stoi(param),
            NumOp::Ge => atoll(input) >= atoll(param),
            NumOp::Gt => atoll(input) > atoll(param),
            NumOp::Le => atoll(input) <= atoll(param),
            NumOp::Lt => atoll(input) < atoll(param),
        }
    }
}

/// The leading `[blanks][sign]digits` of a C string: (negative, digits).
fn leading_number(s: &[u8]) -> (bool, &[u8]) {
    let s = &s[..s.iter().position(|&b| b == 0).unwrap_or(s.len())];
    let start = s.iter().position(|&b| !c_isspace(b)).unwrap_or(s.len());
    let mut s = &s[start..];
    let mut neg = false;
    if let Some(&c) = s.first() {
        if c == b'+' || c == b'-' {
            neg = c == b'-';
            s = &s[1..];
        }
    }
    let end = s.iter().position(|b| !b.is_ascii_digit()).unwrap_or(s.len());
    (neg, &s[..end])
}

/// glibc `atoll`: saturates on overflow, 0 without digits.
pub(crate) fn atoll(s: &[u8]) -> i64 {
    let (neg, digits) = leading_number(s);
    let mut v: i64 = 0;
    for &d in digits {
        let d = i64::from(d - b'0');
        v = match v
            .checked_mul(10)
            .and_then(|v| if neg { v.checked_sub(d) } else { v.checked_add(d) })
        {
            Some(v) => v,
            None => return if neg { i64::MIN } else { i64::MAX },
        };
    }
    v
}

/// `std::stoi` inside `try { } catch (...) { 0 }`.
fn stoi(s: &[u8]) -> i64 {
    let (_, digits) = leading_number(s);
    if digits.is_empty() {
        return 0;
    }
    let v = atoll(s);
    if v < i64::from(i32::MIN) || v > i64::from(i32::MAX) {
        0
    } else {
        v
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_ctx::eval;
    use super::*;

    #[test]
    fn reads_numbers_like_c() {
        assert_eq!(atoll(b"  42abc"), 42);
        assert_eq!(atoll(b"-7"), -7);
        assert_eq!(atoll(b"abc"), 0);
        assert_eq!(atoll(b"99999999999999999999"), i64::MAX);
        assert_eq!(stoi(b"99999999999"), 0);
        assert_eq!(stoi(b"\t+12"), 12);
    }

    #[test]
    fn comparisons() {
        assert!(eval("eq", "0", b""));
        assert!(eval("eq", "5", b"5 apples"));
        assert!(eval("gt", "1", b"2"));
        assert!(!eval("gt", "2", b"2"));
        assert!(eval("ge", "2", b"2"));
        assert!(eval("lt", "1", b"0"));
        assert!(eval("le", "1", b"1"));
        assert!(eval("lt", "1", b"x"));
    }
}
