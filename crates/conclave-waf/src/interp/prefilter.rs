//! Prefilters: which rules of a phase *can* match this request, found for many rules at once.
//!
//! Most CRS rules are "`@rx`/`@pm` over the same request variables with the same
//! transformation chain, acting only on a match". For such a rule a set of literals is computed
//! at load such that any value the operator matches contains one of them (for `@rx`, the prefix
//! or suffix literals `regex-syntax` extracts; for `@pm`, the phrases; for `@contains` and
//! friends, the argument). The rules reading one variable through one chain in one phase form a
//! group: one ASCII-case-insensitive Aho-Corasick automaton over all their literals (a rule with
//! several variables is in several groups). Per request, the first time one of a group's rules is
//! reached, the group's values are transformed (through the transaction's cache) and scanned
//! once; a rule none of whose literals occurred in any of its groups cannot match and is
//! skipped.
//! Skipping is exact, not a heuristic: a non-matching first link has no effect in ModSecurity v3
//! (its `setvar`s, captures and `MATCHED_VAR` updates run per *matching* value only).
//!
//! Rules are left out (evaluated as before) when skipping could change a decision: negated
//! operators, `multiMatch`, macros in the operator, variables that change during a phase
//! (`TX` and the other collections, `MATCHED_VAR(S)`, counts, time), `SecAction`, operators
//! without necessary literals (`@detectSQLi`, `@within`, numeric comparisons, regexes whose
//! literal sets are infinite), and `@rx` patterns that run on PCRE2 (their syntax is not
//! `regex-syntax`'s).

use aho_corasick::{AhoCorasick, AhoCorasickKind};
use regex_syntax::hir::literal::{ExtractKind, Extractor};

use crate::hash::FxHashMap;
use crate::operator::Arg;
use crate::operator::{Operator, StrOp};

use crate::transform::Transform;

use super::rule::{Link, Rule};
use super::vars::{Target, Var};
use super::{Item, Program};

/// Literal sets larger than this make a poor prefilter (and a big automaton): the rule runs as
/// before.
const MAX_LITERALS: usize = 300;

/// One group: the values of one variable through one transformation chain, in one phase, and
/// the literals of every rule that reads that variable through that chain. A rule with several
/// variables belongs to one group per variable, so each (variable, chain) is scanned once per
/// phase however many rules and variable lists share it.
#[derive(Debug)]
pub(crate) struct Group {
    pub target: Target,
    pub transforms: Vec<Transform>,
    pub chain: u32,
    pub ac: AhoCorasick,
    /// Per automaton pattern: the (indexes of the) rules it belongs to.
    pub pattern_rules: Vec<Vec<u32>>,
    /// The shortest literal: a shorter (transformed) value holds none, no scan needed.
    pub min_len: usize,
}

/// (phase, chain id, the target as text): rules that see the same values.
type GroupKey = (u8, u32, String);
/// A rule index and its literals.
type Member = (u32, Vec<Vec<u8>>);

/// The compiled prefilters of a [`Program`].
#[derive(Debug, Default)]
pub(crate) struct Prefilters {
    /// Per rule: its groups (one per variable of its first link), empty when the rule always runs.
    pub rule_groups: Vec<Box<[u32]>>,
    pub groups: Vec<Group>,
}

