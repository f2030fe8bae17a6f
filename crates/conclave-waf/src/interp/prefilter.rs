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

use super::factor;
use super::rule::{Link, Rule};
use super::vars::{Target, Var};
use super::{Item, Program};

/// Literal sets larger than this make a poor prefilter (and a big automaton): the rule runs as
/// before. `@pm` phrase lists may be longer (they are what the automaton is for: CRS's
/// `lfi-os-files.data` has 1,090 phrases, `php-function-names-933151.data` 1,264).
const MAX_LITERALS: usize = 300;
const MAX_PHRASES: usize = 2_000;
/// A necessary factor (`factor.rs`) whose [`factor::cost`] is above this would let nearly every
/// benign value through: scanning for it costs more than it saves.
const MAX_FACTOR_COST: f64 = 1.0;
/// Rules with single-byte strings per group kept in its byte table (bits of the table's
/// masks); further ones put their bytes into the automaton instead.
const MAX_BYTE_RULES: usize = 256;

/// One group: the values of one variable through one transformation chain, in one phase, and
/// the literals of every rule that reads that variable through that chain. A rule with several
/// variables belongs to one group per variable, so each (variable, chain) is scanned once per
/// phase however many rules and variable lists share it.
#[derive(Debug)]
pub(crate) struct Group {
    pub target: Target,
    pub transforms: Vec<Transform>,
    pub chain: u32,
    /// The literals of two bytes or more (`None` when the members have only single bytes).
    pub ac: Option<AhoCorasick>,
    /// Per automaton pattern: the (indexes of the) rules it belongs to.
    pub pattern_rules: Vec<Vec<u32>>,
    /// The shortest literal of the automaton: a shorter (transformed) value holds none.
    pub min_len: usize,
    /// The rules with single-byte literals: one pass over a value ORs `byte_masks[byte]`, whose
    /// bit `i` stands for `byte_rules[i]` (`words` u64 per byte), instead of an automaton
    /// match per occurrence of a common byte.
    pub byte_rules: Vec<u32>,
    pub byte_masks: Box<[u64]>,
    pub words: usize,
}

/// (phase, chain id, the target as text): rules that see the same values.
type GroupKey = (u8, u32, String);
/// A rule index and its literals.
type Member = (u32, Vec<Vec<u8>>);
/// What a group scans: a target through a chain.
type Source = (Target, Vec<Transform>, u32);

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
        // Chain ids: the loader's, and new ones for the prefixes of `multiMatch` chains.
        let mut chain_ids: FxHashMap<Vec<Transform>, u32> = FxHashMap::default();
        for r in &prog.rules {
            for l in &r.links {
                chain_ids.insert(l.transforms.clone(), l.chain);
            }
        }
        let mut next_chain = chain_ids.values().max().map_or(0, |m| m + 1);
        // (phase, chain, target as text) -> (what is scanned, literals per member)
        let mut by_key: FxHashMap<GroupKey, (Source, Vec<Member>)> = FxHashMap::default();
        let mut order = Vec::new();
        for list in &prog.phases {
            for it in list {
                let Item::Rule(ri) = it else { continue };
                let r = &prog.rules[*ri as usize];
                let Some(lits) = rule_literals(r) else { continue };
                let link = &r.links[0];
                // `multiMatch` runs the operator on the value after every transformation that
                // changes it: each prefix of the chain is scanned (a superset of its candidates).
                let chains: Vec<(Vec<Transform>, u32)> = if link.multi_match {
                    (0..=link.transforms.len())
                        .map(|k| {
                            let ts = link.transforms[..k].to_vec();
                            let id = *chain_ids.entry(ts.clone()).or_insert_with(|| {
                                next_chain += 1;
                                next_chain - 1
                            });
                            (ts, id)
                        })
                        .collect()
                } else {
                    vec![(link.transforms.clone(), link.chain)]
                };
                for t in &link.targets {
                    for (ts, chain) in &chains {
                        let key = (r.phase, *chain, format!("{t:?}"));
                        let e = by_key.entry(key.clone()).or_insert_with(|| {
                            order.push(key);
                            ((t.clone(), ts.clone(), *chain), Vec::new())
                        });
                        if e.1.last().map(|m| m.0) != Some(*ri) {
                            e.1.push((*ri, lits.clone()));
                        }
                    }
                }
            }
        }
        let mut groups = Vec::new();
        let mut failed = vec![false; prog.rules.len()];
        for key in order {
            let Some(((target, transforms, chain), members)) = by_key.remove(&key) else {
                continue;
            };
            // Each distinct literal once (compared as the automaton compares: ASCII case folded).
            let mut patterns: Vec<Vec<u8>> = Vec::new();
            let mut pattern_rules: Vec<Vec<u32>> = Vec::new();
            let mut index: FxHashMap<Vec<u8>, usize> = FxHashMap::default();
            let mut byte_rules: Vec<u32> = Vec::new();
            let mut byte_sets: Vec<Vec<u8>> = Vec::new();
            for (ri, lits) in &members {
                let table = lits.iter().any(|l| l.len() == 1) && byte_rules.len() < MAX_BYTE_RULES;
                if table {
                    byte_rules.push(*ri);
                    byte_sets.push(lits.iter().filter(|l| l.len() == 1).map(|l| l[0]).collect());
                }
                for l in lits.iter().filter(|l| !table || l.len() > 1) {
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
            let ac = if patterns.is_empty() {
                None
            } else {
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
                Some(ac)
            };
            let words = byte_rules.len().div_ceil(64);
            let mut byte_masks = vec![0u64; 256 * words].into_boxed_slice();
            for (i, set) in byte_sets.iter().enumerate() {
                for &b in set {
                    // Compared ASCII-case-insensitively, as the automaton compares.
                    for b in [b.to_ascii_lowercase(), b.to_ascii_uppercase()] {
                        byte_masks[b as usize * words + i / 64] |= 1 << (i % 64);
                    }
                }
            }
            let g = groups.len() as u32;
            for (ri, _) in &members {
                rule_groups[*ri as usize].push(g);
            }
            groups.push(Group {
                min_len: patterns.iter().map(Vec::len).min().unwrap_or(usize::MAX),
                target,
                transforms,
                chain,
                ac,
                pattern_rules,
                byte_rules,
                byte_masks,
                words,
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
    if link.negated || link.targets.is_empty() {
        return None;
    }
    if !link.targets.iter().all(request_constant) {
        return None;
    }
    let lits = op_literals(op)?;
    let max = if matches!(**op, Operator::Pm(_)) {
        MAX_PHRASES
    } else {
        MAX_LITERALS
    };
    if lits.len() > max || lits.iter().any(|l| l.is_empty()) {
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
        Operator::Rx(rx) => {
            let p = rx.rust_pattern()?;
            let f = factor::necessary_factor(p).filter(|f| factor::cost(f) <= MAX_FACTOR_COST);
            match (rx_literals(p), f) {
                (Some(l), Some(f)) => Some(if factor::cost(&f) < factor::cost(&l) { f } else { l }),
                (l, f) => l.or(f),
            }
        }
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
