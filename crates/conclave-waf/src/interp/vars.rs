//! Rule variables of the interpreter: the names ModSecurity v3 knows, how `VAR:key`, `VAR:/regex/`,
//! `&VAR` and `!VAR:key` select from them, and how a selection yields `(name, value)` pairs from a
//! request and its transaction state.

use std::borrow::Cow;

use regex::bytes::Regex;

/// A variable (or collection) a rule can inspect. Variant names mirror ModSecurity's variable
/// names (`MATCHED_VAR` is `MatchedVar`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(clippy::enum_variant_names)]
pub(crate) enum Var {
    Args,
    ArgsGet,
    ArgsPost,
    ArgsNames,
    ArgsGetNames,
    ArgsPostNames,
    ArgsCombinedSize,
    QueryString,
    RequestUri,
    RequestUriRaw,
    RequestFilename,
    RequestBasename,
    RequestLine,
    RequestMethod,
    RequestProtocol,
    RequestHeaders,
    RequestHeadersNames,
    RequestCookies,
    RequestCookiesNames,
    RequestBody,
    RequestBodyLength,
    Files,
    FilesNames,
    FilesSizes,
    FilesCombinedSize,
    Xml,
    RemoteAddr,
    MatchedVar,
    MatchedVarName,
    MatchedVars,
    MatchedVarsNames,
    ReqbodyError,
    ReqbodyErrorMsg,
    ReqbodyProcessor,
    ReqbodyProcessorError,
    MultipartStrictError,
    MultipartUnmatchedBoundary,
    /// One of the `MULTIPART_*` flags other than the two above (always 0 unless the parser sets it).
    MultipartFlag(MultipartFlag),
    MultipartPartHeaders,
    MultipartFilename,
    MultipartName,
    UniqueId,
    Duration,
    Time,
    TimeEpoch,
    WebAppId,
    /// `TX` and the persistent collections (`IP`, `GLOBAL`, `SESSION`, `USER`, `RESOURCE`), which
    /// live only for the transaction here (no persistent storage).
    Collection(Coll),
    /// `GEO` (no database: always empty).
    Geo,
    /// `ENV` (not exposed: always empty).
    Env,
    /// `RULE` (the rule's own metadata, for macros: `%{rule.id}`, `%{rule.msg}`).
    Rule,
}

/// The `MULTIPART_*` strict-validation flags.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(clippy::enum_variant_names)]
pub(crate) enum MultipartFlag {
    BoundaryQuoted,
    BoundaryWhitespace,
    DataBefore,
    DataAfter,
    HeaderFolding,
    LfLine,
    MissingSemicolon,
    InvalidQuoting,
    InvalidPart,
    InvalidHeaderFolding,
    FileLimitExceeded,
    CrlfLfLines,
}

/// A collection of name/value variables kept per transaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Coll {
    Tx,
    Ip,
    Global,
    Session,
    User,
    Resource,
}

impl Coll {
    pub(crate) fn parse(name: &str) -> Option<Coll> {
        Some(match name.to_ascii_lowercase().as_str() {
            "tx" => Coll::Tx,
            "ip" => Coll::Ip,
            "global" => Coll::Global,
            "session" => Coll::Session,
            "user" => Coll::User,
            "resource" => Coll::Resource,
            _ => return None,
        })
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Coll::Tx => "TX",
            Coll::Ip => "IP",
            Coll::Global => "GLOBAL",
            Coll::Session => "SESSION",
            Coll::User => "USER",
            Coll::Resource => "RESOURCE",
        }
    }

    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

/// Whether a variable is a response variable (phases 3 and 4), which this WAF does not see.
pub(crate) fn is_response_var(name: &str) -> bool {
    let n = name.to_ascii_uppercase();
    n.starts_with("RESPONSE_") || n == "STATUS_LINE" || n == "OUTBOUND_DATA_ERROR"
}