impl Prefilters {
    /// Builds the groups for the rules reachable in `prog`'s phase lists.
    pub(crate) fn build(prog: &Program) -> Prefilters {
        let mut rule_groups: Vec<Vec<u32>> = vec![Vec::new(); prog.rules.len()];
        // (phase, chain, target as text) -> (rule and target, literals per member)
        let mut by_key: FxHashMap<GroupKey, ((u32, usize), Vec<Member>)> = FxHashMap::default();
        let mut order = Vec::new();
        for list in &prog.phases {
            for it in list {
                let Item::Rule(ri) = it else { continue };
                let r = &prog.rules[*ri as usize];
                let Some(lits) = rule_literals(r) else { continue };
                let link = &r.links[0];
                for (ti, t) in link.targets.iter().enumerate() {
                    let key = (r.phase, link.chain, format!("{t:?}"));
                    let e = by_key.entry(key.clone()).or_insert_with(|| {
                        order.push(key);
                        ((*ri, ti), Vec::new())
                    });
                    if e.1.last().map(|m| m.0) != Some(*ri) {
                        e.1.push((*ri, lits.clone()));
                    }
                }
            }
        }
        let mut groups = Vec::new();
        let mut failed = vec![false; prog.rules.len()];
        for key in order {
            let Some(((rep, ti), members)) = by_key.remove(&key) else {
                continue;
            };
            // Each distinct literal once (compared as the automaton compares: ASCII case folded).
            let mut patterns: Vec<Vec<u8>> = Vec::new();
            let mut pattern_rules: Vec<Vec<u32>> = Vec::new();
            let mut index: FxHashMap<Vec<u8>, usize> = FxHashMap::default();
            for (ri, lits) in &members {
                for l in lits {
                    let l = l.to_ascii_lowercase();
                    let p = *index.entry(l.clone()).or_insert_with(|| {
                        patterns.push(l);
                        pattern_rules.push(Vec::new());
                        patterns.len() - 1
                    });
                    if pattern_rules[p].last() != Some(ri) {
                        pattern_rules[p].push(*ri);
                    }
                }
            }
            // A DFA: the fastest scan; the sets are small (at most a few thousand states).
            let built = AhoCorasick::builder()
                .ascii_case_insensitive(true)
                .kind(Some(AhoCorasickKind::DFA))
                .build(&patterns)
                .or_else(|_| {
                    AhoCorasick::builder()
                        .ascii_case_insensitive(true)
                        .build(&patterns)
                });
            let Ok(ac) = built else {
                // Without this variable's scan the members' prefilters would be incomplete.
                for (ri, _) in &members {
                    failed[*ri as usize] = true;
                }
                continue;
            };
            let g = groups.len() as u32;
            for (ri, _) in &members {
                rule_groups[*ri as usize].push(g);
            }
            let link = &prog.rules[rep as usize].links[0];
            groups.push(Group {
                min_len: patterns.iter().map(Vec::len).min().unwrap_or(0),
                target: link.targets[ti].clone(),
                transforms: link.transforms.clone(),
                chain: link.chain,
                ac,
                pattern_rules,
            });
        }
        let rule_groups = rule_groups
            .into_iter()
            .zip(failed)
            .map(|(g, f)| if f { Box::default() } else { g.into_boxed_slice() })
            .collect();
        Prefilters { rule_groups, groups }
    }

    /// How many rules have a prefilter.
    pub(crate) fn covered(&self) -> usize {
        self.rule_groups.iter().filter(|g| !g.is_empty()).count()
    }
}

/// The literals one of which every match of `r`'s first link contains, if the rule may be
/// skipped when none occurs.
fn rule_literals(r: &Rule) -> Option<Vec<Vec<u8>>> {
    let link: &Link = r.links.first()?;
    let op = link.op.as_ref()?;
    if link.negated || link.multi_match || link.targets.is_empty() {
        return None;
    }
    if !link.targets.iter().all(request_constant) {
        return None;
    }
    let lits = op_literals(op)?;
    if lits.len() > MAX_LITERALS || lits.iter().any(|l| l.is_empty()) {
        return None;
    }
    Some(lits)
}

/// Whether a target's values are fixed for the whole phase (they depend on the request only).
fn request_constant(t: &Target) -> bool {
    !t.count
        && matches!(
            t.var,
            Var::Args
                | Var::ArgsGet
                | Var::ArgsPost
                | Var::ArgsNames
                | Var::ArgsGetNames
                | Var::ArgsPostNames
                | Var::QueryString
                | Var::RequestUri
                | Var::RequestUriRaw
                | Var::RequestFilename
                | Var::RequestBasename
                | Var::RequestLine
                | Var::RequestMethod
                | Var::RequestProtocol
                | Var::RequestHeaders
                | Var::RequestHeadersNames
                | Var::RequestCookies
                | Var::RequestCookiesNames
                | Var::RequestBody
                | Var::Files
                | Var::FilesNames
                | Var::Xml
                | Var::RemoteAddr
                | Var::MultipartPartHeaders
        )
}

/// Necessary literals of an operator (a match implies the value contains one of them, compared
/// ASCII-case-insensitively).
fn op_literals(op: &Operator) -> Option<Vec<Vec<u8>>> {
    match op {
        Operator::Rx(rx) => rx_literals(rx.rust_pattern()?),
        Operator::Pm(set) => Some(set.phrases().to_vec()),
        Operator::Str(
            StrOp::Contains
            | StrOp::ContainsWord
            | StrOp::BeginsWith
            | StrOp::EndsWith
            | StrOp::Streq
            | StrOp::Strmatch,
            Arg::Fixed(p),
        ) => Some(vec![p.to_vec()]),
        _ => None,
    }
}

