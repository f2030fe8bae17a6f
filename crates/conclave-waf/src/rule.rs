//! One `SecRule` (with its chained links) and `SecDefaultAction`, parsed from directive arguments
//! into the subset conclave understands: variables, operator, transformations, actions.

use std::sync::Arc;

use crate::error::WafError;
use crate::hash::FxHashMap;
use crate::rules_file::Directive;

/// A request variable a rule can inspect.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum VarKind {
    /// `ARGS`: query-string argument values.
    Args,
    /// `ARGS_NAMES`: query-string argument names.
    ArgsNames,
    /// `REQUEST_URI`: the percent-decoded request target (path and query).
    RequestUri,
    /// `REQUEST_FILENAME`: the percent-decoded path without the query.
    RequestFilename,
    /// `REQUEST_HEADERS`: header values.
    RequestHeaders,
    /// `REQUEST_METHOD`.
    RequestMethod,
}

impl VarKind {
    fn parse(name: &str) -> Option<VarKind> {
        Some(match name.to_ascii_uppercase().as_str() {
            "ARGS" => VarKind::Args,
            "ARGS_NAMES" => VarKind::ArgsNames,
            "REQUEST_URI" => VarKind::RequestUri,
            "REQUEST_FILENAME" => VarKind::RequestFilename,
            "REQUEST_HEADERS" => VarKind::RequestHeaders,
            "REQUEST_METHOD" => VarKind::RequestMethod,
            _ => return None,
        })
    }

    /// Whether `VAR:key` selects members of a collection.
    fn is_collection(self) -> bool {
        matches!(self, VarKind::Args | VarKind::ArgsNames | VarKind::RequestHeaders)
    }
}

/// `VAR` or `VAR:key` (keys compare case-insensitively, as ModSecurity does; stored lowercase).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct Target {
    pub kind: VarKind,
    pub key: Option<Box<str>>,
}

/// The `|`-separated variable list of a rule: what it inspects and the `!VAR:key` exclusions.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct Targets {
    pub include: Vec<Target>,
    pub exclude: Vec<Target>,
}

/// A transformation applied to each value before the operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Transform {
    /// `t:lowercase` (ASCII).
    Lowercase,
    /// `t:urlDecode` (`%XX` and `+`, invalid escapes kept).
    UrlDecode,
}

/// Operator kinds of the subset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum OpKind {
    Contains,
    Streq,
    BeginsWith,
    EndsWith,
    Pm,
    Rx,
    Within,
}

/// An operator with its parameter, and whether it is negated (`!@op`).
#[derive(Clone, Debug)]
pub(crate) struct Operator {
    pub kind: OpKind,
    pub negated: bool,
    pub param: String,
}

/// One link of a rule: variables, transformations and the operator.
#[derive(Clone, Debug)]
pub(crate) struct Condition {
    /// Shared: rule sets repeat the same variable list on many rules.
    pub targets: Arc<Targets>,
    /// Transformations after the last `t:none`.
    pub transforms: Vec<Transform>,
    /// Whether the rule said `t:none` (then the default action's transformations do not apply).
    pub has_none: bool,
    pub op: Operator,
}

/// What a rule does when it matches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Disruptive {
    /// No disruptive action given.
    None,
    /// `pass`.
    Pass,
    /// `deny`.
    Deny,
    /// `block`: the phase's `SecDefaultAction` disruptive action.
    Block,
}

/// Phase-independent actions collected from a rule's (or a default action's) action list.
#[derive(Debug, Default)]
pub(crate) struct Actions {
    pub id: Option<u64>,
    pub phase: Option<u8>,
    pub disruptive: Option<Disruptive>,
    pub status: Option<u16>,
    pub msg: Option<String>,
    pub chain: bool,
    pub transforms: Vec<Transform>,
    pub has_none: bool,
}

/// A complete rule (chain starter plus chained links).
#[derive(Debug)]
pub(crate) struct RuleDef {
    pub id: u64,
    pub phase: u8,
    pub disruptive: Disruptive,
    pub status: Option<u16>,
    pub msg: Option<String>,
    /// The first (or only) link.
    pub cond: Condition,
    /// Chained links after the first (no allocation for the common unchained rule).
    pub chained: Vec<Condition>,
}

/// `SecDefaultAction` for one phase.
#[derive(Debug, Clone)]
pub(crate) struct DefaultAction {
    pub disruptive: Disruptive,
    pub status: Option<u16>,
    pub transforms: Vec<Transform>,
}

