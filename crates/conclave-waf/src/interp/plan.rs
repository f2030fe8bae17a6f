//! Partial evaluation at load: the rules whose outcome cannot depend on the request are run
//! once, when the rule set loads, and replaced by their precomputed effect.
//!
//! The CRS spends most of its rules on its own configuration: 67 paranoia-level gates
//! (`SecRule TX:EXECUTING_PARANOIA_LEVEL "@lt 2" "...,skipAfter:END-..."`), the `SecAction`s of
//! `crs-setup.conf` and the `&TX:x "@eq 0" "setvar:tx.x=..."` defaults. They read only `TX`
//! variables that, on every path a request can take to them, hold a value fixed by the
//! configuration. A forward data-flow pass over each phase's list (jumps only go forward)
//! tracks, per position, what `TX` holds on every path reaching it: a member is *known* (set to
//! one value, or unset) or *dynamic* (some earlier rule that runs per request may have written
//! it). A rule is folded when everything it reads is known and nothing it does depends on the
//! request or could be undone by one:
//!
//! - every link reads only `TX:name` / `&TX:name` members that are known there (no exclusions,
//!   no `multiMatch`), with an operator without macros, or is a `SecAction`;
//! - every macro of its `setvar`s is `%{rule.*}` or a known `%{tx.name}`;
//! - it has no `ctl` and does not interrupt (`pass`, or `block` under a `pass` default);
//! - no `ctl:ruleRemove*` of a rule that can run before it selects it.
//!
//! Such a rule is run once at load (by the interpreter itself, on a transaction whose `TX` is the
//! known state), and its effect — whether it matched, the `TX` members it set or removed, where
//! it continues — replaces it. Rules a folded `skipAfter` jumps over on every path are gone.
//! What a per-request rule may write becomes dynamic: its literal `setvar` keys, every key
//! starting with the literal prefix of a key with macros, `TX:0`–`TX:9` after `capture`.
//! Where two paths meet (a per-request rule with `skipAfter`), a member stays known only if it
//! is the same on both. Phase 2 starts from what phase 1 ends with. The result is exact: a
//! request reaching a folded step would have run the same rules on the same values.

use std::collections::{BTreeMap, BTreeSet};

use crate::hash::FxHashMap;
use crate::operator::{Arg, Operator};

use super::rule::{Ctl, Disruptive, Link, Rule};
use super::vars::{Coll, Key, Var};
use super::{in_ranges, Item, Program};

/// One step of a phase's evaluation plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    /// A rule that runs per request (its index in [`Program::rules`]).
    Rule(u32),
    /// Precomputed effect of consecutive folded rules (its index in [`Plan::fixed`]).
    Fixed(u32),
}

/// The effect of one or more folded rules, applied in place of running them.
#[derive(Debug, Clone, Default)]
pub(crate) struct Fixed {
    /// Ids of the folded rules that matched (ModSecurity reports them as matched).
    pub matched: Vec<u64>,
    /// `TX` changes in order: set to a value, or removed (`None`).
    pub writes: Vec<(String, Option<Vec<u8>>)>,
    /// How many rules this step stands for.
    pub rules: u32,
    /// The step evaluation continues with.
    pub next: usize,
    /// Its `writes` are already in [`Plan::initial_tx`]: applying them again is not needed.
    pub hoisted: bool,
}

/// What a request walks: per phase, steps with jumps resolved.
#[derive(Debug, Default)]
pub(crate) struct Plan {
    /// Steps of phases 1 and 2.
    pub steps: [Vec<Step>; 2],
    pub fixed: Vec<Fixed>,
    /// Per rule: the step after a match with `skipAfter`/`skip` (meaningful for per-request rules).
    pub skip_next: Vec<usize>,
    /// Rules folded at load (a rule reached on several paths counts once).
    pub folded: usize,
    /// Rules no request can reach (skipped on every path by folded rules).
    pub unreachable: usize,
    /// Operators of per-request rules whose argument macros name only known `TX` members
    /// there: (rule, link, the operator with the argument expanded), applied by the loader.
    pub specialized: Vec<(u32, usize, Operator)>,
    /// `TX` as every transaction starts it: the writes of the folded steps every request runs
    /// first (see [`hoist`]), so a transaction starts from this table instead of writing the
    /// CRS's ~40 setup values one by one.
    pub initial_tx: FxHashMap<String, Vec<u8>>,
}

