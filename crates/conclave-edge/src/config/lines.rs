//! Where a key of the configuration text is: its line, for error messages.
//!
//! The schema is plain serde types (so it can be built and written as a value);
//! validation names a key by its path (`server[1].tls.certificate`) and this
//! module finds the span of its value in the text it came from.

use std::ops::Range;
use toml::de::{DeTable, DeValue};
use toml::Spanned;

/// One step of a key path: a table key or an array index.
#[derive(Clone, Copy, Debug)]
pub enum Key<'a> {
    /// A key of a table.
    Name(&'a str),
    /// An element of an array (of tables).
    Index(usize),
}

impl<'a> From<&'a str> for Key<'a> {
    fn from(s: &'a str) -> Self {
        Key::Name(s)
    }
}

impl From<usize> for Key<'_> {
    fn from(i: usize) -> Self {
        Key::Index(i)
    }
}

/// The text of a configuration, parsed for spans.
pub struct Lines<'t> {
    text: &'t str,
    root: Option<Spanned<DeTable<'t>>>,
}

impl<'t> Lines<'t> {
    /// Spans of `text` (which has already deserialised: a parse error here
    /// only makes every line unknown).
    pub fn new(text: &'t str) -> Lines<'t> {
        Lines {
            text,
            root: DeTable::parse(text).ok(),
        }
    }

    /// No text (a configuration built as a value): every line is unknown.
    pub fn none() -> Lines<'static> {
        Lines { text: "", root: None }
    }

    /// The span of the value at `path`, if it is written in the text.
    pub fn span(&self, path: &[Key<'_>]) -> Option<Range<usize>> {
        let root = self.root.as_ref()?;
        let mut span = root.span();
        let mut table: Option<&DeTable<'_>> = Some(root.get_ref());
        let mut value: Option<&DeValue<'_>> = None;
        for step in path {
            let next = match (*step, table, value) {
                (Key::Name(k), Some(t), _) => t.iter().find(|(n, _)| n.get_ref() == k).map(|(_, v)| v),
                (Key::Index(i), _, Some(DeValue::Array(a))) => a.get(i),
                _ => None,
            }?;
            span = next.span();
            value = Some(next.get_ref());
            table = match next.get_ref() {
                DeValue::Table(t) => Some(t),
                _ => None,
            };
        }
        Some(span)
    }

    /// The 1-based line of a span; 0 for none or for the empty span at 0
    /// (a default value, never written).
    pub fn line_of(&self, span: Option<Range<usize>>) -> usize {
        match span {
            None => 0,
            Some(s) if s.is_empty() && s.start == 0 => 0,
            Some(s) => {
                self.text[..s.start.min(self.text.len())]
                    .bytes()
                    .filter(|&b| b == b'\n')
                    .count()
                    + 1
            }
        }
    }
}