impl Var {
    /// Parses a variable name (case-insensitive); `None` if ModSecurity has no such variable or it
    /// is one the interpreter does not implement.
    pub(crate) fn parse(name: &str) -> Option<Var> {
        use MultipartFlag as M;
        if let Some(c) = Coll::parse(name) {
            return Some(Var::Collection(c));
        }
        Some(match name.to_ascii_uppercase().as_str() {
            "ARGS" => Var::Args,
            "ARGS_GET" => Var::ArgsGet,
            "ARGS_POST" => Var::ArgsPost,
            "ARGS_NAMES" => Var::ArgsNames,
            "ARGS_GET_NAMES" => Var::ArgsGetNames,
            "ARGS_POST_NAMES" => Var::ArgsPostNames,
            "ARGS_COMBINED_SIZE" => Var::ArgsCombinedSize,
            "QUERY_STRING" => Var::QueryString,
            "REQUEST_URI" => Var::RequestUri,
            "REQUEST_URI_RAW" => Var::RequestUriRaw,
            "REQUEST_FILENAME" => Var::RequestFilename,
            "REQUEST_BASENAME" => Var::RequestBasename,
            "REQUEST_LINE" => Var::RequestLine,
            "REQUEST_METHOD" => Var::RequestMethod,
            "REQUEST_PROTOCOL" => Var::RequestProtocol,
            "REQUEST_HEADERS" => Var::RequestHeaders,
            "REQUEST_HEADERS_NAMES" => Var::RequestHeadersNames,
            "REQUEST_COOKIES" => Var::RequestCookies,
            "REQUEST_COOKIES_NAMES" => Var::RequestCookiesNames,
            "REQUEST_BODY" => Var::RequestBody,
            "REQUEST_BODY_LENGTH" => Var::RequestBodyLength,
            "FILES" => Var::Files,
            "FILES_NAMES" => Var::FilesNames,
            "FILES_SIZES" => Var::FilesSizes,
            "FILES_COMBINED_SIZE" => Var::FilesCombinedSize,
            "XML" => Var::Xml,
            "REMOTE_ADDR" => Var::RemoteAddr,
            "MATCHED_VAR" => Var::MatchedVar,
            "MATCHED_VAR_NAME" => Var::MatchedVarName,
            "MATCHED_VARS" => Var::MatchedVars,
            "MATCHED_VARS_NAMES" => Var::MatchedVarsNames,
            "REQBODY_ERROR" => Var::ReqbodyError,
            "REQBODY_ERROR_MSG" => Var::ReqbodyErrorMsg,
            "REQBODY_PROCESSOR" => Var::ReqbodyProcessor,
            "REQBODY_PROCESSOR_ERROR" => Var::ReqbodyProcessorError,
            "MULTIPART_STRICT_ERROR" => Var::MultipartStrictError,
            "MULTIPART_UNMATCHED_BOUNDARY" => Var::MultipartUnmatchedBoundary,
            "MULTIPART_BOUNDARY_QUOTED" => Var::MultipartFlag(M::BoundaryQuoted),
            "MULTIPART_BOUNDARY_WHITESPACE" => Var::MultipartFlag(M::BoundaryWhitespace),
            "MULTIPART_DATA_BEFORE" => Var::MultipartFlag(M::DataBefore),
            "MULTIPART_DATA_AFTER" => Var::MultipartFlag(M::DataAfter),
            "MULTIPART_HEADER_FOLDING" => Var::MultipartFlag(M::HeaderFolding),
            "MULTIPART_LF_LINE" => Var::MultipartFlag(M::LfLine),
            "MULTIPART_MISSING_SEMICOLON" => Var::MultipartFlag(M::MissingSemicolon),
            "MULTIPART_INVALID_QUOTING" => Var::MultipartFlag(M::InvalidQuoting),
            "MULTIPART_INVALID_PART" => Var::MultipartFlag(M::InvalidPart),
            "MULTIPART_INVALID_HEADER_FOLDING" => Var::MultipartFlag(M::InvalidHeaderFolding),
            "MULTIPART_FILE_LIMIT_EXCEEDED" => Var::MultipartFlag(M::FileLimitExceeded),
            "MULTIPART_CRLF_LF_LINES" => Var::MultipartFlag(M::CrlfLfLines),
            "MULTIPART_PART_HEADERS" => Var::MultipartPartHeaders,
            "MULTIPART_FILENAME" => Var::MultipartFilename,
            "MULTIPART_NAME" => Var::MultipartName,
            "UNIQUE_ID" => Var::UniqueId,
            "DURATION" => Var::Duration,
            "TIME" => Var::Time,
            "TIME_EPOCH" => Var::TimeEpoch,
            "WEBAPPID" => Var::WebAppId,
            "GEO" => Var::Geo,
            "ENV" => Var::Env,
            "RULE" => Var::Rule,
            _ => return None,
        })
    }