/// What `TX` holds on every path reaching a position.
#[derive(Debug, Clone, Default, PartialEq)]
struct TxState {
    /// Members set to a known value; members neither here nor dynamic are known unset.
    values: BTreeMap<String, Vec<u8>>,
    dynamic: BTreeSet<String>,
    /// Every member whose name starts with one of these is dynamic.
    prefixes: BTreeSet<String>,
}

/// A member's state at a position.
#[derive(Debug, PartialEq)]
enum Known<'a> {
    Unset,
    Set(&'a [u8]),
    Dynamic,
}

impl TxState {
    fn get(&self, k: &str) -> Known<'_> {
        if self.dynamic.contains(k) || self.prefixes.iter().any(|p| k.starts_with(p.as_str())) {
            return Known::Dynamic;
        }
        match self.values.get(k) {
            Some(v) => Known::Set(v),
            None => Known::Unset,
        }
    }

    /// Marks what a `setvar` key as written (lowercase, maybe with macros) may name as dynamic.
    fn write_dynamic(&mut self, key: &str) {
        match key.find("%{") {
            None => {
                self.values.remove(key);
                self.dynamic.insert(key.to_string());
            }
            Some(i) => {
                let p = key[..i].to_ascii_lowercase();
                self.values.retain(|k, _| !k.starts_with(p.as_str()));
                self.prefixes.insert(p);
            }
        }
    }

    /// The state where two paths meet.
    fn join(a: Option<TxState>, b: Option<TxState>) -> Option<TxState> {
        let (mut a, b) = match (a, b) {
            (None, x) | (x, None) => return x,
            (Some(a), Some(b)) => (a, b),
        };
        if a == b {
            return Some(a);
        }
        a.dynamic.extend(b.dynamic.iter().cloned());
        a.prefixes.extend(b.prefixes.iter().cloned());
        let keys: BTreeSet<String> = a.values.keys().chain(b.values.keys()).cloned().collect();
        for k in keys {
            if a.values.get(&k) != b.values.get(&k) {
                a.values.remove(&k);
                a.dynamic.insert(k);
            }
        }
        let (dynamic, prefixes) = (a.dynamic.clone(), a.prefixes.clone());
        a.values
            .retain(|k, _| !dynamic.contains(k) && !prefixes.iter().any(|p| k.starts_with(p.as_str())));
        Some(a)
    }
}

