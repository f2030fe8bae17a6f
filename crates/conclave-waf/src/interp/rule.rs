//! One rule of the interpreter (`SecRule` with its chained links, or `SecAction`) and the parsing
//! of its variables, operator and actions, with ModSecurity v3's meaning for each action.

use std::path::Path;
use std::sync::Arc;

use crate::body::Processor;
use crate::error::WafError;
use crate::operator::Operator;
use crate::rule::for_each_action;
use crate::rules_file::Directive;
use crate::transform::Transform;

use super::vars::{is_response_var, Coll, Target};

/// What a rule does when its whole chain matched.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Disruptive {
    Pass,
    Deny,
    Drop,
    /// `block`: the phase's `SecDefaultAction` decides.
    Block,
    /// `allow`: stop evaluating rules for this request.
    Allow,
    Redirect(String),
}

/// `setvar:` as written: `coll.key=value`, `=+n`, `=-n`, `!coll.key`, `coll.key`.
#[derive(Clone, Debug)]
pub(crate) struct SetVar {
    pub coll: Coll,
    /// Key, lowercase (may hold `%{...}` macros).
    pub key: String,
    pub op: SetOp,
}

#[derive(Clone, Debug)]
pub(crate) enum SetOp {
    Set(String),
    Add(String),
    Sub(String),
    Unset,
}

/// A `ctl:` action (changes the rest of this transaction only).
#[derive(Clone, Debug)]
pub(crate) enum Ctl {
    RuleEngine(crate::Engine),
    RemoveById(Vec<(u64, u64)>),
    RemoveByTag(String),
    RemoveByMsg(String),
    RemoveTargetById(Vec<(u64, u64)>, Target),
    RemoveTargetByTag(String, Target),
    RemoveTargetByMsg(String, Target),
    BodyProcessor(Processor),
    BodyAccess(bool),
    ForceBodyVariable(bool),
    /// `auditEngine`, `auditLogParts`, `requestBodyLimit`, `debugLogLevel`: no effect here.
    Ignored,
}

/// One link of a rule: what it inspects and what it runs on each match.
#[derive(Debug)]
pub(crate) struct Link {
    pub targets: Vec<Target>,
    pub exclude: Vec<Target>,
    /// `None` for `SecAction` (matches once, unconditionally).
    pub op: Option<Arc<Operator>>,
    pub negated: bool,
    pub transforms: Vec<Transform>,
    /// `transforms` interned: links with the same chain share the id, so a transaction transforms
    /// a value once per chain, not once per rule.
    pub chain: u32,
    pub multi_match: bool,
    pub capture: bool,
    /// Run on each matching value, whether or not the chain completes (as ModSecurity v3 does).
    pub setvars: Vec<SetVar>,
    /// Run when the whole chain matched.
    pub ctls: Vec<Ctl>,
}

/// A complete rule.
#[derive(Debug)]
pub(crate) struct Rule {
    /// 0 for rules without an id (not allowed for starters; chained links have none).
    pub id: u64,
    pub phase: u8,
    pub file: Arc<Path>,
    pub line: usize,
    pub links: Vec<Link>,
    pub disruptive: Disruptive,
    pub status: Option<u16>,
    pub msg: Option<String>,
    pub logdata: Option<String>,
    pub tags: Vec<String>,
    pub severity: Option<u8>,
    pub skip_after: Option<String>,
    pub skip: u32,
    /// Whether anything of this rule can read `MATCHED_VAR(S)` (a chained link, a macro in an
    /// operator, `setvar`, `msg`, `logdata` or `redirect`): when not, a match need not record
    /// them (they are reset before the next rule).
    pub observes_match: bool,
}

impl Rule {
    /// Computes [`Rule::observes_match`] (conservatively: any macro naming `matched_var`).
    pub(crate) fn compute_observes_match(&mut self) {
        let mentions = |t: &str| t.to_ascii_lowercase().contains("matched_var");
        let op_macro = |l: &Link| match l.op.as_deref() {
            Some(Operator::Rx(rx)) => rx.fixed_pattern().is_none(),
            Some(Operator::Num(_, crate::operator::Arg::Macro(_)))
            | Some(Operator::Str(_, crate::operator::Arg::Macro(_))) => true,
            _ => false,
        };
        self.observes_match = self.links.len() > 1
            || self.links.iter().any(|l| {
                op_macro(l)
                    || l.setvars.iter().any(|sv| {
                        mentions(&sv.key)
                            || match &sv.op {
                                SetOp::Set(v) | SetOp::Add(v) | SetOp::Sub(v) => mentions(v),
                                SetOp::Unset => false,
                            }
                    })
            })
            || self.msg.as_deref().is_some_and(mentions)
            || self.logdata.as_deref().is_some_and(mentions)
            || matches!(&self.disruptive, Disruptive::Redirect(u) if mentions(u));
    }
}

