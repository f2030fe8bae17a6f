//! Rules compiled into set matchers: per (variables, transformations) group, one Aho-Corasick
//! automaton for all `@contains`, one (case-insensitive) for all `@pm` words, hash maps for
//! `@streq`/`@beginsWith`/`@endsWith`, one `RegexSet` for all `@rx`. A request is matched once per
//! group, whatever the number of rules; only negated operators and `@within` are tested one by one.

use std::ops::Range;
use std::sync::Arc;

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use regex::bytes::{Regex, RegexBuilder, RegexSet, RegexSetBuilder};

use crate::error::WafError;
use crate::hash::FxHashMap;
use crate::request::{url_decode_in_place, RequestView, Scratch};
use crate::rule::{Condition, DefaultAction, Disruptive, OpKind, Operator, Targets, Transform, VarKind};
use crate::ruleset::Parsed;

/// Compiled regexes may use this much memory each (large CRS-style alternations need more than
/// the regex crate's default).
const REGEX_SIZE_LIMIT: usize = 256 << 20;

/// Builds a regex with ModSecurity's PCRE flags (DOTALL, MULTILINE) over bytes, ASCII classes.
pub(crate) fn build_regex(pattern: &str) -> Result<Regex, regex::Error> {
    let p = if pattern.is_empty() { ".*" } else { pattern };
    RegexBuilder::new(p)
        .unicode(false)
        .dot_matches_new_line(true)
        .multi_line(true)
        .size_limit(REGEX_SIZE_LIMIT)
        .build()
}

/// Lists of condition ids per pattern, stored flat.
#[derive(Default)]
struct Postings {
    offsets: Vec<u32>,
    conds: Vec<u32>,
}

impl Postings {
    /// From (pattern index, condition) pairs; patterns are numbered 0..n.
    fn build(n: usize, mut pairs: Vec<(u32, u32)>) -> Postings {
        pairs.sort_unstable();
        let mut offsets = Vec::with_capacity(n + 1);
        let mut conds = Vec::with_capacity(pairs.len());
        let mut it = pairs.into_iter().peekable();
        for p in 0..n as u32 {
            offsets.push(conds.len() as u32);
            while let Some(&(q, c)) = it.peek() {
                if q != p {
                    break;
                }
                conds.push(c);
                it.next();
            }
        }
        offsets.push(conds.len() as u32);
        Postings { offsets, conds }
    }

    fn get(&self, p: usize) -> &[u32] {
        &self.conds[self.offsets[p] as usize..self.offsets[p + 1] as usize]
    }
}

/// Distinct literals numbered in order of first appearance, with their conditions.
#[derive(Default)]
struct LiteralCollector {
    index: FxHashMap<Box<[u8]>, u32>,
    pairs: Vec<(u32, u32)>,
}

impl LiteralCollector {
    fn add(&mut self, lit: &[u8], cond: u32) {
        let n = self.index.len() as u32;
        let p = match self.index.get(lit) {
            Some(&p) => p,
            None => {
                self.index.insert(lit.into(), n);
                n
            }
        };
        self.pairs.push((p, cond));
    }

    fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    fn len(&self) -> usize {
        self.index.len()
    }

    /// Distinct lengths of the literals, ascending.
    fn lens(&self) -> Vec<usize> {
        let mut lens: Vec<usize> = self.index.keys().map(|p| p.len()).collect();
        lens.sort_unstable();
        lens.dedup();
        lens
    }
}

/// Exact-match table (`@streq`, or prefixes/suffixes of the lengths in `lens`).
struct LiteralMap {
    map: FxHashMap<Box<[u8]>, u32>,
    postings: Postings,
    lens: Vec<usize>,
}

impl LiteralMap {
    fn build(c: LiteralCollector) -> LiteralMap {
        let lens = c.lens();
        let postings = Postings::build(c.len(), c.pairs);
        LiteralMap {
            map: c.index,
            postings,
            lens,
        }
    }

    fn lookup(&self, key: &[u8], out: &mut Vec<u32>) {
        if let Some(&p) = self.map.get(key) {
            out.extend_from_slice(self.postings.get(p as usize));
        }
    }
}

