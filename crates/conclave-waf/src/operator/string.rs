//! String comparisons: `@streq @contains @containsWord @within @beginsWith @endsWith @strmatch`,
//! case-sensitive, on the (macro-expanded) argument, with libmodsecurity's edge cases (an empty
//! argument matches for `@contains`, `@beginsWith`, `@endsWith` and `@containsWord`; an empty
//! value is within anything).

/// Which comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StrOp {
    Streq,
    Contains,
    ContainsWord,
    Within,
    BeginsWith,
    EndsWith,
    /// `@strmatch`: Boyer-Moore-Horspool search in libmodsecurity; a substring test.
    Strmatch,
}

impl StrOp {
    pub(crate) fn parse(lower_name: &str) -> Option<StrOp> {
        Some(match lower_name {
            "streq" => StrOp::Streq,
            "contains" => StrOp::Contains,
            "containsword" => StrOp::ContainsWord,
            "within" => StrOp::Within,
            "beginswith" => StrOp::BeginsWith,
            "endswith" => StrOp::EndsWith,
            "strmatch" => StrOp::Strmatch,
            _ => return None,
        })
    }

    pub(crate) fn eval(self, input: &[u8], param: &[u8]) -> bool {
        match self {
            StrOp::Streq => input == param,
            StrOp::Contains | StrOp::Strmatch => find(input, param, 0).is_some(),
            StrOp::Within => input.is_empty() || find(param, input, 0).is_some(),
            StrOp::BeginsWith => input.starts_with(param),
            StrOp::EndsWith => input.ends_with(param),
            StrOp::ContainsWord => contains_word(input, param),
        }
    }
}

/// libmodsecurity's `ContainsWord::evaluate`: the argument bounded by non-alphanumeric bytes
/// (`_` counts as a boundary there) or the ends of the value.
fn contains_word(input: &[u8], word: &[u8]) -> bool {
    if word.is_empty() {
        return true;
    }
    if input.is_empty() {
        return false;
    }
    if input == word {
        return true;
    }
    // `acceptableChar`: a position inside the value holding a non-word byte.
    let boundary = |pos: Option<usize>| match pos {
        Some(p) if p < input.len() => !input[p].is_ascii_alphanumeric(),
        _ => false,
    };
    let mut from = 0;
    while let Some(pos) = find(input, word, from) {
        let after = pos + word.len();
        if pos == 0 && boundary(Some(after)) {
            return true;
        }
        if after == input.len() && boundary(pos.checked_sub(1)) {
            return true;
        }
        if boundary(pos.checked_sub(1)) && boundary(Some(after)) {
            return true;
        }
        from = pos + 1;
    }
    false
}

/// First occurrence of `needle` in `hay` at or after `from` (an empty needle is found at `from`,
/// as `std::string::find`).
fn find(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    if from > hay.len() {
        return None;
    }
    memchr::memmem::find(&hay[from..], needle).map(|p| p + from)
}

#[cfg(test)]
mod tests {
    use super::super::test_ctx::eval;

    #[test]
    fn streq_and_friends() {
        assert!(eval("streq", "abc", b"abc"));
        assert!(!eval("streq", "abc", b"ABC"));
        assert!(eval("contains", "b", b"abc"));
        assert!(eval("contains", "", b"abc"));
        assert!(eval("beginsWith", "ab", b"abc"));
        assert!(!eval("beginsWith", "abcd", b"abc"));
        assert!(eval("endsWith", "bc", b"abc"));
        assert!(eval("strmatch", "bc", b"abcd"));
    }

    #[test]
    fn within_is_substring_of_argument() {
        assert!(eval("within", "GET HEAD POST", b"HEAD"));
        assert!(eval("within", "GET HEAD POST", b"T HE"));
        assert!(eval("within", "GET", b""));
        assert!(!eval("within", "GET", b"PUT"));
    }

    #[test]
    fn contains_word_needs_boundaries() {
        assert!(eval("containsWord", "select", b"select * from"));
        assert!(eval("containsWord", "select", b"x select"));
        assert!(eval("containsWord", "select", b"a select b"));
        assert!(!eval("containsWord", "select", b"selected"));
        assert!(eval("containsWord", "select", b"_select_"));
        assert!(eval("containsWord", "select", b"selects select"));
        assert!(eval("containsWord", "", b""));
        assert!(!eval("containsWord", "a", b""));
    }
}
