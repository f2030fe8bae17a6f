//! Prefilters: which rules of a phase *can* match this request, found for many rules at once.
//!
//! Most CRS rules are "`@rx`/`@pm` over the same request variables with the same
//! transformation chain, acting only on a match". For such a rule a set of literals is computed
//! at load such that any value the operator matches contains one of them (for `@rx`, the prefix
//! or suffix literals `regex-syntax` extracts, or a necessary factor from `factor.rs` when that
//! is less likely in benign text — often a few punctuation bytes; for `@pm`, the phrases; for
//! `@contains` and friends, the argument). The rules reading one variable through one chain in
//! one phase form a group: one ASCII-case-insensitive Aho-Corasick automaton over all their
//! literals of two bytes or more, and a 256-entry table of rule masks for the single-byte ones
//! (a rule with several variables is in several groups). Per request, the first time one of a group's rules is
//! reached, the group's values are transformed (through the transaction's cache) and scanned
//! once; a rule none of whose literals occurred in any of its groups cannot match and is
//! skipped.
//! Skipping is exact, not a heuristic: a non-matching first link has no effect in ModSecurity v3
//! (its `setvar`s, captures and `MATCHED_VAR` updates run per *matching* value only).
//!
//! Rules are left out (evaluated as before) when skipping could change a decision: negated
//! operators, `multiMatch`, macros in the operator, variables that change during a phase
//! (`TX` and the other collections, `MATCHED_VAR(S)`, counts, time), `SecAction`, operators
//! without necessary literals (`@detectSQLi`, `@within`, numeric comparisons, regexes without a
//! selective factor). `@rx` patterns that run on PCRE2 get the literals of a Rust-syntax pattern
//! matching a superset of theirs (`factor::pcre_superset`), or none when it cannot be written.

use aho_corasick::AhoCorasick;
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
/// before. (Letting `@pm` lists of up to 2,000 phrases in — CRS's `lfi-os-files.data` has
/// 1,090 — measured no gain: their automata are big, the rules they skip cheap.)
const MAX_LITERALS: usize = 300;
/// A necessary factor (`factor.rs`) whose [`factor::cost`] is above this would let nearly every
/// benign value through: scanning for it costs more than it saves.
const MAX_FACTOR_COST: f64 = 1.0;
/// Rules with single-byte strings per group kept in its byte table (bits of the table's
/// masks); further ones put their bytes into the automaton instead.
const MAX_BYTE_RULES: usize = 256;

/// A group's literal automaton. The DFA is scanned through its concrete type, so the scan loop
/// inlines its transitions (`AhoCorasick` calls each byte's transition through a trait
/// object); the library's default automaton stands in when a DFA would be too large.
#[derive(Debug)]
pub(crate) enum Literals {
    Dfa(Box<aho_corasick::dfa::DFA>),
    Other(AhoCorasick),
}