/// From this many distinct `@contains` literals in one group, a hash of fixed-length windows
/// replaces the automaton when the literals have few distinct lengths: aho-corasick's trie build
/// for a million random literals takes 10-20 s on the 2-core target machine, the hash well under 1 s,
/// and a lookup per window costs about what an automaton step does for short values.
const WINDOW_HASH_MIN_PATTERNS: usize = 50_000;
/// ... as long as a value needs at most this many window lengths.
const WINDOW_HASH_MAX_LENGTHS: usize = 4;

/// Finds every occurrence of many literals in a value.
enum LiteralScanner {
    /// One Aho-Corasick automaton (overlapping matches).
    Automaton { ac: AhoCorasick, postings: Postings },
    /// Every window of each literal length looked up in a hash map.
    Windows(LiteralMap),
}

impl LiteralScanner {
    fn build(c: LiteralCollector, case_insensitive: bool) -> Result<LiteralScanner, WafError> {
        if !case_insensitive
            && c.len() >= WINDOW_HASH_MIN_PATTERNS
            && c.lens().len() <= WINDOW_HASH_MAX_LENGTHS
        {
            return Ok(LiteralScanner::Windows(LiteralMap::build(c)));
        }
        // Inserting patterns in sorted order keeps the trie build cache-friendly (several times
        // faster than configuration order for many random patterns).
        let mut sorted: Vec<(&[u8], u32)> = c.index.iter().map(|(k, &p)| (&**k, p)).collect();
        sorted.sort_unstable();
        let mut rank = vec![0u32; sorted.len()];
        for (r, &(_, p)) in sorted.iter().enumerate() {
            rank[p as usize] = r as u32;
        }
        let ac = AhoCorasickBuilder::new()
            .match_kind(MatchKind::Standard)
            .ascii_case_insensitive(case_insensitive)
            .build(sorted.iter().map(|&(k, _)| k))
            .map_err(|e| WafError::Build(e.to_string()))?;
        let pairs = c
            .pairs
            .into_iter()
            .map(|(p, cond)| (rank[p as usize], cond))
            .collect();
        Ok(LiteralScanner::Automaton {
            ac,
            postings: Postings::build(sorted.len(), pairs),
        })
    }

    fn scan(&self, v: &[u8], out: &mut Vec<u32>) {
        match self {
            LiteralScanner::Automaton { ac, postings } => {
                for m in ac.find_overlapping_iter(v) {
                    out.extend_from_slice(postings.get(m.pattern().as_usize()));
                }
            }
            LiteralScanner::Windows(m) => {
                for &l in &m.lens {
                    for w in v.windows(l) {
                        m.lookup(w, out);
                    }
                }
            }
        }
    }
}

/// An operator tested value by value (negated operators, `@within`, empty `@contains`).
enum Direct {
    Contains(Box<[u8]>),
    Streq(Box<[u8]>),
    BeginsWith(Box<[u8]>),
    EndsWith(Box<[u8]>),
    Pm(Option<AhoCorasick>),
    Rx(Regex),
    Within(Box<[u8]>),
}

impl Direct {
    fn build(op: &Operator) -> Result<Direct, WafError> {
        let p = op.param.as_bytes();
        Ok(match op.kind {
            OpKind::Contains => Direct::Contains(p.into()),
            OpKind::Streq => Direct::Streq(p.into()),
            OpKind::BeginsWith => Direct::BeginsWith(p.into()),
            OpKind::EndsWith => Direct::EndsWith(p.into()),
            OpKind::Within => Direct::Within(p.into()),
            OpKind::Pm => {
                let words: Vec<&str> = op.param.split_ascii_whitespace().collect();
                if words.is_empty() {
                    Direct::Pm(None)
                } else {
                    let ac = AhoCorasickBuilder::new()
                        .ascii_case_insensitive(true)
                        .build(&words)
                        .map_err(|e| WafError::Build(e.to_string()))?;
                    Direct::Pm(Some(ac))
                }
            }
            OpKind::Rx => Direct::Rx(build_regex(&op.param).map_err(|e| WafError::Build(e.to_string()))?),
        })
    }