/// Builds the plan of `prog` (its phase lists, skip targets and rules must be final).
pub(crate) fn build(prog: &Program) -> Plan {
    let mut plan = Plan {
        skip_next: vec![0; prog.rules.len()],
        ..Plan::default()
    };
    // `ctl:ruleRemove*` of per-request rules seen so far: the rules they select stay per-request.
    let mut removers: Vec<&Ctl> = Vec::new();
    let mut folded = BTreeSet::new();
    let mut entry = Some(TxState::default());
    for phase in 0..2 {
        let list = &prog.phases[phase];
        let n = list.len();
        let mut pending: Vec<Option<TxState>> = vec![None; n + 1];
        pending[0] = entry.take();
        let mut fall: Option<TxState> = None;
        // Per old position: the index of the first step emitted at or after it.
        let mut new_index = vec![0usize; n + 1];
        let mut steps = Vec::new();
        // Per Fixed step emitted: its next as an old position.
        let mut fixed_next_old = Vec::new();
        let first_fixed = plan.fixed.len();
        for i in 0..n {
            let here = TxState::join(fall.take(), pending[i].take());
            new_index[i] = steps.len();
            let Some(st) = here else {
                if matches!(list[i], Item::Rule(_)) {
                    plan.unreachable += 1;
                }
                continue;
            };
            let ri = match &list[i] {
                Item::Marker(_) => {
                    fall = Some(st);
                    continue;
                }
                Item::Rule(ri) => *ri,
            };
            let r = &prog.rules[ri as usize];
            let target = prog.skip_targets[ri as usize];
            let has_skip = r.skip_after.is_some() || r.skip > 0;
            if let Some((matched, after)) = fold(prog, ri, &st, &removers) {
                let mut writes = Vec::new();
                for (k, v) in &after {
                    if st.values.get(k) != Some(v) {
                        writes.push((k.clone(), Some(v.clone())));
                    }
                }
                for k in st.values.keys().filter(|k| !after.contains_key(*k)) {
                    writes.push((k.clone(), None));
                }
                let mut out = st;
                out.values = after;
                let next = if matched && has_skip { target } else { i + 1 };
                plan.fixed.push(Fixed {
                    matched: if matched { vec![r.id] } else { Vec::new() },
                    writes,
                    rules: 1,
                    next: 0,
                    hoisted: false,
                });
                fixed_next_old.push(next);
                steps.push(Step::Fixed((plan.fixed.len() - 1) as u32));
                folded.insert(ri);
                if next == i + 1 {
                    fall = Some(out);
                } else {
                    pending[next] = TxState::join(pending[next].take(), Some(out));
                }
            } else {
                steps.push(Step::Rule(ri));
                let mut out = st;
                for (k, l) in r.links.iter().enumerate() {
                    // The link's own per-value `setvar`s run between its evaluations, so they
                    // count as written before its operator expands.
                    let mut at_link = out.clone();
                    for sv in l.setvars.iter().filter(|sv| sv.coll == Coll::Tx) {
                        at_link.write_dynamic(&sv.key);
                    }
                    if l.capture {
                        for d in 0..10 {
                            at_link.write_dynamic(&d.to_string());
                        }
                    }
                    if let Some(op) = specialize(prog, ri, l, &at_link) {
                        plan.specialized.push((ri, k, op));
                    }
                    for sv in l.setvars.iter().filter(|sv| sv.coll == Coll::Tx) {
                        out.write_dynamic(&sv.key);
                    }
                    if l.capture {
                        for d in 0..10 {
                            out.write_dynamic(&d.to_string());
                        }
                    }
                    removers.extend(l.ctls.iter().filter(|c| {
                        matches!(
                            c,
                            Ctl::RemoveById(_)
                                | Ctl::RemoveByTag(_)
                                | Ctl::RemoveByMsg(_)
                                | Ctl::RemoveTargetById(..)
                                | Ctl::RemoveTargetByTag(..)
                                | Ctl::RemoveTargetByMsg(..)
                        )
                    }));
                }
                if has_skip {
                    pending[target] = TxState::join(pending[target].take(), Some(out.clone()));
                }
                fall = Some(out);
            }
        }
        new_index[n] = steps.len();
        entry = TxState::join(fall, pending[n].take());
        // Resolve jumps to step indexes.
        for s in &steps {
            if let Step::Rule(ri) = s {
                plan.skip_next[*ri as usize] = new_index[prog.skip_targets[*ri as usize]];
            }
        }
        for (k, next_old) in fixed_next_old.into_iter().enumerate() {
            plan.fixed[first_fixed + k].next = new_index[next_old];
        }
        plan.steps[phase] = merge(steps, &mut plan.fixed, &mut plan.skip_next);
    }
    plan.folded = folded.len();
    hoist(prog, &mut plan);
    plan
}

/// Fills [`Plan::initial_tx`] with the `TX` writes of phase 1's leading folded steps.
///
/// Every request walks the same straight path from phase 1's first step up to the first
/// per-request rule that could make paths differ or notice the order of `TX` writes. The
/// folded steps on that path write the same `TX` members with the same values on every
/// request, so they can be written once, at load, before the path's per-request rules: those
/// read no `TX` member (no `TX` variable, no operator macro, no `%{tx.…}` in a `setvar`, `msg`
/// or `logdata`), write only literal keys the hoisted steps do not touch, do not jump
/// (`skipAfter`, `skip`) and cannot end the phase (`pass`, or `block` under a `pass` default;
/// no `ctl` but the body ones). Moving the writes before such rules changes nothing they see
/// or leave behind. The steps still report their matched ids where they stand.
/// (Debian's modsecurity.conf puts its body-processor rules 200000 and 200001 first, so
/// "the setup before the first per-request rule" alone would be empty.)
fn hoist(prog: &Program, plan: &mut Plan) {
    if prog.engine == crate::Engine::Off {
        return;
    }
    let steps = &plan.steps[0];
    // `TX` keys the per-request rules of the path write.
    let mut written: BTreeSet<String> = BTreeSet::new();
    let mut tx: FxHashMap<String, Vec<u8>> = FxHashMap::default();
    let mut hoisted = Vec::new();
    let mut i = 0;
    while i < steps.len() {
        match steps[i] {
            Step::Fixed(f) => {
                let fx = &plan.fixed[f as usize];
                if fx.writes.iter().any(|(k, _)| written.contains(k)) {
                    break;
                }
                for (k, v) in &fx.writes {
                    match v {
                        Some(v) => tx.insert(k.clone(), v.clone()),
                        None => tx.remove(k),
                    };
                }
                hoisted.push(f);
                i = fx.next;
            }
            Step::Rule(ri) => {
                if !keeps_to_itself(prog, &prog.rules[ri as usize], &mut written) {
                    break;
                }
                i += 1;
            }
        }
    }
    for f in hoisted {
        plan.fixed[f as usize].hoisted = true;
    }
    plan.initial_tx = tx;
}