impl Literals {
    /// Calls `hit` with the pattern index of every occurrence (overlapping ones included) of a
    /// literal in `bytes`.
    #[inline]
    pub(crate) fn for_each_occurrence(&self, bytes: &[u8], mut hit: impl FnMut(usize)) {
        match self {
            Literals::Dfa(dfa) => {
                use aho_corasick::automaton::{Automaton, OverlappingState};
                let input = aho_corasick::Input::new(bytes);
                let mut state = OverlappingState::start();
                loop {
                    if dfa.try_find_overlapping(&input, &mut state).is_err() {
                        // Not expected (an unanchored search with the standard match kind); if
                        // it happens, every literal counts as found: nothing is skipped.
                        (0..dfa.patterns_len()).for_each(&mut hit);
                        return;
                    }
                    match state.get_match() {
                        Some(m) => hit(m.pattern().as_usize()),
                        None => return,
                    }
                }
            }
            Literals::Other(ac) => {
                for m in ac.find_overlapping_iter(bytes) {
                    hit(m.pattern().as_usize());
                }
            }
        }
    }
}

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
    pub ac: Option<Literals>,
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
    /// Which (phase, target) the group scans: groups of one source see the same values
    /// through different chains.
    pub source: u32,
    /// The other groups of this source with a rule the plan runs (see
    /// [`Prefilters::link_siblings`]): scanned together with this one, over one collection of
    /// the values.
    pub siblings: Box<[u32]>,
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
        // (phase, chain, target as text) -> (what is scanned, literals per member)
        let mut by_key: FxHashMap<GroupKey, (Source, Vec<Member>)> = FxHashMap::default();
        let mut order = Vec::new();
        for list in &prog.phases {
            for it in list {
                let Item::Rule(ri) = it else { continue };
                let r = &prog.rules[*ri as usize];
                let Some(lits) = rule_literals(r) else { continue };
                let link = &r.links[0];
                for t in &link.targets {
                    let key = (r.phase, link.chain, format!("{t:?}"));
                    let e = by_key.entry(key.clone()).or_insert_with(|| {
                        order.push(key);
                        ((t.clone(), link.transforms.clone(), link.chain), Vec::new())
                    });
                    if e.1.last().map(|m| m.0) != Some(*ri) {
                        e.1.push((*ri, lits.clone()));
                    }
                }
            }
        }
        let mut groups = Vec::new();
        let mut failed = vec![false; prog.rules.len()];
        let mut sources: FxHashMap<(u8, String), u32> = FxHashMap::default();
        for key in order {
            let Some(((target, transforms, chain), members)) = by_key.remove(&key) else {
                continue;
            };
            let n = sources.len() as u32;
            let source = *sources.entry((key.0, key.2.clone())).or_insert(n);
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
                let built = aho_corasick::dfa::Builder::new()
                    .ascii_case_insensitive(true)
                    .build(&patterns)
                    .map(|d| Literals::Dfa(Box::new(d)))
                    .or_else(|_| {
                        AhoCorasick::builder()
                            .ascii_case_insensitive(true)
                            .build(&patterns)
                            .map(Literals::Other)
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
                source,
                siblings: Box::default(),
            });
        }
        let rule_groups = rule_groups
            .into_iter()
            .zip(failed)
            .map(|(g, f)| if f { Box::default() } else { g.into_boxed_slice() })
            .collect();
        Prefilters { rule_groups, groups }
    }

    /// Fills each group's [`Group::siblings`]: the other groups of its source holding a rule for
    /// which `live` holds (one the plan runs per request; a group of paranoia levels above the
    /// configured one would be scanned for nothing).
    pub(crate) fn link_siblings(&mut self, live: impl Fn(u32) -> bool) {
        let mut group_live = vec![false; self.groups.len()];
        for (ri, gs) in self.rule_groups.iter().enumerate() {
            if live(ri as u32) {
                for &g in gs.iter() {
                    group_live[g as usize] = true;
                }
            }
        }
        let mut by_source: FxHashMap<u32, Vec<u32>> = FxHashMap::default();
        for (g, grp) in self.groups.iter().enumerate() {
            if group_live[g] {
                by_source.entry(grp.source).or_default().push(g as u32);
            }
        }
        for (g, grp) in self.groups.iter_mut().enumerate() {
            if let Some(all) = by_source.get(&grp.source) {
                grp.siblings = all.iter().copied().filter(|&h| h as usize != g).collect();
            }
        }
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
        Operator::Rx(rx) => {
            // A pattern on PCRE2: the literals of a Rust-syntax pattern that matches at least
            // what it matches (`factor::pcre_superset`).
            let superset;
            let p = match rx.rust_pattern() {
                Some(p) => p,
                None => {
                    superset = factor::pcre_superset(rx.fixed_pattern()?)?;
                    &superset
                }
            };
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
    let hir = crate::operator::parse_as_rust(pattern)?;
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

    /// Exactness of every CRS prefilter at the operator: a value holding none of a rule's
    /// literals (compared ASCII-case-insensitively, as the scan compares) never matches the
    /// rule's operator. Values: the differential corpus's request parts, random byte strings
    /// over an alphabet heavy in the CRS's punctuation, and both with every byte of the rule's
    /// literals removed (so they fail the prefilter).
    #[test]
    fn crs_prefilters_never_skip_a_match() {
        let Some(prog) = super::super::crs_program(4) else {
            eprintln!("skipped: Debian's modsecurity-crs is not installed");
            return;
        };
        let mut values: Vec<Vec<u8>> = Vec::new();
        for r in crate::corpus::generate(300, 11) {
            let query = r.uri.split_once('?').map_or("", |(_, q)| q);
            values.push(r.uri.as_bytes().to_vec());
            for part in query.split('&') {
                values.push(part.as_bytes().to_vec());
                let decoded = crate::transform::Transform::UrlDecodeUni.apply(part.as_bytes().into());
                values.push(decoded.into_owned());
            }
            values.extend(r.headers.iter().map(|(_, v)| v.clone()));
            values.push(r.body.clone());
        }
        let mut rng = crate::rng::SplitMix64(7);
        const ALPHABET: &[u8] = b"aeiostnrlcdu0123456789 ./\\-_=;:,()[]{}<>'\"`$&|!?*%#@~^+\n\r\t\x00\x0bABCDEFGHIJKLMNOPQRSTUVWXYZ";
        for _ in 0..3_000 {
            let n = rng.below(40);
            values.push((0..n).map(|_| rng.pick(ALPHABET)).collect());
        }
        let mut checked = 0usize;
        let mut rules = 0usize;
        for (ri, groups) in prog.prefilters.rule_groups.iter().enumerate() {
            if groups.is_empty() {
                continue;
            }
            let r = &prog.rules[ri];
            let lits = rule_literals(r).expect("a prefiltered rule has literals");
            let op = r.links[0].op.as_ref().expect("an operator");
            let bytes: Vec<u8> = lits.iter().flatten().map(u8::to_ascii_lowercase).collect();
            let contains = |v: &[u8]| {
                let v = v.to_ascii_lowercase();
                lits.iter()
                    .any(|l| v.windows(l.len()).any(|w| w == l.to_ascii_lowercase()))
            };
            rules += 1;
            for v in &values {
                let stripped: Vec<u8> = v
                    .iter()
                    .copied()
                    .filter(|b| !bytes.contains(&b.to_ascii_lowercase()))
                    .collect();
                for v in [v.as_slice(), &stripped] {
                    if contains(v) {
                        continue;
                    }
                    checked += 1;
                    let mut ctx = crate::operator::test_ctx::Ctx::default();
                    assert!(
                        !op.eval(v, &mut ctx),
                        "rule {} matches {:?} which holds none of its literals {:?}",
                        r.id,
                        String::from_utf8_lossy(v),
                        lits.iter()
                            .map(|l| String::from_utf8_lossy(l))
                            .collect::<Vec<_>>()
                    );
                }
            }
        }
        assert!(rules > 250, "{rules} prefiltered rules");
        assert!(checked > 500_000, "{checked} values checked");
        eprintln!("{rules} prefiltered rules, {checked} values checked");
    }

    /// The DFA scan reports every occurrence, overlapping and ASCII-case-folded ones included,
    /// as `AhoCorasick`'s overlapping iterator does.
    #[test]
    fn dfa_scan_finds_what_the_overlapping_iterator_finds() {
        let patterns = ["abc", "bc", "bcd", "cd", "union select", "<script", "ab"];
        let dfa = aho_corasick::dfa::Builder::new()
            .ascii_case_insensitive(true)
            .build(patterns)
            .unwrap();
        let ac = AhoCorasick::builder()
            .ascii_case_insensitive(true)
            .build(patterns)
            .unwrap();
        let found = |l: &Literals, v: &str| {
            let mut out = Vec::new();
            l.for_each_occurrence(v.as_bytes(), |p| out.push(p));
            out.sort_unstable();
            out
        };
        let (dfa, ac) = (Literals::Dfa(Box::new(dfa)), Literals::Other(ac));
        for v in [
            "abcd",
            "xABCDx",
            "1 UNION SELECT 2",
            "<SCRIPT>ab",
            "",
            "zzz",
            "abab",
        ] {
            assert_eq!(found(&dfa, v), found(&ac, v), "{v:?}");
        }
        assert_eq!(found(&dfa, "xABCDx"), vec![0, 1, 2, 3, 6]);
        assert_eq!(found(&dfa, "abab"), vec![6, 6]);
    }

    #[test]
    fn no_literals_for_open_patterns() {
        assert_eq!(rx_literals("[a-z]+"), None);
        assert_eq!(rx_literals(".*x"), Some(vec![b"x".to_vec()]));
        assert_eq!(rx_literals("a?"), None);
        assert_eq!(rx_literals("^"), None);
    }
}