    fn is_match(&self, v: &[u8]) -> bool {
        match self {
            Direct::Contains(p) => p.is_empty() || v.windows(p.len()).any(|w| w == &**p),
            Direct::Streq(p) => v == &**p,
            Direct::BeginsWith(p) => v.starts_with(p),
            Direct::EndsWith(p) => v.ends_with(p),
            Direct::Pm(ac) => ac.as_ref().is_some_and(|ac| ac.is_match(v)),
            Direct::Rx(r) => r.is_match(v),
            Direct::Within(p) => v.is_empty() || p.windows(v.len()).any(|w| w == v),
        }
    }
}

/// All conditions that inspect the same variables through the same transformations.
struct Group {
    targets: Arc<Targets>,
    transforms: Vec<Transform>,
    contains: Option<LiteralScanner>,
    pm: Option<LiteralScanner>,
    streq: Option<LiteralMap>,
    prefix: Option<LiteralMap>,
    suffix: Option<LiteralMap>,
    rx: Option<(RegexSet, Vec<u32>)>,
    direct: Vec<(u32, bool, Direct)>,
}

#[derive(Default)]
struct GroupBuilder {
    contains: LiteralCollector,
    pm: LiteralCollector,
    streq: LiteralCollector,
    prefix: LiteralCollector,
    suffix: LiteralCollector,
    rx: Vec<String>,
    rx_conds: Vec<u32>,
    direct: Vec<(u32, bool, Direct)>,
}

impl GroupBuilder {
    fn add(&mut self, cond: u32, op: &Operator) -> Result<(), WafError> {
        let p = op.param.as_bytes();
        if op.negated || op.kind == OpKind::Within || (op.kind == OpKind::Contains && p.is_empty()) {
            self.direct.push((cond, op.negated, Direct::build(op)?));
            return Ok(());
        }
        match op.kind {
            OpKind::Contains => self.contains.add(p, cond),
            OpKind::Streq => self.streq.add(p, cond),
            OpKind::BeginsWith => self.prefix.add(p, cond),
            OpKind::EndsWith => self.suffix.add(p, cond),
            OpKind::Pm => {
                for w in op.param.split_ascii_whitespace() {
                    self.pm.add(w.to_ascii_lowercase().as_bytes(), cond);
                }
            }
            OpKind::Rx => {
                self.rx.push(if op.param.is_empty() {
                    ".*".into()
                } else {
                    op.param.clone()
                });
                self.rx_conds.push(cond);
            }
            OpKind::Within => unreachable!("handled as direct"),
        }
        Ok(())
    }

    fn build(self, targets: Arc<Targets>, transforms: Vec<Transform>) -> Result<Group, WafError> {
        let map = |c: LiteralCollector| (!c.is_empty()).then(|| LiteralMap::build(c));
        let auto = |c: LiteralCollector, ci| -> Result<_, WafError> {
            if c.is_empty() {
                Ok(None)
            } else {
                LiteralScanner::build(c, ci).map(Some)
            }
        };
        let rx = if self.rx.is_empty() {
            None
        } else {
            let set = RegexSetBuilder::new(&self.rx)
                .unicode(false)
                .dot_matches_new_line(true)
                .multi_line(true)
                .size_limit(REGEX_SIZE_LIMIT)
                .dfa_size_limit(REGEX_SIZE_LIMIT)
                .build()
                .map_err(|e| WafError::Build(e.to_string()))?;
            Some((set, self.rx_conds))
        };
        Ok(Group {
            targets,
            transforms,
            contains: auto(self.contains, false)?,
            pm: auto(self.pm, true)?,
            streq: map(self.streq),
            prefix: map(self.prefix),
            suffix: map(self.suffix),
            rx,
            direct: self.direct,
        })
    }
}

