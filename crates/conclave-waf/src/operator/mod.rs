//! ModSecurity operators (`@rx`, `@pm`, `@detectSQLi`, `@ipMatch`, ...) with libmodsecurity
//! 3.0.9's exact semantics, one file per family. A rule's operator is parsed once at load
//! ([`Operator::parse`]) and evaluated per value ([`Operator::eval`]); arguments holding `%{...}`
//! macros are expanded per evaluation through the [`OpContext`] the rule engine supplies.
//!
//! Negation (`!@op`) belongs to the rule, not to the operator.

#[cfg(all(test, feature = "modsecurity"))]
mod differential;
mod inject;
mod ip;
mod numeric;
mod pm;
mod rx;
mod string;
mod validate;

use std::borrow::Cow;
use std::path::Path;

pub use inject::{set_verdict_cache_entries, DEFAULT_VERDICT_CACHE, MAX_VERDICT_CACHE};
pub(crate) use ip::IpSet;
pub(crate) use numeric::NumOp;
pub(crate) use pm::PhraseSet;
pub(crate) use rx::{parse_as_rust, Rx};
pub(crate) use string::StrOp;

pub(crate) use validate::ByteRanges;

/// What an operator needs from the transaction while it runs.
pub(crate) trait OpContext {
    /// Expands `%{collection.key}` macros in an operator argument.
    fn expand(&self, text: &str) -> Cow<'_, str>;
    /// Whether the rule has the `capture` action (operators then fill `TX:0..9`).
    fn capture_wanted(&self) -> bool;
    /// Stores capture `i` (`TX:i`).
    fn set_capture(&mut self, i: usize, value: &[u8]);
    /// The matched string for the log and `MATCHED_VAR`-like uses (SQLi fingerprint etc.).
    fn set_matched(&mut self, value: &[u8]);
}

/// An operator argument: fixed at load, or holding macros expanded per evaluation
/// (ModSecurity expands `%{...}` in every operator that takes a string).
#[derive(Debug, Clone)]
pub(crate) enum Arg {
    /// No `%{` in the argument.
    Fixed(Box<[u8]>),
    /// Expanded per evaluation.
    Macro(Box<str>),
}

impl Arg {
    fn new(arg: &str) -> Arg {
        if arg.contains("%{") {
            Arg::Macro(arg.into())
        } else {
            Arg::Fixed(arg.as_bytes().into())
        }
    }

    /// The argument's value for this evaluation.
    fn value<'c>(&'c self, ctx: &'c dyn OpContext) -> Cow<'c, [u8]> {
        match self {
            Arg::Fixed(b) => Cow::Borrowed(b),
            Arg::Macro(m) => match ctx.expand(m) {
                Cow::Borrowed(s) => Cow::Borrowed(s.as_bytes()),
                Cow::Owned(s) => Cow::Owned(s.into_bytes()),
            },
        }
    }
}