    /// Whether `VAR:key` selects members (otherwise the variable has one value and takes no key).
    pub(crate) fn is_collection(self) -> bool {
        matches!(
            self,
            Var::Args
                | Var::ArgsGet
                | Var::ArgsPost
                | Var::ArgsNames
                | Var::ArgsGetNames
                | Var::ArgsPostNames
                | Var::RequestHeaders
                | Var::RequestHeadersNames
                | Var::RequestCookies
                | Var::RequestCookiesNames
                | Var::Files
                | Var::FilesNames
                | Var::FilesSizes
                | Var::Xml
                | Var::MatchedVars
                | Var::MatchedVarsNames
                | Var::MultipartPartHeaders
                | Var::Collection(_)
                | Var::Geo
                | Var::Env
                | Var::Rule
        )
    }

    /// The name ModSecurity prints for the variable (`MATCHED_VAR_NAME` is `NAME` or `NAME:key`).
    pub(crate) fn name(self) -> &'static str {
        match self {
            Var::Args => "ARGS",
            Var::ArgsGet => "ARGS_GET",
            Var::ArgsPost => "ARGS_POST",
            Var::ArgsNames => "ARGS_NAMES",
            Var::ArgsGetNames => "ARGS_GET_NAMES",
            Var::ArgsPostNames => "ARGS_POST_NAMES",
            Var::ArgsCombinedSize => "ARGS_COMBINED_SIZE",
            Var::QueryString => "QUERY_STRING",
            Var::RequestUri => "REQUEST_URI",
            Var::RequestUriRaw => "REQUEST_URI_RAW",
            Var::RequestFilename => "REQUEST_FILENAME",
            Var::RequestBasename => "REQUEST_BASENAME",
            Var::RequestLine => "REQUEST_LINE",
            Var::RequestMethod => "REQUEST_METHOD",
            Var::RequestProtocol => "REQUEST_PROTOCOL",
            Var::RequestHeaders => "REQUEST_HEADERS",
            Var::RequestHeadersNames => "REQUEST_HEADERS_NAMES",
            Var::RequestCookies => "REQUEST_COOKIES",
            Var::RequestCookiesNames => "REQUEST_COOKIES_NAMES",
            Var::RequestBody => "REQUEST_BODY",
            Var::RequestBodyLength => "REQUEST_BODY_LENGTH",
            Var::Files => "FILES",
            Var::FilesNames => "FILES_NAMES",
            Var::FilesSizes => "FILES_SIZES",
            Var::FilesCombinedSize => "FILES_COMBINED_SIZE",
            Var::Xml => "XML",
            Var::RemoteAddr => "REMOTE_ADDR",
            Var::MatchedVar => "MATCHED_VAR",
            Var::MatchedVarName => "MATCHED_VAR_NAME",
            Var::MatchedVars => "MATCHED_VARS",
            Var::MatchedVarsNames => "MATCHED_VARS_NAMES",
            Var::ReqbodyError => "REQBODY_ERROR",
            Var::ReqbodyErrorMsg => "REQBODY_ERROR_MSG",
            Var::ReqbodyProcessor => "REQBODY_PROCESSOR",
            Var::ReqbodyProcessorError => "REQBODY_PROCESSOR_ERROR",
            Var::MultipartStrictError => "MULTIPART_STRICT_ERROR",
            Var::MultipartUnmatchedBoundary => "MULTIPART_UNMATCHED_BOUNDARY",
            Var::MultipartFlag(_) => "MULTIPART_FLAG",
            Var::MultipartPartHeaders => "MULTIPART_PART_HEADERS",
            Var::MultipartFilename => "MULTIPART_FILENAME",
            Var::MultipartName => "MULTIPART_NAME",
            Var::UniqueId => "UNIQUE_ID",
            Var::Duration => "DURATION",
            Var::Time => "TIME",
            Var::TimeEpoch => "TIME_EPOCH",
            Var::WebAppId => "WEBAPPID",
            Var::Collection(c) => c.name(),
            Var::Geo => "GEO",
            Var::Env => "ENV",
            Var::Rule => "RULE",
        }
    }
}