impl Group {
    fn match_value(&self, v: &[u8], out: &mut Vec<u32>) {
        if let Some(a) = &self.contains {
            a.scan(v, out);
        }
        if let Some(a) = &self.pm {
            a.scan(v, out);
        }
        if let Some(m) = &self.streq {
            m.lookup(v, out);
        }
        if let Some(m) = &self.prefix {
            for &l in m.lens.iter().take_while(|&&l| l <= v.len()) {
                m.lookup(&v[..l], out);
            }
        }
        if let Some(m) = &self.suffix {
            for &l in m.lens.iter().take_while(|&&l| l <= v.len()) {
                m.lookup(&v[v.len() - l..], out);
            }
        }
        if let Some((set, conds)) = &self.rx {
            if set.is_match(v) {
                out.extend(set.matches(v).iter().map(|i| conds[i]));
            }
        }
        for (cond, negated, d) in &self.direct {
            if d.is_match(v) != *negated {
                out.push(*cond);
            }
        }
    }

    /// Calls `f` with each value of this group's variables (before transformations).
    fn for_each_value(
        &self,
        req: &RequestView<'_>,
        arena: &[u8],
        args: &[(Range<usize>, Range<usize>)],
        uri: &Range<usize>,
        filename: &Range<usize>,
        f: &mut dyn FnMut(&[u8]),
    ) {
        let excluded = |kind: VarKind, name: &[u8]| {
            self.targets.exclude.iter().any(|t| {
                t.kind == kind
                    && t.key
                        .as_deref()
                        .is_some_and(|k| k.as_bytes().eq_ignore_ascii_case(name))
            })
        };
        let selects = |key: &Option<Box<str>>, name: &[u8]| {
            key.as_deref()
                .is_none_or(|k| k.as_bytes().eq_ignore_ascii_case(name))
        };
        for t in &self.targets.include {
            match t.kind {
                VarKind::Args | VarKind::ArgsNames => {
                    for (k, v) in args {
                        let name = &arena[k.clone()];
                        if selects(&t.key, name) && !excluded(t.kind, name) {
                            f(if t.kind == VarKind::Args {
                                &arena[v.clone()]
                            } else {
                                name
                            });
                        }
                    }
                }
                VarKind::RequestHeaders => {
                    for (name, value) in req.headers {
                        if selects(&t.key, name.as_bytes()) && !excluded(t.kind, name.as_bytes()) {
                            f(value);
                        }
                    }
                }
                VarKind::RequestUri => f(&arena[uri.clone()]),
                VarKind::RequestFilename => f(&arena[filename.clone()]),
                VarKind::RequestMethod => f(req.method.as_bytes()),
            }
        }
    }
}

/// A rule as evaluated: its position is its index (phase 1 rules first, then configuration order).
pub(crate) struct Rule {
    pub id: u64,
    pub phase: u8,
    pub disruptive: Disruptive,
    pub status: Option<u16>,
    pub msg: Option<Box<str>>,
    /// Its conditions: contiguous condition ids.
    pub conds: Range<u32>,
}

/// What the first disruptive rule decided.
pub(crate) struct Hit {
    pub rule: u32,
    pub status: u16,
}

/// The compiled rule set.
pub(crate) struct Matcher {
    groups: Vec<Group>,
    /// Condition id → rule index.
    cond_rule: Vec<u32>,
    pub rules: Vec<Rule>,
    defaults: [DefaultAction; 3],
}