/// The actions of one directive, before they are sorted into rule and link.
#[derive(Debug, Default)]
pub(crate) struct Actions {
    pub id: Option<u64>,
    pub phase: Option<u8>,
    pub disruptive: Option<Disruptive>,
    pub status: Option<u16>,
    pub msg: Option<String>,
    pub logdata: Option<String>,
    pub tags: Vec<String>,
    pub severity: Option<u8>,
    pub chain: bool,
    pub skip_after: Option<String>,
    pub skip: u32,
    pub transforms: Vec<Transform>,
    pub has_none: bool,
    pub multi_match: bool,
    pub capture: bool,
    pub setvars: Vec<SetVar>,
    pub ctls: Vec<Ctl>,
}

fn severity(v: &str) -> Option<u8> {
    Some(match v.to_ascii_uppercase().as_str() {
        "EMERGENCY" | "0" => 0,
        "ALERT" | "1" => 1,
        "CRITICAL" | "2" => 2,
        "ERROR" | "3" => 3,
        "WARNING" | "4" => 4,
        "NOTICE" | "5" => 5,
        "INFO" | "6" => 6,
        "DEBUG" | "7" => 7,
        _ => return None,
    })
}

/// Parses `1`, `1-100` and `1 5-9` id lists (`ctl:ruleRemoveById`, `SecRuleRemoveById`).
pub(crate) fn id_ranges(s: &str) -> Option<Vec<(u64, u64)>> {
    let mut out = Vec::new();
    for part in s.split([' ', ',']).filter(|p| !p.is_empty()) {
        let part = part.trim_matches(|c| c == '"' || c == '\'');
        match part.split_once('-') {
            Some((a, b)) => out.push((a.trim().parse().ok()?, b.trim().parse().ok()?)),
            None => {
                let v = part.parse().ok()?;
                out.push((v, v));
            }
        }
    }
    (!out.is_empty()).then_some(out)
}

fn parse_setvar(v: &str) -> Result<SetVar, String> {
    let (unset, v) = match v.strip_prefix('!') {
        Some(r) => (true, r),
        None => (false, v),
    };
    let (name, value) = match v.split_once('=') {
        Some((n, val)) => (n, Some(val)),
        None => (v, None),
    };
    let (coll, key) = name
        .split_once('.')
        .ok_or_else(|| format!("setvar `{v}`: expects COLLECTION.NAME"))?;
    let coll = Coll::parse(coll).ok_or_else(|| format!("setvar collection `{coll}`"))?;
    let key = key.to_ascii_lowercase();
    let op = match (unset, value) {
        (true, _) => SetOp::Unset,
        (false, None) => SetOp::Set("1".into()),
        (false, Some(val)) => {
            if let Some(n) = val.strip_prefix('+') {
                SetOp::Add(n.to_string())
            } else if let Some(n) = val.strip_prefix('-') {
                SetOp::Sub(n.to_string())
            } else {
                SetOp::Set(val.to_string())
            }
        }
    };
    Ok(SetVar { coll, key, op })
}