/// Prefix or suffix literals of a pattern as the Rust engine reads it (the better-looking of
/// the two), or `None` when either set is infinite or holds the empty string.
pub(crate) fn rx_literals(pattern: &str) -> Option<Vec<Vec<u8>>> {
    let hir = regex_syntax::ParserBuilder::new()
        .unicode(false)
        .utf8(false)
        .dot_matches_new_line(true)
        .multi_line(true)
        .build()
        .parse(pattern)
        .ok()?;
    let mut best: Option<Vec<Vec<u8>>> = None;
    for kind in [ExtractKind::Prefix, ExtractKind::Suffix] {
        let seq = Extractor::new().kind(kind).extract(&hir);
        let Some(lits) = seq.literals() else { continue };
        let mut v: Vec<Vec<u8>> = lits.iter().map(|l| l.as_bytes().to_ascii_lowercase()).collect();
        if v.is_empty() || v.iter().any(|l| l.is_empty()) {
            continue;
        }
        v.sort();
        v.dedup();
        let score = |v: &Vec<Vec<u8>>| v.iter().map(Vec::len).min().unwrap_or(0);
        if best.as_ref().is_none_or(|b| score(&v) > score(b)) {
            best = Some(v);
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_of_alternations_and_case_insensitive_words() {
        assert_eq!(
            rx_literals("(?i)(?:union|select)\\s").unwrap(),
            vec![b"select".to_vec(), b"union".to_vec()]
        );
        assert_eq!(rx_literals("foo.+bar").unwrap(), vec![b"foo".to_vec()]);
    }

    /// Which rules of a small set get a prefilter, and how they are grouped.
    #[test]
    fn only_rules_without_effects_on_no_match_are_prefiltered() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rules.conf");
        std::fs::write(
            &path,
            r#"
SecRuleEngine On
SecRule ARGS "@rx (?i)union\s+select" "id:1,phase:2,deny,t:lowercase"
SecRule ARGS "@pm passwd shadow" "id:2,phase:2,deny,t:lowercase"
SecRule ARGS "!@rx abc" "id:3,phase:2,deny"
SecRule TX:score "@rx abc" "id:4,phase:2,deny"
SecRule ARGS "@rx [a-z]+" "id:5,phase:2,deny"
SecRule ARGS "@rx %{tx.x}" "id:6,phase:2,deny"
SecRule ARGS "@contains etc/" "id:7,phase:2,deny,t:urlDecode"
SecRule &ARGS "@eq 0" "id:8,phase:2,deny"
SecRule ARGS "@rx abc" "id:9,phase:2,deny,multiMatch"
SecAction "id:10,phase:2,pass,setvar:tx.a=1"
"#,
        )
        .unwrap();
        let prog = super::super::load(&path).unwrap();
        let group = |id: u64| {
            let i = prog.rules.iter().position(|r| r.id == id).unwrap();
            let g = &prog.prefilters.rule_groups[i];
            (!g.is_empty()).then(|| g.to_vec())
        };
        assert!(group(1).is_some());
        assert_eq!(group(1), group(2), "same phase, variables and chain");
        assert!(group(7).is_some());
        assert_ne!(group(7), group(1), "another chain");
        for id in [3, 4, 5, 6, 8, 9, 10] {
            assert_eq!(group(id), None, "rule {id}");
        }
        assert_eq!(prog.prefilters.covered(), 3);
    }

    /// Skipped rules decide as if they had run: matches still match (literals compared after
    /// the rule's chain, case-insensitively), a rule after a skipped one still sees `TX`.
    #[test]
    fn prefiltered_rules_decide_as_before() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rules.conf");
        std::fs::write(
            &path,
            r#"
SecRuleEngine On
SecRule ARGS "@rx union\s+select" "id:1,phase:2,pass,t:lowercase,setvar:tx.score=+5"
SecRule ARGS "@pm /etc/passwd" "id:2,phase:2,pass,t:urlDecode,setvar:tx.score=+5"
SecRule TX:score "@ge 5" "id:3,phase:2,deny,status:403"
"#,
        )
        .unwrap();
        let waf = crate::Waf::load(&path).unwrap();
        assert_eq!(waf.prefiltered_rule_count(), 2);
        let decide = |uri: &str| {
            let view = crate::RequestView {
                method: "GET",
                uri,
                headers: &[],
            };
            match waf.check_with(&view, &crate::RequestContext::default()) {
                crate::Decision::Allow => None,
                crate::Decision::Deny { status, rule_id, .. } => Some((status, rule_id)),
            }
        };
        assert_eq!(decide("/?q=hello"), None);
        assert_eq!(decide("/?q=UNION%20%20SeLeCt+1"), Some((403, 3)));
        assert_eq!(decide("/?f=%252Fetc%252FPASSWD"), Some((403, 3)));
        assert_eq!(decide("/?f=%2Fetc%2Fpasswd"), Some((403, 3)));
        assert_eq!(decide("/?f=etc-passwd&g=union"), None);
    }

    #[test]
    fn no_literals_for_open_patterns() {
        assert_eq!(rx_literals("[a-z]+"), None);
        assert_eq!(rx_literals(".*x"), Some(vec![b"x".to_vec()]));
        assert_eq!(rx_literals("a?"), None);
        assert_eq!(rx_literals("^"), None);
    }
}