/// Whether the action string (raw) has a `chain` action; used to skip whole chains.
pub(crate) fn mentions_chain(actions: &str) -> bool {
    for_each_action(actions, |n, _| {
        if n.eq_ignore_ascii_case("chain") {
            Err(())
        } else {
            Ok(())
        }
    })
    .is_err()
}

/// Parses the variables and operator of a `SecRule` and its action list.
pub(crate) fn parse_secrule(
    d: &Directive<'_>,
    cache: &mut FxHashMap<String, Arc<Targets>>,
) -> Result<(Condition, Actions), WafError> {
    if d.args.len() < 2 || d.args.len() > 3 {
        return Err(d.syntax("expects VARIABLES \"OPERATOR\" [\"ACTIONS\"]"));
    }
    let targets = match cache.get(&*d.args[0]) {
        Some(t) => t.clone(),
        None => {
            let t = Arc::new(parse_targets(d, &d.args[0])?);
            cache.insert(d.args[0].to_string(), t.clone());
            t
        }
    };
    let op = parse_operator(d, &d.args[1])?;
    let actions = match d.args.get(2) {
        Some(a) => parse_actions(d, a)?,
        None => Actions::default(),
    };
    let cond = Condition {
        targets,
        transforms: actions.transforms.clone(),
        has_none: actions.has_none,
        op,
    };
    Ok((cond, actions))
}

fn parse_targets(d: &Directive<'_>, s: &str) -> Result<Targets, WafError> {
    let mut t = Targets {
        include: Vec::new(),
        exclude: Vec::new(),
    };
    for part in s.split('|') {
        let part = part.trim();
        let (exclude, part) = match part.strip_prefix('!') {
            Some(p) => (true, p),
            None => (false, part),
        };
        if part.starts_with('&') {
            return Err(d.unsupported(format!("counting variable `{part}`")));
        }
        let (name, key) = match part.split_once(':') {
            Some((n, k)) => (n, Some(k)),
            None => (part, None),
        };
        let kind = VarKind::parse(name).ok_or_else(|| d.unsupported(format!("variable `{name}`")))?;
        let key = match key {
            None => None,
            Some(k) => {
                let k = k
                    .strip_prefix('\'')
                    .and_then(|k| k.strip_suffix('\''))
                    .unwrap_or(k);
                if !kind.is_collection() {
                    return Err(d.syntax(format!("variable `{name}` takes no key")));
                }
                if k.starts_with('/') {
                    return Err(d.unsupported(format!("regular-expression key in `{part}`")));
                }
                if k.is_empty() {
                    return Err(d.syntax(format!("empty key in `{part}`")));
                }
                Some(k.to_ascii_lowercase().into_boxed_str())
            }
        };
        let target = Target { kind, key };
        if exclude {
            if target.key.is_none() {
                return Err(d.unsupported(format!("exclusion of a whole variable `!{part}`")));
            }
            t.exclude.push(target);
        } else {
            t.include.push(target);
        }
    }
    if t.include.is_empty() {
        return Err(d.syntax("no variable to inspect"));
    }
    t.include.sort();
    t.exclude.sort();
    Ok(t)
}

fn parse_operator(d: &Directive<'_>, s: &str) -> Result<Operator, WafError> {
    let (negated, rest) = match s.strip_prefix('!') {
        Some(r) => (true, r),
        None => (false, s),
    };
    let (kind, param) = match rest.strip_prefix('@') {
        None => (OpKind::Rx, rest.to_string()),
        Some(r) => {
            let (name, param) = match r.find(|c: char| c.is_ascii_whitespace()) {
                Some(i) => (&r[..i], r[i..].trim_start()),
                None => (r, ""),
            };
            let kind = match name.to_ascii_lowercase().as_str() {
                "contains" => OpKind::Contains,
                "streq" => OpKind::Streq,
                "beginswith" => OpKind::BeginsWith,
                "endswith" => OpKind::EndsWith,
                "pm" => OpKind::Pm,
                "rx" => OpKind::Rx,
                "within" => OpKind::Within,
                _ => return Err(d.unsupported(format!("operator `@{name}`"))),
            };
            (kind, param.to_string())
        }
    };
    if param.contains("%{") {
        return Err(d.unsupported("macro expansion `%{...}` in an operator parameter"));
    }
    if kind == OpKind::Pm && (param.contains('|') || param.contains('\\') || param.contains('"')) {
        return Err(d.unsupported("`@pm` hex bytes, escapes or quoted phrases"));
    }
    if kind == OpKind::Rx {
        if let Err(e) = crate::matcher::build_regex(&param) {
            // PCRE features the regex crate lacks (look-around, back-references) end up here.
            return Err(d.unsupported(format!("regular expression `{param}`: {e}")));
        }
    }
    Ok(Operator { kind, negated, param })
}