/// Whether per-request rule `r` neither reads `TX` nor changes the path (see [`hoist`]); adds
/// the `TX` keys it may write to `written`.
fn keeps_to_itself(prog: &Program, r: &Rule, written: &mut BTreeSet<String>) -> bool {
    let names_tx = |t: &str| t.to_ascii_lowercase().contains("%{tx");
    let pass = match &r.disruptive {
        Disruptive::Pass => true,
        Disruptive::Block => prog.defaults[r.phase as usize - 1].disruptive == Disruptive::Pass,
        _ => false,
    };
    if !pass
        || r.skip_after.is_some()
        || r.skip > 0
        || r.msg.as_deref().is_some_and(names_tx)
        || r.logdata.as_deref().is_some_and(names_tx)
    {
        return false;
    }
    for l in &r.links {
        let op_macro = match l.op.as_deref() {
            Some(Operator::Rx(rx)) => rx.fixed_pattern().is_none(),
            Some(Operator::Num(_, Arg::Macro(_))) | Some(Operator::Str(_, Arg::Macro(_))) => true,
            _ => false,
        };
        let reads_tx = l.targets.iter().any(|t| t.var == Var::Collection(Coll::Tx));
        let ctl_ok = l.ctls.iter().all(|c| {
            matches!(
                c,
                Ctl::BodyProcessor(_) | Ctl::BodyAccess(_) | Ctl::ForceBodyVariable(_) | Ctl::Ignored
            )
        });
        if op_macro || reads_tx || !ctl_ok {
            return false;
        }
        for sv in &l.setvars {
            let value = match &sv.op {
                super::rule::SetOp::Set(v) | super::rule::SetOp::Add(v) | super::rule::SetOp::Sub(v) => {
                    v.as_str()
                }
                super::rule::SetOp::Unset => "",
            };
            if sv.key.contains("%{") || names_tx(value) {
                return false;
            }
            if sv.coll == Coll::Tx {
                written.insert(sv.key.clone());
            }
        }
        if l.capture {
            written.extend((0..10).map(|d| d.to_string()));
        }
    }
    true
}

/// Merges runs of `Fixed` steps that follow each other with no jump into their middle.
fn merge(steps: Vec<Step>, fixed: &mut [Fixed], skip_next: &mut [usize]) -> Vec<Step> {
    let n = steps.len();
    let mut target = vec![false; n + 1];
    for (j, s) in steps.iter().enumerate() {
        let t = match s {
            Step::Rule(ri) => skip_next[*ri as usize],
            Step::Fixed(f) => fixed[*f as usize].next,
        };
        if t != j + 1 {
            target[t] = true;
        }
    }
    let mut out: Vec<Step> = Vec::new();
    let mut map = vec![0usize; n + 1];
    let mut open: Option<(usize, u32)> = None; // (old index of the last absorbed step, fixed id)
    for (j, s) in steps.iter().enumerate() {
        if let (Step::Fixed(f), Some((last, into))) = (s, open) {
            let joinable = fixed[into as usize].next == j && last + 1 == j && !target[j];
            if joinable {
                let add = std::mem::take(&mut fixed[*f as usize]);
                let m = &mut fixed[into as usize];
                m.matched.extend(add.matched);
                m.writes.extend(add.writes);
                m.rules += add.rules;
                m.next = add.next;
                map[j] = out.len() - 1;
                open = Some((j, into));
                continue;
            }
        }
        map[j] = out.len();
        out.push(*s);
        open = match s {
            Step::Fixed(f) => Some((j, *f)),
            Step::Rule(_) => None,
        };
    }
    map[n] = out.len();
    for s in &out {
        match s {
            Step::Rule(ri) => skip_next[*ri as usize] = map[skip_next[*ri as usize]],
            Step::Fixed(f) => fixed[*f as usize].next = map[fixed[*f as usize].next],
        }
    }
    out
}

