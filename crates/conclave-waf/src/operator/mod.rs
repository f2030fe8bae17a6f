//! PLACEHOLDER until `s6-ops` lands (the ops helper owns this module): the operator API of
//! contracts6.md with a few simple operators, so the interpreter compiles and its control flow can
//! be tested. Unknown operators parse and never match.

use std::borrow::Cow;
use std::path::Path;

/// Callbacks an operator uses while it runs (macro expansion, captures, the matched string).
pub(crate) trait OpContext {
    fn expand(&self, text: &str) -> Cow<'_, str>;
    fn capture_wanted(&self) -> bool;
    fn set_capture(&mut self, i: usize, value: &[u8]);
    fn set_matched(&mut self, value: &[u8]);
}

/// A parsed operator (placeholder subset).
#[derive(Debug)]
pub(crate) enum Operator {
    Rx(regex::bytes::Regex),
    Num(&'static str, String),
    Streq(String),
    Contains(String),
    Within(String),
    Unconditional,
    Never,
}

impl Operator {
    pub(crate) fn parse(name: &str, arg: &str, _dir: &Path) -> Result<Operator, String> {
        Ok(match name.to_ascii_lowercase().as_str() {
            "rx" => match regex::bytes::RegexBuilder::new(arg).size_limit(64 << 20).build() {
                Ok(r) => Operator::Rx(r),
                Err(_) => Operator::Never,
            },
            "eq" => Operator::Num("eq", arg.into()),
            "ge" => Operator::Num("ge", arg.into()),
            "gt" => Operator::Num("gt", arg.into()),
            "lt" => Operator::Num("lt", arg.into()),
            "le" => Operator::Num("le", arg.into()),
            "streq" => Operator::Streq(arg.into()),
            "contains" => Operator::Contains(arg.into()),
            "within" => Operator::Within(arg.into()),
            "unconditionalmatch" => Operator::Unconditional,
            _ => Operator::Never,
        })
    }

    pub(crate) fn eval(&self, input: &[u8], ctx: &mut dyn OpContext) -> bool {
        let num = |b: &[u8]| -> i64 { String::from_utf8_lossy(b).trim().parse().unwrap_or(0) };
        match self {
            Operator::Rx(r) => match r.captures(input) {
                Some(c) => {
                    if ctx.capture_wanted() {
                        for i in 0..c.len().min(10) {
                            if let Some(m) = c.get(i) {
                                ctx.set_capture(i, m.as_bytes());
                            }
                        }
                    }
                    ctx.set_matched(c.get(0).map_or(&b""[..], |m| m.as_bytes()));
                    true
                }
                None => false,
            },
            Operator::Num(op, arg) => {
                let a = num(input);
                let b = num(ctx.expand(arg).as_bytes());
                match *op {
                    "eq" => a == b,
                    "ge" => a >= b,
                    "gt" => a > b,
                    "lt" => a < b,
                    _ => a <= b,
                }
            }
            Operator::Streq(s) => ctx.expand(s).as_bytes() == input,
            Operator::Contains(s) => {
                let s = ctx.expand(s);
                input.windows(s.len().max(1)).any(|w| w == s.as_bytes())
            }
            Operator::Within(s) => {
                let s = ctx.expand(s);
                !input.is_empty() && s.as_bytes().windows(input.len()).any(|w| w == input)
            }
            Operator::Unconditional => true,
            Operator::Never => false,
        }
    }
}