/// Which members of a collection a selector takes.
#[derive(Clone, Debug)]
pub(crate) enum Key {
    /// The whole collection (or the single value of a scalar variable).
    All,
    /// One member by name (compared case-insensitively; stored lowercase).
    Name(Box<[u8]>),
    /// Members whose name matches (`VAR:/regex/`, case-insensitive as in ModSecurity).
    Regex(Regex),
    /// `VAR:/^literal/` with a literal of letters, digits, `_` and `-` (the CRS's
    /// `TX:/^MSC_/`, `TX:/^header_name_/`): members whose name starts with it, ASCII case
    /// folded (as PCRE without UTF folds; lowercase here) — a comparison instead of a regex
    /// search per member.
    Prefix(Box<[u8]>),
}

impl Key {
    /// Whether the member `name` is selected. Inlined: called per member of every collected
    /// collection, mostly with [`Key::All`].
    #[inline]
    pub(crate) fn selects(&self, name: &[u8]) -> bool {
        match self {
            Key::All => true,
            Key::Name(k) => k.eq_ignore_ascii_case(name),
            Key::Regex(r) => r.is_match(name),
            Key::Prefix(p) => name.len() >= p.len() && name[..p.len()].eq_ignore_ascii_case(p),
        }
    }
}

/// One `VAR`, `VAR:key`, `VAR:/re/` or `&VAR...` of a rule's variable list.
#[derive(Clone, Debug)]
pub(crate) struct Target {
    pub var: Var,
    pub key: Key,
    /// `&VAR`: the number of selected values instead of the values.
    pub count: bool,
}

impl Target {
    /// Parses `VAR`, `VAR:key`, `VAR:'key'`, `VAR:/re/` or `&VAR:...` (without a leading `!`).
    pub(crate) fn parse(s: &str) -> Result<Target, String> {
        let (count, s) = match s.strip_prefix('&') {
            Some(r) => (true, r),
            None => (false, s),
        };
        // `XML:/*` and other XPath keys: the key is everything after the first ':'.
        let (name, key) = match s.split_once(':') {
            Some((n, k)) => (n, Some(k)),
            None => (s, None),
        };
        let var = Var::parse(name).ok_or_else(|| format!("variable `{name}`"))?;
        let key = match key {
            None => Key::All,
            Some(k) => {
                let k = k
                    .strip_prefix('\'')
                    .and_then(|k| k.strip_suffix('\''))
                    .unwrap_or(k);
                if !var.is_collection() {
                    return Err(format!("variable `{name}` takes no key"));
                }
                if var == Var::Xml {
                    // XPath expressions select nothing without an XML parser (see docs/waf.md).
                    Key::Name(k.as_bytes().into())
                } else if let Some(p) = k
                    .strip_prefix("/^")
                    .and_then(|k| k.strip_suffix('/'))
                    .filter(|p| {
                        !p.is_empty()
                            && p.bytes()
                                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
                    })
                {
                    Key::Prefix(p.to_ascii_lowercase().into_bytes().into())
                } else if let Some(re) = k.strip_prefix('/').and_then(|k| k.strip_suffix('/')) {
                    let r = regex::bytes::RegexBuilder::new(re)
                        .case_insensitive(true)
                        .build()
                        .map_err(|e| format!("regular-expression key `{k}`: {e}"))?;
                    Key::Regex(r)
                } else if k.is_empty() {
                    return Err(format!("empty key in `{s}`"));
                } else {
                    Key::Name(k.to_ascii_lowercase().into_bytes().into())
                }
            }
        };
        Ok(Target { var, key, count })
    }