/// A parsed operator.
#[derive(Debug)]
pub(crate) enum Operator {
    /// `@rx`: PCRE semantics (DOTALL and MULTILINE, as libmodsecurity compiles every pattern).
    Rx(Rx),
    /// `@pm` and `@pmFromFile`: case-insensitive phrase match anywhere in the value.
    Pm(PhraseSet),
    /// `@detectSQLi`: libinjection's SQL tokenizer.
    DetectSqli,
    /// `@detectXSS`: libinjection's HTML5 tokenizer.
    DetectXss,
    /// `@ipMatch` and `@ipMatchFromFile`: IPv4/IPv6 addresses and CIDR blocks.
    IpMatch(IpSet),
    /// `@validateByteRange`: matches when a byte falls outside the allowed ranges.
    ValidateByteRange(ByteRanges),
    /// `@validateUrlEncoding`: matches invalid `%XX` escapes.
    ValidateUrlEncoding,
    /// `@validateUtf8Encoding`: matches invalid, overlong or truncated UTF-8.
    ValidateUtf8Encoding,
    /// `@eq @ge @gt @lt @le`: integer comparisons (argument may be a macro).
    Num(NumOp, Arg),
    /// `@streq @contains @containsWord @within @beginsWith @endsWith @strmatch`.
    Str(StrOp, Arg),
    /// `@unconditionalMatch`.
    Unconditional,
    /// `@noMatch`.
    NoMatch,
    /// `@geoLookup` and `@rbl`: they need a GeoIP database (`SecGeoLookupDb`) or DNS, which
    /// conclave has not; they load (the CRS has them, behind settings that are off by default)
    /// and never match, as libmodsecurity's do without a database or network.
    Unavailable(&'static str),
}

/// Operators ModSecurity has that conclave refuses by name (they need network, files or
/// state outside a request, or only apply to responses).
const REFUSED: &[&str] = &[
    "rsub",
    "gsblookup",
    "inspectfile",
    "fuzzyhash",
    "verifycc",
    "verifycpf",
    "verifyssn",
    "verifysvnr",
    "validatedtd",
    "validateschema",
    "validatehash",
];

impl Operator {
    /// Parses `name` (without `@`) and its argument as written in the rule (macros unexpanded);
    /// `dir` is the rule file's directory, against which `@pmFromFile` / `@ipMatchFromFile`
    /// resolve relative paths. The error says what is wrong, for the loader to place.
    pub(crate) fn parse(name: &str, arg: &str, dir: &Path) -> Result<Operator, String> {
        let lower = name.to_ascii_lowercase();
        Ok(match lower.as_str() {
            "rx" => Operator::Rx(Rx::new(arg)?),
            "pm" => Operator::Pm(PhraseSet::from_param(arg)?),
            "pmfromfile" | "pmf" => Operator::Pm(PhraseSet::from_files(arg, dir)?),
            "detectsqli" => Operator::DetectSqli,
            "detectxss" => Operator::DetectXss,
            "ipmatch" => Operator::IpMatch(IpSet::from_param(arg)?),
            "ipmatchfromfile" | "ipmatchf" => Operator::IpMatch(IpSet::from_files(arg, dir)?),
            "validatebyterange" => Operator::ValidateByteRange(ByteRanges::parse(arg)?),
            "validateurlencoding" => Operator::ValidateUrlEncoding,
            "validateutf8encoding" => Operator::ValidateUtf8Encoding,
            "unconditionalmatch" => Operator::Unconditional,
            "nomatch" => Operator::NoMatch,
            "geolookup" => Operator::Unavailable("geoLookup"),
            "rbl" => Operator::Unavailable("rbl"),
            _ => {
                if let Some(op) = NumOp::parse(&lower) {
                    Operator::Num(op, Arg::new(arg))
                } else if let Some(op) = StrOp::parse(&lower) {
                    Operator::Str(op, Arg::new(arg))
                } else if REFUSED.contains(&lower.as_str()) {
                    return Err(format!("operator @{name} is not supported"));
                } else {
                    return Err(format!("unknown operator @{name}"));
                }
            }
        })
    }

    /// Does `input` match? Captures and the matched string go to `ctx`.
    pub(crate) fn eval(&self, input: &[u8], ctx: &mut dyn OpContext) -> bool {
        match self {
            Operator::Rx(rx) => rx.eval(input, ctx),
            Operator::Pm(set) => set.eval(input, ctx),
            Operator::DetectSqli => inject::detect_sqli(input, ctx),
            Operator::DetectXss => inject::detect_xss(input),
            Operator::IpMatch(set) => set.contains_text(input),
            Operator::ValidateByteRange(r) => r.any_outside(input),
            Operator::ValidateUrlEncoding => validate::url_encoding_invalid(input),
            Operator::ValidateUtf8Encoding => validate::utf8_invalid(input),
            Operator::Num(op, arg) => {
                let param = arg.value(ctx);
                op.eval(input, &param)
            }
            Operator::Str(op, arg) => {
                let (hit, capture) = {
                    let param = arg.value(ctx);
                    let hit = op.eval(input, &param);
                    let capture = hit && *op == StrOp::Contains && ctx.capture_wanted();
                    (hit, capture.then(|| param.into_owned()))
                };
                if let Some(c) = capture {
                    ctx.set_capture(0, &c);
                }
                hit
            }
            Operator::Unconditional => true,
            Operator::NoMatch | Operator::Unavailable(_) => false,
        }
    }