impl Matcher {
    /// Compiles parsed rules.
    pub fn compile(p: &mut Parsed) -> Result<Matcher, WafError> {
        let defaults = p.defaults.clone().map(|d| {
            d.unwrap_or(DefaultAction {
                disruptive: Disruptive::Pass,
                status: None,
                transforms: Vec::new(),
            })
        });
        let mut defs = std::mem::take(&mut p.rules);
        defs.sort_by_key(|r| r.phase); // stable: configuration order within a phase
        let mut group_index: FxHashMap<(Arc<Targets>, Vec<Transform>), usize> = FxHashMap::default();
        let mut builders: Vec<(Arc<Targets>, Vec<Transform>, GroupBuilder)> = Vec::new();
        let mut cond_rule = Vec::with_capacity(defs.len());
        let mut rules = Vec::with_capacity(defs.len());
        // Big rule sets repeat one (variables, transformations) pair: skip the hash lookup then.
        let mut last: Option<(Arc<Targets>, Vec<Transform>, usize)> = None;
        for (ri, r) in defs.into_iter().enumerate() {
            let first = cond_rule.len() as u32;
            for c in std::iter::once(&r.cond).chain(&r.chained) {
                let cond = cond_rule.len() as u32;
                cond_rule.push(ri as u32);
                let transforms = effective_transforms(c, &defaults[r.phase as usize]);
                let gi = match &last {
                    Some((t, tr, g)) if Arc::ptr_eq(t, &c.targets) && *tr == transforms => *g,
                    _ => {
                        let key = (c.targets.clone(), transforms.clone());
                        let g = match group_index.get(&key) {
                            Some(&g) => g,
                            None => {
                                builders.push((key.0.clone(), key.1.clone(), GroupBuilder::default()));
                                group_index.insert(key, builders.len() - 1);
                                builders.len() - 1
                            }
                        };
                        last = Some((c.targets.clone(), transforms, g));
                        g
                    }
                };
                builders[gi].2.add(cond, &c.op)?;
            }
            rules.push(Rule {
                id: r.id,
                phase: r.phase,
                disruptive: r.disruptive,
                status: r.status,
                msg: r.msg.map(String::into_boxed_str),
                conds: first..cond_rule.len() as u32,
            });
        }
        let groups = builders
            .into_iter()
            .map(|(t, tr, b)| b.build(t, tr))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Matcher {
            groups,
            cond_rule,
            rules,
            defaults,
        })
    }

    /// Runs every group over the request and returns the first rule (in phase, then configuration
    /// order) that matches with a disruptive effect, with the status ModSecurity would answer.
    pub fn evaluate(&self, req: &RequestView<'_>, s: &mut Scratch) -> Option<Hit> {
        s.extract(req);
        let Scratch {
            arena,
            args,
            request_uri,
            filename,
            tbuf,
            matched,
            rules,
            ..
        } = s;
        for g in &self.groups {
            let mut on_value = |v: &[u8]| {
                if g.transforms.is_empty() {
                    g.match_value(v, matched);
                } else {
                    tbuf.clear();
                    tbuf.extend_from_slice(v);
                    for t in &g.transforms {
                        match t {
                            Transform::Lowercase => tbuf.make_ascii_lowercase(),
                            Transform::UrlDecode => url_decode_in_place(tbuf),
                        }
                    }
                    g.match_value(tbuf, matched);
                }
            };
            g.for_each_value(req, arena, args, request_uri, filename, &mut on_value);
        }
        if matched.is_empty() {
            return None;
        }
        matched.sort_unstable();
        matched.dedup();
        rules.extend(matched.iter().map(|&c| self.cond_rule[c as usize]));
        rules.sort_unstable();
        rules.dedup();
        for &ri in rules.iter() {
            let r = &self.rules[ri as usize];
            if !r.conds.clone().all(|c| matched.binary_search(&c).is_ok()) {
                continue;
            }
            let d = &self.defaults[r.phase as usize];
            // A status set by an earlier, non-disruptive rule does not carry over (checked against
            // libmodsecurity 3.0.9).
            let status = r.status.or(d.status).unwrap_or(200);
            let deny = match r.disruptive {
                Disruptive::Deny => true,
                Disruptive::Block => d.disruptive == Disruptive::Deny,
                Disruptive::None | Disruptive::Pass => false,
            };
            if deny {
                return Some(Hit {
                    rule: ri,
                    status: if status == 200 { 403 } else { status },
                });
            }
        }
        None
    }
}

/// The rule's transformations, after the phase's default ones unless the rule said `t:none`.
fn effective_transforms(c: &Condition, d: &DefaultAction) -> Vec<Transform> {
    if c.has_none {
        c.transforms.clone()
    } else {
        d.transforms.iter().chain(&c.transforms).copied().collect()
    }
}