    /// Whether an exclusion `!self` removes the value named (`var`, `name`).
    pub(crate) fn excludes(&self, var: Var, name: &[u8]) -> bool {
        self.var == var && self.key.selects(name)
    }
}

/// A value a target yielded: its variable, member name (empty for scalars) and bytes.
#[derive(Debug)]
pub(crate) struct Value<'r> {
    pub var: Var,
    pub key: Cow<'r, [u8]>,
    pub value: Cow<'r, [u8]>,
}

impl Value<'_> {
    /// `MATCHED_VAR_NAME` form: `ARGS:id`, `REQUEST_URI`, `TX:0`.
    pub(crate) fn full_name(&self) -> String {
        if self.key.is_empty() && !self.var.is_collection() {
            self.var.name().to_string()
        } else {
            format!("{}:{}", self.var.name(), String::from_utf8_lossy(&self.key))
        }
    }
}

impl Value<'_> {
    /// [`Self::full_name`] as the shared string `MATCHED_VAR_NAME` keeps, composed on the stack
    /// for the usual short names (one allocation, not two).
    pub(crate) fn full_name_rc(&self) -> std::rc::Rc<str> {
        let var = self.var.name().as_bytes();
        let scalar = self.key.is_empty() && !self.var.is_collection();
        let len = if scalar {
            var.len()
        } else {
            var.len() + 1 + self.key.len()
        };
        let mut buf = [0u8; 128];
        if len > buf.len() {
            return self.full_name().into();
        }
        buf[..var.len()].copy_from_slice(var);
        if !scalar {
            buf[var.len()] = b':';
            buf[var.len() + 1..len].copy_from_slice(&self.key);
        }
        match std::str::from_utf8(&buf[..len]) {
            Ok(s) => s.into(),
            // A key that is not UTF-8: as `full_name` (lossy).
            Err(_) => self.full_name().into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `VAR:/^literal/` keys compare a prefix (ASCII case folded) and select what the regex
    /// selects; other regular-expression keys stay regexes.
    #[test]
    fn literal_prefix_keys_select_as_their_regex() {
        let t = Target::parse("TX:/^MSC_/").unwrap();
        assert!(matches!(&t.key, Key::Prefix(p) if &**p == b"msc_"));
        let re = regex::bytes::RegexBuilder::new("^MSC_")
            .case_insensitive(true)
            .build()
            .unwrap();
        for name in [
            &b"msc_pcre_limits_exceeded"[..],
            b"MSC_",
            b"Msc_x",
            b"xmsc_",
            b"msc",
            b"",
            b"msc-",
        ] {
            assert_eq!(t.key.selects(name), re.is_match(name), "{name:?}");
        }
        let t = Target::parse("TX:/^header_name_/").unwrap();
        assert!(t.key.selects(b"header_name_x-forwarded-for"));
        assert!(!t.key.selects(b"header_name"));
        assert!(matches!(Target::parse("TX:/^a.b/").unwrap().key, Key::Regex(_)));
        assert!(matches!(Target::parse("TX:/msc_/").unwrap().key, Key::Regex(_)));
    }

    /// The stack-composed `MATCHED_VAR_NAME` is `full_name`'s text.
    #[test]
    fn full_name_rc_is_full_name() {
        let long = vec![b'k'; 200];
        for (var, key) in [
            (Var::RequestUri, &b""[..]),
            (Var::Args, b"id"),
            (Var::Collection(Coll::Tx), b"0"),
            (Var::RequestHeaders, b""),
            (Var::Args, b"\xff\xfe"),
            (Var::Args, &long),
        ] {
            let v = Value {
                var,
                key: Cow::Borrowed(key),
                value: Cow::Borrowed(b"x"),
            };
            assert_eq!(&*v.full_name_rc(), v.full_name().as_str());
        }
        let v = Value {
            var: Var::Args,
            key: Cow::Borrowed(b"a\xffb"),
            value: Cow::Borrowed(b""),
        };
        assert_eq!(&*v.full_name_rc(), "ARGS:a\u{fffd}b");
    }
}