    /// The regex source when this is a fixed `@rx` (lets the rule engine batch patterns into
    /// its set matchers).
    pub(crate) fn rx_pattern(&self) -> Option<&str> {
        match self {
            Operator::Rx(rx) => rx.fixed_pattern(),
            _ => None,
        }
    }
}

/// C's `isspace` in the "C" locale (space, `\t \n \v \f \r`), which libmodsecurity uses.
pub(crate) fn c_isspace(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

/// Reads a data file of an `@...FromFile` operator, refusing remote URLs.
fn read_data_file(name: &str, dir: &Path) -> Result<String, String> {
    if name.starts_with("http://") || name.starts_with("https://") {
        return Err(format!("{name}: remote data files are not supported"));
    }
    let path = dir.join(name);
    std::fs::read(&path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .map_err(|e| format!("{}: {e}", path.display()))
}

#[cfg(test)]
pub(crate) mod test_ctx {
    //! A recording [`OpContext`] for unit tests.
    use super::*;
    use std::collections::HashMap;

    #[derive(Default)]
    pub(crate) struct Ctx {
        pub vars: HashMap<String, String>,
        pub capture: bool,
        pub captures: Vec<(usize, Vec<u8>)>,
        pub matched: Option<Vec<u8>>,
    }

    impl OpContext for Ctx {
        fn expand(&self, text: &str) -> Cow<'_, str> {
            let mut out = text.to_string();
            for (k, v) in &self.vars {
                out = out.replace(&format!("%{{{k}}}"), v);
            }
            Cow::Owned(out)
        }
        fn capture_wanted(&self) -> bool {
            self.capture
        }
        fn set_capture(&mut self, i: usize, value: &[u8]) {
            self.captures.push((i, value.to_vec()));
        }
        fn set_matched(&mut self, value: &[u8]) {
            self.matched = Some(value.to_vec());
        }
    }

    /// Parses and evaluates one operator on one input.
    pub(crate) fn eval(name: &str, arg: &str, input: &[u8]) -> bool {
        let op = Operator::parse(name, arg, Path::new(".")).unwrap();
        op.eval(input, &mut Ctx::default())
    }
}

#[cfg(test)]
mod tests {
    use super::test_ctx::{eval, Ctx};
    use super::*;

    #[test]
    fn refuses_rsub_by_name() {
        let e = Operator::parse("rsub", "s/a/b/", Path::new(".")).unwrap_err();
        assert_eq!(e, "operator @rsub is not supported");
        let e = Operator::parse("bogus", "", Path::new(".")).unwrap_err();
        assert_eq!(e, "unknown operator @bogus");
    }

    #[test]
    fn unconditional_and_no_match() {
        assert!(eval("unconditionalMatch", "", b"x"));
        assert!(!eval("noMatch", "", b"x"));
        assert!(!eval("geoLookup", "", b"203.0.113.1"));
        assert!(!eval("rbl", "sbl-xbl.spamhaus.org", b"127.0.0.2"));
    }

    #[test]
    fn macro_argument_is_expanded_per_evaluation() {
        let op = Operator::parse("ge", "%{tx.threshold}", Path::new(".")).unwrap();
        let mut ctx = Ctx::default();
        ctx.vars.insert("tx.threshold".into(), "5".into());
        assert!(op.eval(b"5", &mut ctx));
        assert!(!op.eval(b"4", &mut ctx));
        let op = Operator::parse("within", "%{tx.allowed_methods}", Path::new(".")).unwrap();
        ctx.vars
            .insert("tx.allowed_methods".into(), "GET HEAD POST".into());
        assert!(op.eval(b"HEAD", &mut ctx));
        assert!(!op.eval(b"PUT", &mut ctx));
    }
}