/// Runs rule `ri` at load when its outcome at a position with state `st` is fixed by the
/// configuration: whether it matched and `TX` after it. Links run in order and stop at the
/// first that does not match (as per request), so only the links up to that one must read known
/// inputs; a rule that matches must also be without `ctl` and not interrupt.
fn fold(
    prog: &Program,
    ri: u32,
    st: &TxState,
    removers: &[&Ctl],
) -> Option<(bool, BTreeMap<String, Vec<u8>>)> {
    let r = &prog.rules[ri as usize];
    let known = r.links.iter().take_while(|l| inputs_known(l, st)).count();
    if known == 0 || removers.iter().any(|c| selects(c, r)) {
        return None;
    }
    let (matched, after) = super::eval::fold_rule(prog, ri, &st.values, known);
    if !matched {
        return Some((false, after));
    }
    let pass = match &r.disruptive {
        Disruptive::Pass => true,
        Disruptive::Block => prog.defaults[r.phase as usize - 1].disruptive == Disruptive::Pass,
        _ => false,
    };
    (known == r.links.len() && pass && r.links.iter().all(|l| l.ctls.is_empty())).then_some((true, after))
}

/// Whether a link reads only known `TX` members, macros of known members and constants.
fn inputs_known(l: &Link, st: &TxState) -> bool {
    if !l.exclude.is_empty() || l.multi_match {
        return false;
    }
    let op_known = match l.op.as_deref() {
        None => true,
        Some(Operator::Rx(rx)) => rx.fixed_pattern().is_some(),
        Some(Operator::Num(_, a)) | Some(Operator::Str(_, a)) => match a {
            Arg::Fixed(_) => true,
            Arg::Macro(m) => macros_known(m, st),
        },
        Some(_) => true,
    };
    let targets_known = l.targets.iter().all(|t| match (&t.var, &t.key) {
        (Var::Collection(Coll::Tx), Key::Name(k)) => {
            std::str::from_utf8(k).is_ok_and(|k| st.get(k) != Known::Dynamic)
        }
        _ => false,
    });
    let setvars_known = l.setvars.iter().all(|sv| {
        let value = match &sv.op {
            super::rule::SetOp::Set(v) | super::rule::SetOp::Add(v) | super::rule::SetOp::Sub(v) => {
                v.as_str()
            }
            super::rule::SetOp::Unset => "",
        };
        sv.coll == Coll::Tx && macros_known(&sv.key, st) && macros_known(value, st)
    });
    op_known && targets_known && setvars_known
}

/// The link's operator with its argument expanded, when every macro of the argument is a known
/// `%{tx.name}` at the link (the same text every request would expand it to).
fn specialize(prog: &Program, ri: u32, l: &Link, st: &TxState) -> Option<Operator> {
    let text = match l.op.as_deref()? {
        Operator::Num(_, Arg::Macro(m)) | Operator::Str(_, Arg::Macro(m)) => &**m,
        Operator::Rx(rx) if rx.fixed_pattern().is_none() => rx.source(),
        _ => return None,
    };
    let only_tx = {
        let mut rest = text;
        let mut ok = true;
        while let Some(i) = rest.find("%{") {
            let after = &rest[i + 2..];
            let Some(end) = after.find('}') else { break };
            ok &= matches!(after[..end].split_once(['.', ':']), Some((v, _)) if v.eq_ignore_ascii_case("tx"));
            rest = &after[end + 1..];
        }
        ok
    };
    if !only_tx || !macros_known(text, st) {
        return None;
    }
    let expanded = super::eval::expand_known(prog, ri, &st.values, text);
    if expanded.contains("%{") {
        return None;
    }
    Some(match l.op.as_deref()? {
        Operator::Num(o, _) => Operator::Num(*o, Arg::Fixed(expanded.into_bytes().into())),
        Operator::Str(o, _) => Operator::Str(*o, Arg::Fixed(expanded.into_bytes().into())),
        // A pattern that does not compile never matches at run time: left as it is.
        _ => Operator::Rx(crate::operator::Rx::new(&expanded).ok()?),
    })
}