fn parse_ctl(v: &str) -> Result<Ctl, String> {
    let (name, val) = v
        .split_once('=')
        .ok_or_else(|| format!("ctl `{v}`: expects NAME=VALUE"))?;
    let target = |spec: &str| -> Result<(String, Target), String> {
        let (what, t) = spec
            .split_once(';')
            .ok_or_else(|| format!("ctl:{name}: expects WHAT;VARIABLE"))?;
        Ok((what.to_string(), Target::parse(t)?))
    };
    Ok(match name.to_ascii_lowercase().as_str() {
        "ruleengine" => Ctl::RuleEngine(match val.to_ascii_lowercase().as_str() {
            "on" => crate::Engine::On,
            "off" => crate::Engine::Off,
            "detectiononly" => crate::Engine::DetectionOnly,
            _ => return Err(format!("ctl:ruleEngine={val}")),
        }),
        "ruleremovebyid" => {
            Ctl::RemoveById(id_ranges(val).ok_or_else(|| format!("ctl:ruleRemoveById={val}"))?)
        }
        "ruleremovebytag" => Ctl::RemoveByTag(val.to_string()),
        "ruleremovebymsg" => Ctl::RemoveByMsg(val.to_string()),
        "ruleremovetargetbyid" => {
            let (ids, t) = target(val)?;
            Ctl::RemoveTargetById(id_ranges(&ids).ok_or_else(|| format!("ctl:{name}={val}"))?, t)
        }
        "ruleremovetargetbytag" => {
            let (tag, t) = target(val)?;
            Ctl::RemoveTargetByTag(tag, t)
        }
        "ruleremovetargetbymsg" => {
            let (m, t) = target(val)?;
            Ctl::RemoveTargetByMsg(m, t)
        }
        "requestbodyprocessor" => {
            Ctl::BodyProcessor(Processor::parse(val).ok_or_else(|| format!("ctl:{name}={val}"))?)
        }
        "requestbodyaccess" => Ctl::BodyAccess(on_off(val)?),
        "forcerequestbodyvariable" => Ctl::ForceBodyVariable(on_off(val)?),
        "auditengine" | "auditlogparts" | "requestbodylimit" | "debugloglevel" => Ctl::Ignored,
        _ => return Err(format!("ctl:{name}")),
    })
}

fn on_off(v: &str) -> Result<bool, String> {
    match v.to_ascii_lowercase().as_str() {
        "on" | "1" | "true" => Ok(true),
        "off" | "0" | "false" => Ok(false),
        _ => Err(format!("expected On or Off, got `{v}`")),
    }
}

/// Parses an action list into [`Actions`]; anything the interpreter does not know is
/// `WafError::Unsupported` naming the action.
pub(crate) fn parse_actions(d: &Directive<'_>, s: &str) -> Result<Actions, WafError> {
    let mut a = Actions::default();
    for_each_action(s, |name, value| -> Result<(), WafError> {
        let need = |what: &str| value.ok_or_else(|| d.syntax(format!("`{name}` needs a value ({what})")));
        match name.to_ascii_lowercase().as_str() {
            "id" => {
                let v = need("a number")?;
                let id: u64 = v.parse().map_err(|_| d.syntax(format!("bad rule id `{v}`")))?;
                if id == 0 {
                    return Err(d.syntax("rule id 0 is not allowed"));
                }
                a.id = Some(id);
            }
            "phase" => {
                let v = need("1 to 5")?;
                a.phase = Some(match v.to_ascii_lowercase().as_str() {
                    "1" => 1,
                    "2" | "request" => 2,
                    "3" => 3,
                    "4" | "response" => 4,
                    "5" | "logging" => 5,
                    _ => return Err(d.syntax(format!("bad phase `{v}`"))),
                });
            }
            "deny" => a.disruptive = Some(Disruptive::Deny),
            "drop" => a.disruptive = Some(Disruptive::Drop),
            "pass" => a.disruptive = Some(Disruptive::Pass),
            "block" => a.disruptive = Some(Disruptive::Block),
            "allow" => a.disruptive = Some(Disruptive::Allow),
            "redirect" => a.disruptive = Some(Disruptive::Redirect(need("a URL")?.to_string())),
            "status" => {
                let v = need("an HTTP status")?;
                let st: u16 = v.parse().map_err(|_| d.syntax(format!("bad status `{v}`")))?;
                if !(100..=999).contains(&st) {
                    return Err(d.syntax(format!("bad status `{v}`")));
                }
                a.status = Some(st);
            }
            "msg" => a.msg = Some(need("text")?.to_string()),
            "logdata" => a.logdata = Some(need("text")?.to_string()),
            "tag" => a.tags.push(need("text")?.to_string()),
            "severity" => {
                let v = need("a severity")?;
                a.severity = Some(severity(v).ok_or_else(|| d.syntax(format!("bad severity `{v}`")))?);
            }
            "chain" => a.chain = true,
            "capture" => a.capture = true,
            "multimatch" => a.multi_match = true,
            "skipafter" => a.skip_after = Some(need("a marker")?.to_string()),
            "skip" => {
                let v = need("a count")?;
                a.skip = v.parse().map_err(|_| d.syntax(format!("bad skip `{v}`")))?;
            }
            "t" => {
                let v = need("a transformation")?;
                if v.eq_ignore_ascii_case("none") {
                    a.transforms.clear();
                    a.has_none = true;
                } else {
                    let t = Transform::parse(v)
                        .ok_or_else(|| d.unsupported(format!("transformation `t:{v}`")))?;
                    a.transforms.push(t);
                }
            }
            "setvar" => a
                .setvars
                .push(parse_setvar(need("COLLECTION.NAME=VALUE")?).map_err(|e| d.unsupported(e))?),
            "ctl" => a
                .ctls
                .push(parse_ctl(need("NAME=VALUE")?).map_err(|e| d.unsupported(e))?),
            // Logging, metadata and persistence: no effect on the decision. `initcol` collections
            // live for the transaction only; `expirevar` has nothing to expire.
            "log"
            | "nolog"
            | "auditlog"
            | "noauditlog"
            | "rev"
            | "ver"
            | "maturity"
            | "accuracy"
            | "initcol"
            | "expirevar"
            | "sanitisematched"
            | "sanitisearg"
            | "sanitiseRequestHeader"
            | "logdata_" => {}
            other => return Err(d.unsupported(format!("action `{other}`"))),
        }
        Ok(())
    })?;
    Ok(a)
}