/// Calls `f` with each `(name, value)` of `a,b:'x,y',c`, honouring single quotes.
pub(crate) fn for_each_action<'s, E>(
    s: &'s str,
    mut f: impl FnMut(&'s str, Option<&'s str>) -> Result<(), E>,
) -> Result<(), E> {
    let b = s.as_bytes();
    let mut start = 0;
    let mut quoted = false;
    for i in 0..=b.len() {
        let c = b.get(i).copied();
        if c == Some(b'\'') {
            quoted = !quoted;
        }
        if c.is_none() || (c == Some(b',') && !quoted) {
            let item = s[start..i].trim();
            start = i + 1;
            if item.is_empty() {
                continue;
            }
            match item.split_once(':') {
                Some((n, v)) => {
                    let v = v.trim();
                    f(
                        n.trim(),
                        Some(
                            v.strip_prefix('\'')
                                .and_then(|v| v.strip_suffix('\''))
                                .unwrap_or(v),
                        ),
                    )?
                }
                None => f(item, None)?,
            }
        }
    }
    Ok(())
}

/// Parses an action list (of a rule or of `SecDefaultAction`): the interpreter's parser
/// (one reading of every action), narrowed to what the set matcher can express. Anything else
/// is `Unsupported`, which sends the whole rule set to the interpreter.
pub(crate) fn parse_actions(d: &Directive<'_>, s: &str) -> Result<Actions, WafError> {
    use crate::interp::rule::{self as full, Disruptive as Full};
    use crate::transform::Transform as T;
    let a = full::parse_actions(d, s)?;
    let unsupported = |what: &str| Err(d.unsupported(format!("action `{what}`")));
    if let Some(p) = a.phase.filter(|p| *p > 2) {
        return Err(d.unsupported(format!("phase:{p} (only request phases 1 and 2)")));
    }
    if !a.setvars.is_empty() {
        return unsupported("setvar");
    }
    if !a.ctls.is_empty() {
        return unsupported("ctl");
    }
    if a.skip_after.is_some() {
        return unsupported("skipAfter");
    }
    if a.skip > 0 {
        return unsupported("skip");
    }
    if a.multi_match {
        return unsupported("multiMatch");
    }
    let disruptive = match a.disruptive {
        None => None,
        Some(Full::Deny) => Some(Disruptive::Deny),
        Some(Full::Pass) => Some(Disruptive::Pass),
        Some(Full::Block) => Some(Disruptive::Block),
        Some(Full::Drop) => return unsupported("drop"),
        Some(Full::Allow) => return unsupported("allow"),
        Some(Full::Redirect(_)) => return unsupported("redirect"),
    };
    let mut transforms = Vec::with_capacity(a.transforms.len());
    for t in a.transforms {
        transforms.push(match t {
            T::Lowercase => Transform::Lowercase,
            T::UrlDecode => Transform::UrlDecode,
            other => return Err(d.unsupported(format!("transformation `t:{}`", other.name()))),
        });
    }
    Ok(Actions {
        id: a.id,
        phase: a.phase,
        disruptive,
        status: a.status,
        msg: a.msg,
        chain: a.chain,
        transforms,
        has_none: a.has_none,
    })
}

/// Parses `SecDefaultAction "phase:N,..."`: returns the phase and its defaults.
pub(crate) fn parse_default_action(d: &Directive<'_>) -> Result<(u8, DefaultAction), WafError> {
    if d.args.len() != 1 {
        return Err(d.syntax("expects one action list"));
    }
    let a = parse_actions(d, &d.args[0])?;
    if a.id.is_some() || a.chain || a.msg.is_some() {
        return Err(d.syntax("id, chain and msg are not allowed in a default action"));
    }
    let phase = a
        .phase
        .ok_or_else(|| d.syntax("a default action needs a phase"))?;
    let disruptive = match a.disruptive {
        None | Some(Disruptive::None) | Some(Disruptive::Pass) => Disruptive::Pass,
        Some(Disruptive::Deny) => Disruptive::Deny,
        Some(Disruptive::Block) => return Err(d.syntax("`block` is not allowed in a default action")),
    };
    Ok((
        phase,
        DefaultAction {
            disruptive,
            status: a.status,
            transforms: a.transforms,
        },
    ))
}