/// Whether every `%{...}` of `text` is `rule.*` or a known `tx.name`.
fn macros_known(text: &str, st: &TxState) -> bool {
    let mut rest = text;
    while let Some(i) = rest.find("%{") {
        let after = &rest[i + 2..];
        let Some(end) = after.find('}') else { return true };
        let name = after[..end].to_ascii_lowercase();
        let ok = match name.split_once(['.', ':']) {
            Some(("rule", _)) => true,
            Some(("tx", k)) => st.get(k) != Known::Dynamic,
            _ => false,
        };
        if !ok {
            return false;
        }
        rest = &after[end + 1..];
    }
    true
}

/// Whether a `ctl:ruleRemove*` selects rule `r`.
fn selects(c: &Ctl, r: &Rule) -> bool {
    match c {
        Ctl::RemoveById(ids) | Ctl::RemoveTargetById(ids, _) => in_ranges(ids, r.id),
        Ctl::RemoveByTag(t) | Ctl::RemoveTargetByTag(t, _) => r.tags.iter().any(|x| x == t),
        Ctl::RemoveByMsg(m) | Ctl::RemoveTargetByMsg(m, _) => r.msg.as_deref() == Some(m.as_str()),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    /// Loads `rules` and returns (program, a decision function: `Some((status, rule id))` on deny).
    fn load(rules: &str) -> (super::super::Program, crate::Waf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rules.conf");
        std::fs::write(&path, format!("SecRuleEngine On\n{rules}")).unwrap();
        (
            super::super::load(&path).unwrap(),
            crate::Waf::load(&path).unwrap(),
        )
    }

    fn decide(waf: &crate::Waf, uri: &str) -> Option<u64> {
        let view = crate::RequestView {
            method: "GET",
            uri,
            headers: &[],
        };
        match waf.check_with(&view, &crate::RequestContext::default()) {
            crate::Decision::Allow => None,
            crate::Decision::Deny { rule_id, .. } => Some(rule_id),
        }
    }

    fn dynamic_ids(p: &super::super::Program) -> Vec<u64> {
        p.plan
            .steps
            .iter()
            .flatten()
            .filter_map(|s| match s {
                super::Step::Rule(ri) => Some(p.rules[*ri as usize].id),
                super::Step::Fixed(_) => None,
            })
            .collect()
    }

    /// A paranoia-level gate on a configured value is folded, and the rules it skips on every
    /// path are gone; rules of the active level still run per request.
    #[test]
    fn gates_on_configured_values_fold_and_skipped_rules_vanish() {
        let (p, waf) = load(
            r#"
SecAction "id:1,phase:1,pass,nolog,setvar:tx.pl=1"
SecRule &TX:score "@eq 0" "id:2,phase:1,pass,nolog,setvar:tx.score=0"
SecRule TX:pl "@lt 2" "id:3,phase:1,pass,nolog,skipAfter:END-PL2"
SecRule ARGS "@streq pl2" "id:4,phase:1,deny"
SecMarker END-PL2
SecRule ARGS "@streq pl1" "id:5,phase:1,deny"
SecRule TX:score "@eq 0" "id:6,phase:2,pass,nolog,setvar:tx.seen=1"
"#,
        );
        assert_eq!((p.plan.folded, p.plan.unreachable), (4, 1));
        assert_eq!(dynamic_ids(&p), vec![5]);
        assert_eq!(decide(&waf, "/?a=pl2"), None);
        assert_eq!(decide(&waf, "/?a=pl1"), Some(5));
        let i = waf.inspect(
            &crate::RequestView {
                method: "GET",
                uri: "/",
                headers: &[],
            },
            &crate::RequestContext::default(),
        );
        assert_eq!(i.matched, vec![1, 2, 3, 6]);
        assert_eq!(
            i.tx,
            vec![
                ("pl".to_string(), "1".to_string()),
                ("score".to_string(), "0".to_string()),
                ("seen".to_string(), "1".to_string())
            ]
        );
    }

    /// A value a per-request rule may have written before is not a constant: rules reading it
    /// stay per-request (here the gate, and through it the rule it skips).
    #[test]
    fn a_request_dependent_write_keeps_later_reads_dynamic() {
        let (p, waf) = load(
            r#"
SecAction "id:1,phase:1,pass,nolog,setvar:tx.pl=1"
SecRule ARGS:pl "@streq 2" "id:2,phase:1,pass,nolog,setvar:tx.pl=2"
SecRule TX:pl "@lt 2" "id:3,phase:1,pass,nolog,skipAfter:END-PL2"
SecRule ARGS "@rx x" "id:4,phase:1,deny"
SecMarker END-PL2
"#,
        );
        assert_eq!(dynamic_ids(&p), vec![2, 3, 4]);
        assert_eq!(decide(&waf, "/?a=x"), None);
        assert_eq!(decide(&waf, "/?pl=2&a=x"), Some(4));
    }

    /// Where a per-request `skipAfter` joins the straight path, a member stays known only if
    /// both paths agree; a key with a macro makes every member with its literal prefix dynamic.
    #[test]
    fn paths_join_and_macro_keys_make_prefixes_dynamic() {
        let (p, waf) = load(
            r#"
SecAction "id:1,phase:1,pass,nolog,setvar:tx.a=1,setvar:tx.b=1"
SecRule ARGS:skip "@streq 1" "id:2,phase:1,pass,nolog,skipAfter:JOIN"
SecAction "id:3,phase:1,pass,nolog,setvar:tx.a=2"
SecMarker JOIN
SecRule TX:a "@eq 2" "id:4,phase:1,deny"
SecRule TX:b "@eq 1" "id:5,phase:1,pass,nolog,setvar:tx.c=1"
SecRule ARGS "@rx ^v" "id:6,phase:1,pass,nolog,setvar:tx.b_%{matched_var_name}=1"
SecRule TX:b "@eq 1" "id:7,phase:1,pass,nolog"
SecRule TX:b_x "@eq 1" "id:8,phase:1,deny"
SecRule TX:c "@eq 1" "id:9,phase:1,pass,nolog"
"#,
        );
        assert_eq!(dynamic_ids(&p), vec![2, 4, 6, 8]);
        assert_eq!(decide(&waf, "/"), Some(4));
        assert_eq!(decide(&waf, "/?skip=1"), None);
        assert_eq!(decide(&waf, "/?skip=1&x=v"), None);
    }

    /// A rule a per-request `ctl:ruleRemoveById` may remove is not folded, so removing it still
    /// removes its effect.
    #[test]
    fn rules_a_ctl_may_remove_stay_per_request() {
        let (p, waf) = load(
            r#"
SecRule ARGS:off "@streq 1" "id:1,phase:1,pass,nolog,ctl:ruleRemoveById=2"
SecAction "id:2,phase:1,pass,nolog,setvar:tx.block=1"
SecRule TX:block "@eq 1" "id:3,phase:1,deny"
"#,
        );
        assert_eq!(dynamic_ids(&p), vec![1, 2, 3]);
        assert_eq!(decide(&waf, "/"), Some(3));
        assert_eq!(decide(&waf, "/?off=1"), None);
    }

    /// A chain whose first link reads a known value and does not match folds even when a later
    /// link reads the request or the rule would deny; operator arguments naming known members
    /// are expanded at load.
    #[test]
    fn non_matching_chains_fold_and_known_arguments_expand() {
        let (p, waf) = load(
            r#"
SecAction "id:1,phase:1,pass,nolog,setvar:tx.methods=GET HEAD,setvar:tx.limit=3"
SecRule &TX:enforce "@eq 1" "id:2,phase:1,deny,chain"
    SecRule ARGS "@rx ." ""
SecRule REQUEST_METHOD "!@within %{tx.methods}" "id:3,phase:1,deny"
SecRule &ARGS "@gt %{tx.limit}" "id:4,phase:1,deny"
"#,
        );
        assert_eq!(dynamic_ids(&p), vec![3, 4]);
        let r3 = p.rules.iter().find(|r| r.id == 3).unwrap();
        assert!(matches!(
            r3.links[0].op.as_deref(),
            Some(crate::operator::Operator::Str(_, crate::operator::Arg::Fixed(a))) if &**a == b"GET HEAD"
        ));
        assert_eq!(decide(&waf, "/?a=1&b=2&c=3"), None);
        assert_eq!(decide(&waf, "/?a=1&b=2&c=3&d=4"), Some(4));
        let view = crate::RequestView {
            method: "POST",
            uri: "/",
            headers: &[],
        };
        assert!(matches!(
            waf.check_with(&view, &crate::RequestContext::default()),
            crate::Decision::Deny { rule_id: 3, .. }
        ));
    }

    /// The setup writes move into the starting `TX` past per-request rules that neither read
    /// `TX` nor jump, and stop at the first rule that reads `TX` (or writes a key they write);
    /// matched ids keep their order and requests see the same values either way.
    #[test]
    fn setup_writes_hoist_only_past_rules_that_cannot_see_them() {
        let (p, waf) = load(
            r#"
SecRule REQUEST_HEADERS:Content-Type "@rx json" "id:1,phase:1,pass,nolog,ctl:requestBodyProcessor=JSON"
SecAction "id:2,phase:1,pass,nolog,setvar:tx.a=1,setvar:tx.b=2"
SecRule REQUEST_HEADERS:User-Agent "@rx ^.*$" "id:3,phase:1,pass,nolog,setvar:tx.ua=%{matched_var}"
SecAction "id:4,phase:1,pass,nolog,setvar:tx.c=3"
SecRule ARGS:x "@rx ^(\d+)$" "id:5,phase:1,pass,nolog,capture,setvar:tx.d=%{tx.1}"
SecAction "id:6,phase:1,pass,nolog,setvar:tx.e=4"
SecRule TX:e "@eq 4" "id:7,phase:1,pass,nolog,setvar:tx.f=%{tx.d}"
"#,
        );
        let mut start: Vec<_> = p
            .plan
            .initial_tx
            .iter()
            .map(|(k, v)| (k.as_str(), String::from_utf8_lossy(v).into_owned()))
            .collect();
        start.sort();
        assert_eq!(
            start,
            vec![("a", "1".into()), ("b", "2".into()), ("c", "3".into())]
        );
        let i = waf.inspect(
            &crate::RequestView {
                method: "GET",
                uri: "/?x=42",
                headers: &[("User-Agent", b"u")],
            },
            &crate::RequestContext::default(),
        );
        assert_eq!(i.matched, vec![2, 3, 4, 5, 6, 7]);
        let tx: Vec<_> = i.tx.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(
            tx,
            vec![
                ("0", "42"),
                ("1", "42"),
                ("a", "1"),
                ("b", "2"),
                ("c", "3"),
                ("d", "42"),
                ("e", "4"),
                ("f", "42"),
                ("ua", "u")
            ]
        );
    }

    /// Debian's CRS at every paranoia level, each request of the generated corpus run twice:
    /// with `TX` started from the load-time snapshot, and with the snapshot dropped (every
    /// folded step writing its members per request, as before it existed). The decision, the
    /// deny message, the matched ids in order and the final `TX` must be the same.
    #[test]
    fn crs_tx_snapshot_changes_no_outcome() {
        let n = std::env::var("CONCLAVE_CRS_REQUESTS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(2500);
        let requests = crate::corpus::generate(n, 22);
        for pl in 1..=4 {
            let (Some(with), Some(mut without)) =
                (super::super::crs_program(pl), super::super::crs_program(pl))
            else {
                eprintln!("skipped: Debian's modsecurity-crs is not installed");
                return;
            };
            assert_eq!(
                with.plan.initial_tx.len(),
                40,
                "PL{pl}: setup members in the snapshot"
            );
            assert_eq!(
                with.plan.initial_tx.get("paranoia_level").map(Vec::as_slice),
                Some(pl.to_string().as_bytes())
            );
            without.plan.initial_tx.clear();
            for f in &mut without.plan.fixed {
                f.hoisted = false;
            }
            let mut denied = 0;
            for r in &requests {
                let headers = r.header_refs();
                let view = crate::RequestView {
                    method: &r.method,
                    uri: &r.uri,
                    headers: &headers,
                };
                let ctx = crate::RequestContext {
                    protocol: "HTTP/1.1",
                    remote_addr: "192.0.2.10",
                    body: &r.body,
                };
                let run = |p: &super::super::Program| {
                    let mut t = super::super::eval::Transaction::new(p, &view, &ctx);
                    let o = t.run();
                    let msg = match &o {
                        super::super::eval::Outcome::Interrupt { rule, .. } if *rule != u32::MAX => {
                            t.message(*rule)
                        }
                        _ => None,
                    };
                    (o, msg, std::mem::take(&mut t.matched_rules), t.tx_all())
                };
                let a = run(&with);
                denied += usize::from(a.0 != super::super::eval::Outcome::Pass);
                assert_eq!(a, run(&without), "PL{pl}: {} {}", r.method, r.uri);
            }
            assert!(denied > n / 5, "PL{pl}: {denied} of {n} denied");
        }
    }
}