/// A rule's variables: what it inspects, and the `!` exclusions.
pub(crate) type TargetLists = (Vec<Target>, Vec<Target>);

/// Parses `VARIABLES` of a `SecRule`: includes and `!` exclusions. `Ok(None)` when a variable is a
/// response variable (the rule belongs to phases 3/4 and is skipped with a note).
pub(crate) fn parse_targets(d: &Directive<'_>, s: &str) -> Result<Option<TargetLists>, WafError> {
    let mut inc = Vec::new();
    let mut exc = Vec::new();
    for part in s.split('|') {
        let part = part.trim();
        let (neg, p) = match part.strip_prefix('!') {
            Some(p) => (true, p),
            None => (false, part),
        };
        let name = p.trim_start_matches('&').split(':').next().unwrap_or("");
        if is_response_var(name) {
            return Ok(None);
        }
        let t = Target::parse(p).map_err(|e| d.unsupported(e))?;
        if neg {
            exc.push(t);
        } else {
            inc.push(t);
        }
    }
    if inc.is_empty() {
        return Err(d.syntax("no variable to inspect"));
    }
    Ok(Some((inc, exc)))
}

/// Parses `[!]@op arg` (a bare pattern is `@rx`).
pub(crate) fn parse_operator(d: &Directive<'_>, s: &str) -> Result<(Arc<Operator>, bool), WafError> {
    let (negated, rest) = match s.strip_prefix('!') {
        Some(r) => (true, r),
        None => (false, s),
    };
    let (name, arg) = match rest.strip_prefix('@') {
        None => ("rx", rest),
        Some(r) => match r.find(|c: char| c.is_ascii_whitespace()) {
            Some(i) => (&r[..i], r[i..].trim_start()),
            None => (r, ""),
        },
    };
    let dir = d.file.parent().unwrap_or(Path::new("."));
    let op = Operator::parse(name, arg, dir).map_err(|e| {
        // "unknown operator @x" / "operator @x is not supported" name it already.
        if e.contains(&format!("@{name}")) {
            d.unsupported(format!("operator `@{name}`"))
        } else {
            d.unsupported(format!("operator `@{name}`: {e}"))
        }
    })?;
    Ok((Arc::new(op), negated))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn setvar_forms() {
        let s = parse_setvar("tx.anomaly_score_pl1=+%{tx.critical_anomaly_score}").unwrap();
        assert_eq!(s.key, "anomaly_score_pl1");
        assert!(matches!(s.op, SetOp::Add(ref v) if v == "%{tx.critical_anomaly_score}"));
        assert!(matches!(parse_setvar("!tx.x").unwrap().op, SetOp::Unset));
        assert!(matches!(parse_setvar("tx.x").unwrap().op, SetOp::Set(ref v) if v == "1"));
        assert!(matches!(parse_setvar("TX.X=-5").unwrap().op, SetOp::Sub(ref v) if v == "5"));
        assert!(parse_setvar("nope").is_err());
    }

    #[test]
    fn ctl_forms() {
        assert!(matches!(
            parse_ctl("ruleRemoveTargetById=942100;ARGS:pwd").unwrap(),
            Ctl::RemoveTargetById(ref r, _) if r == &[(942100, 942100)]
        ));
        assert!(matches!(parse_ctl("ruleRemoveById=1-9").unwrap(), Ctl::RemoveById(ref r) if r == &[(1, 9)]));
        assert!(matches!(
            parse_ctl("requestBodyProcessor=JSON").unwrap(),
            Ctl::BodyProcessor(Processor::Json)
        ));
        assert!(parse_ctl("noSuchCtl=1").is_err());
    }
}
