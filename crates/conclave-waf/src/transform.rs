//! PLACEHOLDER until `s6-ops` lands (the ops helper owns this module): the transformation API of
//! contracts6.md with `lowercase` and `urlDecode`; other names parse and leave the value as is.

use std::borrow::Cow;

/// A parsed transformation (placeholder subset).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Transform {
    Lowercase,
    UrlDecode,
    Identity,
}

impl Transform {
    pub(crate) fn parse(name: &str) -> Option<Transform> {
        Some(match name.to_ascii_lowercase().as_str() {
            "lowercase" => Transform::Lowercase,
            "urldecode" | "urldecodeuni" => Transform::UrlDecode,
            _ => Transform::Identity,
        })
    }

    pub(crate) fn apply<'a>(&self, input: Cow<'a, [u8]>) -> Cow<'a, [u8]> {
        match self {
            Transform::Lowercase => Cow::Owned(input.to_ascii_lowercase()),
            Transform::UrlDecode => {
                let mut v = input.into_owned();
                crate::request::url_decode_in_place(&mut v);
                Cow::Owned(v)
            }
            Transform::Identity => input,
        }
    }
}
