//! Running a [`Program`] over one request: the per-request [`Transaction`] (request variables,
//! `TX` and the other collections, `MATCHED_VAR(S)`, captures, `ctl` changes) and ModSecurity v3's
//! evaluation order (phase 1, body processing, phase 2; within a phase, configuration order with
//! `skipAfter`; per matching value the link's `setvar`s; on a full chain match `ctl`s and the
//! disruptive action).

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::io::Write as _;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use crate::body::{self, Pair, Processor};
use crate::hash::FxHashMap;
use crate::operator::{OpContext, Operator};
use crate::request::RequestView;
use crate::transform::Transform;
use crate::{Engine, RequestContext};

use super::plan::Step;
use super::rule::{Ctl, Disruptive, Link, Rule, SetOp, SetVar};
use super::vars::{Coll, Key, MultipartFlag, Target, Value, Var};
use super::Program;

/// How the rules ended a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// No disruptive action (or `allow`, or `ctl:ruleEngine=Off`).
    Pass,
    /// A rule interrupted: answer `status` (302 with `location` for `redirect`).
    Interrupt {
        status: u16,
        rule: u32,
        location: Option<String>,
    },
}

/// The request variables, derived once per request.
struct ReqData<'a> {
    method: &'a str,
    protocol: &'a str,
    remote_addr: &'a str,
    uri_raw: &'a [u8],
    query: &'a [u8],
    headers: &'a [(&'a str, &'a [u8])],
    body: &'a [u8],
    request_uri: Vec<u8>,
    filename: Vec<u8>,
    basename: Vec<u8>,
    request_line: Vec<u8>,
    args_get: Vec<Pair>,
    cookies: Vec<Pair>,
    /// Filled at the start of phase 2.
    parsed: body::Parsed,
    processor: Option<Processor>,
    body_seen: bool,
    /// This transaction's number; `UNIQUE_ID` is formatted from it when a rule reads it (the
    /// CRS reads it only for sampling, off by default).
    unique_n: u64,
    start: Instant,
}

/// A request value (its address and length: values do not move during a phase) and a chain id.
type TransformKey = (usize, usize, u32);

/// Members of a collection. Values written by folded rules (`plan::Fixed`) are borrowed from
/// the program: the CRS's ~40 setup values are not copied per request.
type Members<'p> = FxHashMap<Cow<'p, str>, Cow<'p, [u8]>>;

/// A collection as this request sees it: the members it wrote over a base the program computed
/// at load (`TX`: [`super::plan::Plan::initial_tx`], the CRS's setup values; none for the
/// others), so a transaction starts without writing the base member by member. A base member
/// is copied (borrowed) into `own` only when the request changes it.
#[derive(Default)]
struct Collection<'p> {
    own: Members<'p>,
    base: Option<&'p FxHashMap<String, Vec<u8>>>,
    /// Base members this request removed.
    hidden: Vec<&'p str>,
    /// `own` may hold a key of the base, or `hidden` one: iterating must then skip base members
    /// (most benign requests change no base member, and their iterations check nothing).
    shadows: bool,
}

impl<'p> Collection<'p> {
    /// The base member `k`, unless the request removed it.
    fn base_entry(&self, k: &str) -> Option<(&'p str, &'p [u8])> {
        let (bk, bv) = self.base?.get_key_value(k)?;
        if self.hidden.contains(&k) {
            return None;
        }
        Some((bk.as_str(), bv.as_slice()))
    }

    fn get(&self, k: &str) -> Option<&[u8]> {
        if !self.shadows {
            // No key is in both: one lookup for the setup values the rules read most.
            if let Some(v) = self.base.and_then(|b| b.get(k)) {
                return Some(v);
            }
            return self.own.get(k).map(|v| &**v);
        }
        match self.own.get(k) {
            Some(v) => Some(v),
            None => self.base_entry(k).map(|(_, v)| v),
        }
    }

    /// The member `k` as a value that outlives a change of the collection (a copy only when
    /// the request wrote it).
    fn get_cow(&self, k: &str) -> Option<Cow<'p, [u8]>> {
        match self.own.get(k) {
            Some(v) => Some(v.clone()),
            None => self.base_entry(k).map(|(_, v)| Cow::Borrowed(v)),
        }
    }

    fn contains_key(&self, k: &str) -> bool {
        self.get(k).is_some()
    }

    /// The member `k` to change in place, if this request wrote it (a base member is changed
    /// by [`Self::insert`]ing over it).
    fn own_mut(&mut self, k: &str) -> Option<&mut Cow<'p, [u8]>> {
        self.own.get_mut(k)
    }

    fn insert(&mut self, k: Cow<'p, str>, v: Cow<'p, [u8]>) {
        if !self.hidden.is_empty() {
            self.hidden.retain(|h| **h != *k);
        }
        if !self.shadows && self.base.is_some_and(|b| b.contains_key(&*k)) {
            self.shadows = true;
        }
        self.own.insert(k, v);
    }

    fn remove(&mut self, k: &str) {
        self.own.remove(k);
        if let Some((bk, _)) = self.base_entry(k) {
            self.hidden.push(bk);
            self.shadows = true;
        }
    }

    /// The members whose key `keep` accepts, in no particular order.
    fn select<'s>(
        &'s self,
        keep: impl Fn(&str) -> bool + 's,
    ) -> impl Iterator<Item = (&'s str, &'s [u8])> + 's {
        let own = self.own.iter().map(|(k, v)| (&**k, &**v));
        let base = self
            .base
            .into_iter()
            .flatten()
            .map(|(k, v)| (k.as_str(), v.as_slice()));
        own.chain(
            base.filter(move |(k, _)| {
                !(self.shadows && (self.own.contains_key(*k) || self.hidden.contains(k)))
            }),
        )
        .filter(move |(k, _)| keep(k))
    }
}

/// What rules changed during the request.
struct State<'p> {
    colls: [Collection<'p>; 6],
    /// Shared with `matched_vars` (one copy per match, not two).
    matched_var: Option<(Rc<str>, Rc<[u8]>)>,
    matched_vars: Vec<(Rc<str>, Rc<[u8]>)>,
    removed_ids: Vec<(u64, u64)>,
    removed_tags: Vec<String>,
    removed_msgs: Vec<String>,
    removed_targets: Vec<(Selector, Target)>,
    engine: Engine,
    processor: Option<Processor>,
    body_access: bool,
    force_body_var: bool,
    /// The capture buffers of the last evaluation, reused by the next (920450 captures every
    /// header name).
    caps: CapBuf,
}

/// Captures of one operator evaluation: `v[..n]` is `(group, bytes)`; the byte buffers past
/// `n` are kept for the next evaluation.
#[derive(Default)]
struct CapBuf {
    n: usize,
    v: Vec<(usize, Vec<u8>)>,
}

impl CapBuf {
    fn push(&mut self, i: usize, value: &[u8]) {
        match self.v.get_mut(self.n) {
            Some((g, b)) => {
                *g = i;
                b.clear();
                b.extend_from_slice(value);
            }
            None => self.v.push((i, value.to_vec())),
        }
        self.n += 1;
    }

    fn as_slice(&self) -> &[(usize, Vec<u8>)] {
        &self.v[..self.n]
    }
}

/// Rules a `ctl:ruleRemoveTarget*` applies to.
enum Selector {
    Ids(Vec<(u64, u64)>),
    Tag(String),
    Msg(String),
}

impl Selector {
    fn applies(&self, r: &Rule) -> bool {
        match self {
            Selector::Ids(ids) => super::in_ranges(ids, r.id),
            Selector::Tag(t) => r.tags.iter().any(|x| x == t),
            Selector::Msg(m) => r.msg.as_deref() == Some(m.as_str()),
        }
    }
}

/// One request going through a [`Program`].
pub(crate) struct Transaction<'p, 'a> {
    prog: &'p Program,
    req: ReqData<'a>,
    st: State<'p>,
    /// Transformed request values by (address, length, chain id): the CRS runs the same chains
    /// over the same arguments in rule after rule.
    /// `None`: the chain leaves the value unchanged (most benign values), nothing copied.
    tcache: FxHashMap<TransformKey, Option<Rc<[u8]>>>,
    /// Ids of the rules whose whole chain matched, in evaluation order.
    pub matched_rules: Vec<u64>,
    /// Per prefilter group: scanned for this request yet.
    pf_done: Vec<bool>,
    /// Per rule: a literal of its prefilter occurred (meaningful once its group is scanned).
    pf_hit: Vec<bool>,
    /// The allocation of the value list a rule or a prefilter scan collects into, reused from one
    /// to the next (empty between uses; see [`recycle`]).
    scratch: Vec<Value<'static>>,
    /// Rules run exactly / skipped by their prefilter (for [`stats`]).
    evaluated: u64,
    skipped: u64,
    passed: u64,
    folded: u64,
}

static STAT_REQUESTS: AtomicU64 = AtomicU64::new(0);
static STAT_EVALUATED: AtomicU64 = AtomicU64::new(0);
static STAT_PASSED: AtomicU64 = AtomicU64::new(0);
static STAT_SKIPPED: AtomicU64 = AtomicU64::new(0);
static STAT_FOLDED: AtomicU64 = AtomicU64::new(0);

/// Process-wide counters since start (for benchmarks: rules run per request).
pub(crate) fn stats() -> crate::InterpStats {
    crate::InterpStats {
        requests: STAT_REQUESTS.load(Ordering::Relaxed),
        evaluated: STAT_EVALUATED.load(Ordering::Relaxed),
        passed: STAT_PASSED.load(Ordering::Relaxed),
        skipped: STAT_SKIPPED.load(Ordering::Relaxed),
        folded: STAT_FOLDED.load(Ordering::Relaxed),
    }
}

static UNIQUE: AtomicU64 = AtomicU64::new(1);

impl<'p, 'a> Transaction<'p, 'a> {
    pub(crate) fn new(prog: &'p Program, view: &RequestView<'a>, ctx: &RequestContext<'a>) -> Self {
        let (request_uri, filename) = crate::request::uri_and_filename(view.uri.as_bytes());
        let basename = match filename.iter().rposition(|&c| c == b'/') {
            Some(i) => filename[i + 1..].to_vec(),
            None => filename.clone(),
        };
        let uri_raw = view.uri.as_bytes();
        let query = match uri_raw.iter().position(|&c| c == b'?') {
            Some(i) => &uri_raw[i + 1..],
            None => &b""[..],
        };
        let mut args_get = Vec::new();
        body::parse_urlencoded(query, prog.body.arg_separator, &mut args_get);
        let mut cookies = Vec::new();
        let mut content_type: &[u8] = b"";
        for (n, v) in view.headers {
            if n.eq_ignore_ascii_case("cookie") {
                parse_cookies(v, &mut cookies);
            } else if n.eq_ignore_ascii_case("content-type") {
                content_type = v;
            }
        }
        let request_line = format!("{} {} {}", view.method, view.uri, ctx.protocol).into_bytes();
        let n = UNIQUE.fetch_add(1, Ordering::Relaxed);
        Transaction {
            prog,
            req: ReqData {
                method: view.method,
                protocol: ctx.protocol,
                remote_addr: ctx.remote_addr,
                uri_raw,
                query,
                headers: view.headers,
                body: ctx.body,
                request_uri,
                filename,
                basename,
                request_line,
                args_get,
                cookies,
                parsed: body::Parsed::default(),
                processor: None,
                body_seen: false,
                unique_n: n,
                start: Instant::now(),
            },
            st: State {
                colls: {
                    let mut c: [Collection<'p>; 6] = Default::default();
                    let tx = &mut c[Coll::Tx.index()];
                    if prog.engine != Engine::Off {
                        tx.base = Some(&prog.plan.initial_tx);
                    }
                    // The CRS's per-request members (`header_name_*`, captures, scores...): 7-12 per
                    // benign request.
                    tx.own.reserve(16);
                    c
                },
                matched_var: None,
                matched_vars: Vec::new(),
                removed_ids: Vec::new(),
                removed_tags: Vec::new(),
                removed_msgs: Vec::new(),
                removed_targets: Vec::new(),
                engine: prog.engine,
                processor: Processor::from_content_type(content_type),
                body_access: prog.body.access,
                force_body_var: false,
                caps: CapBuf::default(),
            },
            // Sized for the CRS: only values a chain changes are kept (6-60 per benign request:
            // most skip the cache, see `chain_keeps`); a larger table costs its allocation,
            // clearing and the scan of its control bytes when dropped, per request.
            tcache: FxHashMap::with_capacity_and_hasher(64, Default::default()),
            matched_rules: Vec::new(),
            pf_done: vec![false; prog.prefilters.groups.len()],
            pf_hit: vec![false; prog.rules.len()],
            scratch: Vec::with_capacity(32),
            evaluated: 0,
            skipped: 0,
            passed: 0,
            folded: 0,
        }
    }

    /// Runs phases 1 and 2 (with the body between them). Stops at the first interruption.
    pub(crate) fn run(&mut self) -> Outcome {
        let o = self.run_phases();
        STAT_REQUESTS.fetch_add(1, Ordering::Relaxed);
        STAT_EVALUATED.fetch_add(self.evaluated, Ordering::Relaxed);
        STAT_SKIPPED.fetch_add(self.skipped, Ordering::Relaxed);
        STAT_PASSED.fetch_add(self.passed, Ordering::Relaxed);
        STAT_FOLDED.fetch_add(self.folded, Ordering::Relaxed);
        o
    }

    fn run_phases(&mut self) -> Outcome {
        if self.st.engine == Engine::Off {
            return Outcome::Pass;
        }
        if let Some(o) = self.phase(1) {
            return o;
        }
        if self.st.engine == Engine::Off {
            return Outcome::Pass;
        }
        if let Some(o) = self.process_body() {
            return o;
        }
        self.phase(2).unwrap_or(Outcome::Pass)
    }

    /// The whole `TX` collection, sorted by name.
    pub(crate) fn tx_all(&self) -> Vec<(String, String)> {
        let mut v: Vec<_> = self.st.colls[Coll::Tx.index()]
            .select(|_| true)
            .map(|(k, v)| (k.to_string(), String::from_utf8_lossy(v).into_owned()))
            .collect();
        v.sort();
        v
    }

    /// `msg` of rule `rule` with its macros expanded against this transaction.
    pub(crate) fn message(&self, rule: u32) -> Option<String> {
        let r = &self.prog.rules[rule as usize];
        r.msg
            .as_deref()
            .map(|m| expand(&self.req, &self.st, r, m).into_owned())
    }

    /// Parses the body with the processor chosen by `Content-Type` and phase-1 `ctl`s; a body
    /// over the limit interrupts with 413 under `SecRequestBodyLimitAction Reject`.
    fn process_body(&mut self) -> Option<Outcome> {
        let prog = self.prog;
        if !self.st.body_access || self.req.body.is_empty() {
            return None;
        }
        let limit = if self.st.processor == Some(Processor::Multipart) {
            prog.body.limit
        } else {
            prog.body.limit.min(prog.body.no_files_limit)
        };
        let mut body = self.req.body;
        if body.len() > limit {
            if prog.body.reject_over_limit {
                return Some(Outcome::Interrupt {
                    status: 413,
                    rule: u32::MAX,
                    location: None,
                });
            }
            body = &body[..limit];
        }
        self.req.body = body;
        self.req.body_seen = true;
        // Values parsed from the body are new allocations; no stale address may hit the cache.
        self.tcache.clear();
        let ct = self
            .req
            .headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("content-type"))
            .map_or(&b""[..], |(_, v)| v);
        if let Some(p) = self.st.processor {
            self.req.parsed = body::parse(p, body, ct, prog.body.arg_separator, prog.body.json_depth);
            self.req.processor = Some(p);
        }
        None
    }

    fn phase(&mut self, phase: u8) -> Option<Outcome> {
        let prog = self.prog;
        let list = &prog.plan.steps[phase as usize - 1];
        let mut i = 0;
        while i < list.len() {
            let ri = match list[i] {
                Step::Rule(ri) => ri,
                Step::Fixed(f) => {
                    // Rules folded at load (see `plan`): their effect, without running them.
                    let f = &prog.plan.fixed[f as usize];
                    let tx = &mut self.st.colls[Coll::Tx.index()];
                    // A hoisted step's writes are in the base `TX` started from.
                    let apply = !f.hoisted || tx.base.is_none();
                    for (k, v) in f.writes.iter().filter(|_| apply) {
                        match v {
                            Some(v) => match tx.own_mut(k.as_str()) {
                                Some(slot) => *slot = Cow::Borrowed(v),
                                None => tx.insert(Cow::Borrowed(k), Cow::Borrowed(v)),
                            },
                            None => tx.remove(k.as_str()),
                        }
                    }
                    self.matched_rules.extend_from_slice(&f.matched);
                    self.folded += u64::from(f.rules);
                    i = f.next;
                    continue;
                }
            };
            let r = &prog.rules[ri as usize];
            if self.is_removed(r) {
                i += 1;
                continue;
            }
            self.st.matched_var = None;
            self.st.matched_vars.clear();
            if !self.may_match(ri) {
                self.skipped += 1;
                i += 1;
                continue;
            }
            self.evaluated += 1;
            if !self.links(r, 0) {
                i += 1;
                continue;
            }
            self.matched_rules.push(r.id);
            for l in &r.links {
                for c in &l.ctls {
                    self.ctl(c);
                }
            }
            if self.st.engine == Engine::Off {
                return Some(Outcome::Pass);
            }
            let default = &prog.defaults[phase as usize - 1];
            let (disruptive, status) = match &r.disruptive {
                Disruptive::Block => (&default.disruptive, r.status.or(default.status)),
                d => (d, r.status.or(default.status)),
            };
            let status = status.filter(|s| *s != 200).unwrap_or(403);
            // `ctl:ruleEngine=DetectionOnly` keeps the rules running without their effect.
            let disruptive = if self.st.engine == Engine::DetectionOnly && self.st.engine != prog.engine {
                &Disruptive::Pass
            } else {
                disruptive
            };
            match disruptive {
                Disruptive::Pass | Disruptive::Block => {}
                Disruptive::Deny | Disruptive::Drop => {
                    return Some(Outcome::Interrupt {
                        status,
                        rule: ri,
                        location: None,
                    })
                }
                Disruptive::Redirect(url) => {
                    let location = expand(&self.req, &self.st, r, url).into_owned();
                    return Some(Outcome::Interrupt {
                        status: r.status.filter(|s| (300..400).contains(s)).unwrap_or(302),
                        rule: ri,
                        location: Some(location),
                    });
                }
                Disruptive::Allow => return Some(Outcome::Pass),
            }
            i = if r.skip_after.is_some() || r.skip > 0 {
                prog.plan.skip_next[ri as usize]
            } else {
                i + 1
            };
        }
        None
    }

    /// Whether rule `ri` may match: no prefilter, or one of its literals occurs in the
    /// (transformed) values of one of its variables. `false` is exact: the rule's first link
    /// matches no value.
    fn may_match(&mut self, ri: u32) -> bool {
        let groups = &self.prog.prefilters.rule_groups[ri as usize];
        if groups.is_empty() {
            return true;
        }
        for &g in groups.iter() {
            if self.pf_hit[ri as usize] {
                break;
            }
            if !self.pf_done[g as usize] {
                self.pf_done[g as usize] = true;
                self.scan_group(g);
            }
        }
        self.passed += u64::from(self.pf_hit[ri as usize]);
        self.pf_hit[ri as usize]
    }

    /// Scans the values of group `g` (its variable through its chain, as [`Self::link`]
    /// computes them, without exclusions: a superset) with the group's automaton, and with them
    /// the groups of the same variable not scanned yet (its siblings: the values are collected
    /// once per phase instead of once per chain).
    fn scan_group(&mut self, g: u32) {
        let prog = self.prog;
        let first = &prog.prefilters.groups[g as usize];
        let mut values = recycle(std::mem::take(&mut self.scratch));
        collect(&self.req, &self.st, &first.target, &mut values);
        for &h in std::iter::once(&g).chain(first.siblings.iter()) {
            if h != g {
                if self.pf_done[h as usize] {
                    continue;
                }
                self.pf_done[h as usize] = true;
            }
            let grp = &prog.prefilters.groups[h as usize];
            Self::scan_values(prog, grp, &values, &mut self.tcache, &mut self.pf_hit);
        }
        self.scratch = recycle(values);
    }

    /// Marks the rules of `grp` one of whose literals occurs in a value of `values` (through the
    /// group's chain).
    fn scan_values(
        prog: &Program,
        grp: &super::prefilter::Group,
        values: &[Value<'_>],
        tcache: &mut FxHashMap<TransformKey, Option<Rc<[u8]>>>,
        pf_hit: &mut [bool],
    ) {
        for v in values {
            let c = if grp.transforms.is_empty() || chain_keeps(prog, grp.chain, &v.value) {
                Candidate::Cow(Cow::Borrowed(&v.value))
            } else if let Cow::Borrowed(b) = &v.value {
                let key = (b.as_ptr() as usize, b.len(), grp.chain);
                match tcache
                    .entry(key)
                    .or_insert_with(|| transformed(&grp.transforms, b))
                {
                    Some(t) => Candidate::Shared(t.clone()),
                    None => Candidate::Cow(Cow::Borrowed(b)),
                }
            } else {
                Candidate::Cow(apply_all(&grp.transforms, &v.value))
            };
            let bytes = c.bytes();
            if !grp.byte_rules.is_empty() && !bytes.is_empty() {
                scan_bytes(grp, bytes, pf_hit);
            }
            let Some(ac) = &grp.ac else { continue };
            if bytes.len() < grp.min_len {
                continue;
            }
            ac.for_each_occurrence(bytes, |p| {
                for &ri in &grp.pattern_rules[p] {
                    pf_hit[ri as usize] = true;
                }
            });
        }
    }

    fn is_removed(&self, r: &Rule) -> bool {
        super::in_ranges(&self.st.removed_ids, r.id)
            || (!self.st.removed_tags.is_empty() && r.tags.iter().any(|t| self.st.removed_tags.contains(t)))
            || (!self.st.removed_msgs.is_empty()
                && r.msg.as_ref().is_some_and(|m| self.st.removed_msgs.contains(m)))
    }

    /// Whether links `k..` of `r` all match (running each link's per-match actions).
    fn links(&mut self, r: &Rule, k: usize) -> bool {
        let Some(link) = r.links.get(k) else {
            return true;
        };
        self.link(r, link) && self.links(r, k + 1)
    }

    fn link(&mut self, r: &Rule, link: &Link) -> bool {
        let Some(op) = &link.op else {
            // SecAction: one unconditional match.
            for sv in &link.setvars {
                setvar(&self.req, &mut self.st, r, sv);
            }
            return true;
        };
        if let Some(hit) = self.single_tx_link(r, link, op) {
            return hit;
        }
        if self.no_collection_member_matches(r, link, op) {
            return false;
        }
        let mut values = recycle(std::mem::take(&mut self.scratch));
        for t in &link.targets {
            collect(&self.req, &self.st, t, &mut values);
        }
        values.retain(|v| !self.excluded(r, link, v));
        let mut any = false;
        for v in &values {
            if link.multi_match && chain_keeps(self.prog, link.chain, &v.value) {
                // Every candidate is the value itself: one evaluation.
                any |= candidate(&self.req, &mut self.st, r, link, op, v, &v.value);
                continue;
            }
            if link.multi_match {
                let mut candidates: Vec<Cow<'_, [u8]>> = Vec::new();
                let mut cur = Cow::Borrowed(&*v.value);
                candidates.push(cur.clone());
                for t in &link.transforms {
                    cur = t.apply(cur);
                    if candidates.last().map(|c| c.as_ref()) != Some(cur.as_ref()) {
                        candidates.push(cur.clone());
                    }
                }
                for c in &candidates {
                    any |= candidate(&self.req, &mut self.st, r, link, op, v, c);
                }
                continue;
            }
            // One candidate: borrowed, from the transformation cache, or transformed here.
            let hit = if link.transforms.is_empty() || chain_keeps(self.prog, link.chain, &v.value) {
                candidate(&self.req, &mut self.st, r, link, op, v, &v.value)
            } else if let Cow::Borrowed(b) = &v.value {
                let key = (b.as_ptr() as usize, b.len(), link.chain);
                match self
                    .tcache
                    .entry(key)
                    .or_insert_with(|| transformed(&link.transforms, b))
                {
                    Some(t) => {
                        let t = t.clone();
                        candidate(&self.req, &mut self.st, r, link, op, v, &t)
                    }
                    None => candidate(&self.req, &mut self.st, r, link, op, v, b),
                }
            } else {
                let t = apply_all(&link.transforms, &v.value);
                candidate(&self.req, &mut self.st, r, link, op, v, &t)
            };
            any |= hit;
        }
        self.scratch = recycle(values);
        any
    }

    /// The common `SecRule TX:name "@lt 2" ...` and `SecRule &TX:name "@eq 0"` shapes
    /// (paranoia-level gates, score checks, setup defaults): one `TX:name` (or other collection
    /// member) target, no transformation, no exclusion, one value at most. Evaluated on the stored value without copying it; `None` for any other shape.
    fn single_tx_link(&mut self, r: &Rule, link: &Link, op: &Operator) -> Option<bool> {
        let [t] = link.targets.as_slice() else {
            return None;
        };
        let (Var::Collection(coll), Key::Name(k)) = (t.var, &t.key) else {
            return None;
        };
        if link.multi_match
            || !link.transforms.is_empty()
            || !link.exclude.is_empty()
            || !self.st.removed_targets.is_empty()
        {
            return None;
        }
        let key = std::str::from_utf8(k).ok()?;
        if t.count {
            // `&TX:name`: "1" or "0" (the CRS's "is this setting set?" checks).
            let n: &[u8] = if self.st.colls[coll.index()].contains_key(key) {
                b"1"
            } else {
                b"0"
            };
            let mut ctx = Ctx::fresh(&self.req, &self.st, r, link);
            if op.eval(n, &mut ctx) == link.negated {
                return Some(false);
            }
            let captures = ctx.captures;
            let v = Value {
                var: t.var,
                key: Cow::Borrowed(b""),
                value: Cow::Borrowed(n),
            };
            after_match(&self.req, &mut self.st, r, link, &v, n, &captures);
            return Some(true);
        }
        let (hit, captures, value) = {
            let Some(v) = self.st.colls[coll.index()].get(key) else {
                return Some(false);
            };
            let mut ctx = Ctx::fresh(&self.req, &self.st, r, link);
            let hit = op.eval(v, &mut ctx) != link.negated;
            if !hit {
                return Some(false);
            }
            if !r.observes_match && !link.capture && link.setvars.is_empty() {
                // A paranoia-level gate: nothing to record.
                return Some(true);
            }
            let captures = ctx.captures;
            (hit, captures, self.st.colls[coll.index()].get_cow(key)?)
        };
        let v = Value {
            var: t.var,
            key: Cow::Borrowed(k),
            value: Cow::Borrowed(&value),
        };
        after_match(&self.req, &mut self.st, r, link, &v, &value, &captures);
        Some(hit)
    }

    /// Whether a link whose targets are all `TX`-like collection selections (920450's
    /// `TX:/^header_name_/`, `TX:/^MSC_/`) certainly matches no member: the operator runs on the
    /// stored members in place. Exact: nothing changes the transaction until a value matches,
    /// so when one does (`false` here) [`Self::link`] evaluates the link again with the usual
    /// copies (values are a snapshot there, as in ModSecurity, since `setvar`s may change the
    /// collection they came from).
    fn no_collection_member_matches(&self, r: &Rule, link: &Link, op: &Operator) -> bool {
        if link.multi_match
            || link.targets.is_empty()
            || !link
                .targets
                .iter()
                .all(|t| matches!(t.var, Var::Collection(_)) && !t.count)
        {
            return false;
        }
        for t in &link.targets {
            let Var::Collection(c) = t.var else {
                return false;
            };
            for (k, v) in self.st.colls[c.index()].select(|k| t.key.selects(k.as_bytes())) {
                let key = Value {
                    var: t.var,
                    key: Cow::Borrowed(k.as_bytes()),
                    value: Cow::Borrowed(b""),
                };
                if self.excluded(r, link, &key) {
                    continue;
                }
                let c = if link.transforms.is_empty() || chain_keeps(self.prog, link.chain, v) {
                    Cow::Borrowed(v)
                } else {
                    apply_all(&link.transforms, v)
                };
                let mut ctx = Ctx::fresh(&self.req, &self.st, r, link);
                if op.eval(&c, &mut ctx) != link.negated {
                    return false;
                }
            }
        }
        true
    }

    fn excluded(&self, r: &Rule, link: &Link, v: &Value<'_>) -> bool {
        link.exclude.iter().any(|t| t.excludes(v.var, &v.key))
            || self
                .st
                .removed_targets
                .iter()
                .any(|(s, t)| t.excludes(v.var, &v.key) && s.applies(r))
    }

    fn ctl(&mut self, c: &Ctl) {
        match c {
            Ctl::RuleEngine(e) => self.st.engine = *e,
            Ctl::RemoveById(r) => self.st.removed_ids.extend_from_slice(r),
            Ctl::RemoveByTag(t) => self.st.removed_tags.push(t.clone()),
            Ctl::RemoveByMsg(m) => self.st.removed_msgs.push(m.clone()),
            Ctl::RemoveTargetById(ids, t) => self
                .st
                .removed_targets
                .push((Selector::Ids(ids.clone()), t.clone())),
            Ctl::RemoveTargetByTag(tag, t) => self
                .st
                .removed_targets
                .push((Selector::Tag(tag.clone()), t.clone())),
            Ctl::RemoveTargetByMsg(m, t) => self
                .st
                .removed_targets
                .push((Selector::Msg(m.clone()), t.clone())),
            Ctl::BodyProcessor(p) => self.st.processor = Some(*p),
            Ctl::BodyAccess(on) => self.st.body_access = *on,
            Ctl::ForceBodyVariable(on) => self.st.force_body_var = *on,
            Ctl::Ignored => {}
        }
    }
}

/// Runs the first `links` links of rule `ri` once on a transaction without a request whose `TX`
/// is `tx`: whether they all matched, and `TX` after them. For [`super::plan`], which passes only rules that read nothing
/// but known `TX` members and rule constants (so the missing request cannot matter).
pub(super) fn fold_rule(
    prog: &Program,
    ri: u32,
    tx: &BTreeMap<String, Vec<u8>>,
    links: usize,
) -> (bool, BTreeMap<String, Vec<u8>>) {
    on_known_tx(prog, tx, |t| {
        let r = &prog.rules[ri as usize];
        // As `links`: in order, stopping at the first link that does not match.
        let matched = r.links[..links].iter().all(|l| t.link(r, l));
        let after = t.st.colls[Coll::Tx.index()]
            .select(|_| true)
            .map(|(k, v)| (k.to_string(), v.to_vec()))
            .collect();
        (matched, after)
    })
}

/// `text` with its macros expanded as rule `ri` would expand them on a transaction whose `TX` is
/// `tx` (for [`super::plan`], which passes only texts whose macros name known `TX` members).
pub(super) fn expand_known(prog: &Program, ri: u32, tx: &BTreeMap<String, Vec<u8>>, text: &str) -> String {
    on_known_tx(prog, tx, |t| {
        expand(&t.req, &t.st, &prog.rules[ri as usize], text).into_owned()
    })
}

/// `f` on a transaction of an empty `GET /` whose `TX` is `tx`: the load-time stand-in for
/// every request, for rules and texts that read nothing but known `TX` members.
fn on_known_tx<R>(
    prog: &Program,
    tx: &BTreeMap<String, Vec<u8>>,
    f: impl FnOnce(&mut Transaction<'_, '_>) -> R,
) -> R {
    let view = RequestView {
        method: "GET",
        uri: "/",
        headers: &[],
    };
    let ctx = RequestContext::default();
    let mut t = Transaction::new(prog, &view, &ctx);
    t.st.colls[Coll::Tx.index()] = Collection {
        own: tx
            .iter()
            .map(|(k, v)| (Cow::Owned(k.clone()), Cow::Owned(v.clone())))
            .collect(),
        ..Collection::default()
    };
    f(&mut t)
}

/// Marks the rules of `grp`'s byte table one of whose bytes occurs in `bytes` (one pass: the
/// OR of the bytes' rule masks).
fn scan_bytes(grp: &super::prefilter::Group, bytes: &[u8], hit: &mut [bool]) {
    let w = grp.words;
    let mut acc = [0u64; 4];
    if let Ok(masks) = <&[u64; 256]>::try_from(&grp.byte_masks[..]) {
        // One word per byte: a fixed-size table, no bounds check per byte.
        for &b in bytes {
            acc[0] |= masks[b as usize];
        }
    } else {
        for &b in bytes {
            let m = &grp.byte_masks[b as usize * w..b as usize * w + w];
            for (a, m) in acc.iter_mut().zip(m) {
                *a |= m;
            }
        }
    }
    for (wi, &a) in acc[..w].iter().enumerate() {
        let mut a = a;
        while a != 0 {
            let bit = a.trailing_zeros() as usize;
            a &= a - 1;
            hit[grp.byte_rules[wi * 64 + bit] as usize] = true;
        }
    }
}

/// A value ready for the operator: borrowed, transformed here, or from the transformation cache.
enum Candidate<'v> {
    Cow(Cow<'v, [u8]>),
    Shared(Rc<[u8]>),
}

impl Candidate<'_> {
    fn bytes(&self) -> &[u8] {
        match self {
            Candidate::Cow(c) => c,
            Candidate::Shared(r) => r,
        }
    }
}

/// Evaluates `op` on candidate `c` of value `v`; on a hit runs the per-match actions.
fn candidate(
    req: &ReqData<'_>,
    st: &mut State<'_>,
    r: &Rule,
    link: &Link,
    op: &Operator,
    v: &Value<'_>,
    c: &[u8],
) -> bool {
    let mut caps = std::mem::take(&mut st.caps);
    caps.n = 0;
    let mut ctx = Ctx {
        req,
        st,
        rule: r,
        capture: link.capture,
        captures: caps,
    };
    let hit = op.eval(c, &mut ctx) != link.negated;
    let caps = ctx.captures;
    if hit {
        after_match(req, st, r, link, v, c, &caps);
    }
    st.caps = caps;
    hit
}

/// What ModSecurity v3 does per matching value: captures to `TX:0..9`, `MATCHED_VAR(S)`, the
/// link's `setvar`s.
fn after_match(
    req: &ReqData<'_>,
    st: &mut State<'_>,
    r: &Rule,
    link: &Link,
    v: &Value<'_>,
    c: &[u8],
    captures: &CapBuf,
) {
    if link.capture {
        const NAMES: [&str; 10] = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"];
        let tx = &mut st.colls[Coll::Tx.index()];
        for (i, cap) in captures.as_slice() {
            match NAMES.get(*i) {
                // `TX:0`..`TX:9` exist after the first capture: replace in place, in the
                // member's own buffer.
                Some(name) => match tx.own_mut(name) {
                    Some(Cow::Owned(o)) => {
                        o.clear();
                        o.extend_from_slice(cap);
                    }
                    Some(slot) => *slot = Cow::Owned(cap.clone()),
                    None => {
                        tx.insert(Cow::Borrowed(*name), Cow::Owned(cap.clone()));
                    }
                },
                None => {
                    tx.insert(Cow::Owned(i.to_string()), Cow::Owned(cap.clone()));
                }
            }
        }
    }
    if r.observes_match {
        let name = v.full_name_rc();
        let value: Rc<[u8]> = c.into();
        st.matched_var = Some((name.clone(), value.clone()));
        st.matched_vars.push((name, value));
    }
    for sv in &link.setvars {
        setvar(req, st, r, sv);
    }
}

/// Runs one `setvar` (macros expanded before the collection changes).
fn setvar(req: &ReqData<'_>, st: &mut State<'_>, r: &Rule, sv: &SetVar) {
    let key = expand(req, st, r, &sv.key);
    // Keys are stored lowercase; most are written so and hold no macro (no copy then).
    let key = if key.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(key.to_ascii_lowercase())
    } else {
        key
    };
    let ci = sv.coll.index();
    let new: Cow<'_, [u8]> = match &sv.op {
        SetOp::Unset => {
            st.colls[ci].remove(&key);
            return;
        }
        SetOp::Set(v) => match expand(req, st, r, v) {
            Cow::Borrowed(b) => Cow::Borrowed(b.as_bytes()),
            Cow::Owned(o) => Cow::Owned(o.into_bytes()),
        },
        SetOp::Add(v) | SetOp::Sub(v) => {
            let cur = st.colls[ci].get(&key).map_or(0, to_int);
            let n = to_int(expand(req, st, r, v).as_bytes());
            let sum = if matches!(sv.op, SetOp::Add(_)) {
                cur.wrapping_add(n)
            } else {
                cur.wrapping_sub(n)
            };
            if let Some(Cow::Owned(o)) = st.colls[ci].own_mut(&key) {
                // A score update: the number written in the member's own buffer.
                o.clear();
                let _ = write!(o, "{sum}");
                return;
            }
            Cow::Owned(sum.to_string().into_bytes())
        }
    };
    match st.colls[ci].own_mut(&key) {
        // A constant written over an earlier value: copied into the member's own buffer.
        Some(Cow::Owned(o)) if matches!(new, Cow::Borrowed(_)) => {
            o.clear();
            o.extend_from_slice(&new);
        }
        Some(slot) => *slot = Cow::Owned(new.into_owned()),
        None => {
            st.colls[ci].insert(Cow::Owned(key.into_owned()), Cow::Owned(new.into_owned()));
        }
    }
}

/// ModSecurity's integer conversion for `setvar` arithmetic and numeric operators: leading
/// digits with an optional sign, anything else 0.
fn to_int(b: &[u8]) -> i64 {
    let s = String::from_utf8_lossy(b);
    let s = s.trim();
    let end = s
        .char_indices()
        .find(|&(i, c)| !(c.is_ascii_digit() || (i == 0 && (c == '-' || c == '+'))))
        .map_or(s.len(), |(i, _)| i);
    s[..end].parse().unwrap_or(0)
}

/// An emptied value list with the lifetime the caller needs, in the same allocation: the
/// values are dropped and the in-place `collect` keeps the buffer (same size and alignment), so
/// rules and scans do not allocate a list each.
fn recycle<'x, 'y>(mut v: Vec<Value<'x>>) -> Vec<Value<'y>> {
    v.clear();
    v.into_iter().map(|_| unreachable!("the list is empty")).collect()
}

/// Whether chain `chain` leaves `v` as it is: `v` holds none of the bytes its transformations
/// change (`Program::chain_bytes`).
fn chain_keeps(prog: &Program, chain: u32, v: &[u8]) -> bool {
    match prog.chain_bytes.get(chain as usize) {
        Some(Some(t)) => !v.iter().any(|&b| t[b as usize]),
        _ => false,
    }
}

/// A cache entry: the transformed value, or `None` when the chain changed nothing.
fn transformed(ts: &[Transform], v: &[u8]) -> Option<Rc<[u8]>> {
    match apply_all(ts, v) {
        // `trim` borrows a shorter slice: a change.
        Cow::Borrowed(b) if b.len() == v.len() => None,
        Cow::Borrowed(b) => Some(Rc::from(b)),
        Cow::Owned(o) => Some(Rc::from(o)),
    }
}

fn apply_all<'v>(ts: &[Transform], v: &'v [u8]) -> Cow<'v, [u8]> {
    let mut cur = Cow::Borrowed(v);
    for t in ts {
        cur = t.apply(cur);
    }
    cur
}

fn parse_cookies(v: &[u8], out: &mut Vec<Pair>) {
    for c in v.split(|&c| c == b';') {
        if c.is_empty() {
            continue;
        }
        let (k, val) = match c.iter().position(|&x| x == b'=') {
            Some(i) => (&c[..i], &c[i + 1..]),
            None => (c, &b""[..]),
        };
        let k = match k.iter().position(|x| !x.is_ascii_whitespace()) {
            Some(i) => &k[i..],
            None => &b""[..],
        };
        out.push((k.to_vec(), val.to_vec()));
    }
}

/// The operator's view of the transaction: macro expansion, captures.
struct Ctx<'x, 'a> {
    req: &'x ReqData<'a>,
    st: &'x State<'x>,
    rule: &'x Rule,
    capture: bool,
    captures: CapBuf,
}

impl<'x, 'a> Ctx<'x, 'a> {
    /// The context of one link's operator, with no captures yet.
    fn fresh(req: &'x ReqData<'a>, st: &'x State<'x>, rule: &'x Rule, link: &Link) -> Self {
        Ctx {
            req,
            st,
            rule,
            capture: link.capture,
            captures: CapBuf::default(),
        }
    }
}

impl OpContext for Ctx<'_, '_> {
    fn expand(&self, text: &str) -> Cow<'_, str> {
        if let Some(v) = single_tx_macro(self.st, text) {
            // `@within %{tx.restricted_headers}`-style arguments: the stored value in place, not
            // a copy per evaluation.
            return Cow::Borrowed(v);
        }
        Cow::Owned(expand(self.req, self.st, self.rule, text).into_owned())
    }
    fn capture_wanted(&self) -> bool {
        self.capture
    }
    fn set_capture(&mut self, i: usize, value: &[u8]) {
        self.captures.push(i, value);
    }
    fn set_matched(&mut self, _value: &[u8]) {}
}

/// The expansion of `text` when it is exactly one `%{tx.name}` macro (`name` lowercase) whose
/// stored value is UTF-8 (what [`expand`] would produce, borrowed); `None` for any other text.
fn single_tx_macro<'s>(st: &'s State<'_>, text: &str) -> Option<&'s str> {
    let inner = text.strip_prefix("%{")?.strip_suffix('}')?;
    let (var, key) = inner.split_once(['.', ':'])?;
    if !var.eq_ignore_ascii_case("tx")
        || key.contains(['}', '%'])
        || key.bytes().any(|b| b.is_ascii_uppercase())
    {
        return None;
    }
    match st.colls[Coll::Tx.index()].get(key) {
        Some(v) => std::str::from_utf8(v).ok(),
        None => Some(""),
    }
}

/// Expands `%{VAR}`, `%{VAR.key}` and `%{rule.id}`-style macros (unknown ones expand to nothing).
fn expand<'t>(req: &ReqData<'_>, st: &State<'_>, r: &Rule, text: &'t str) -> Cow<'t, str> {
    if !text.contains("%{") {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("%{") {
        out.push_str(&rest[..i]);
        let after = &rest[i + 2..];
        let Some(end) = after.find('}') else {
            out.push_str(&rest[i..]);
            return Cow::Owned(out);
        };
        macro_value(req, st, r, &after[..end], &mut out);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Cow::Owned(out)
}

fn macro_value(req: &ReqData<'_>, st: &State<'_>, r: &Rule, name: &str, out: &mut String) {
    let (var, key) = match name.split_once(['.', ':']) {
        Some((v, k)) => (v, Some(k)),
        None => (name, None),
    };
    if var.eq_ignore_ascii_case("rule") {
        match key.map(|k| k.to_ascii_lowercase()).as_deref() {
            Some("id") => out.push_str(&r.id.to_string()),
            // As written: expanding here could recurse forever (`msg:'%{rule.msg}'`).
            Some("msg") => out.push_str(r.msg.as_deref().unwrap_or("")),
            Some("severity") => {
                if let Some(s) = r.severity {
                    out.push_str(&s.to_string());
                }
            }
            Some("logdata") => out.push_str(r.logdata.as_deref().unwrap_or("")),
            _ => {}
        }
        return;
    }
    if let (true, Some(k)) = (var.eq_ignore_ascii_case("tx"), key) {
        // `%{tx.name}` (most macros): the stored value in place, as `collect` would select it.
        let k: Cow<'_, str> = if k.bytes().any(|b| b.is_ascii_uppercase()) {
            Cow::Owned(k.to_ascii_lowercase())
        } else {
            Cow::Borrowed(k)
        };
        if let Some(v) = st.colls[Coll::Tx.index()].get(&k) {
            out.push_str(&String::from_utf8_lossy(v));
        }
        return;
    }
    let Some(v) = Var::parse(var) else { return };
    let key = match key {
        Some(k) if v.is_collection() => Key::Name(k.to_ascii_lowercase().into_bytes().into()),
        _ => Key::All,
    };
    let mut vals = Vec::new();
    collect(
        req,
        st,
        &Target {
            var: v,
            key,
            count: false,
        },
        &mut vals,
    );
    if let Some(first) = vals.first() {
        out.push_str(&String::from_utf8_lossy(&first.value));
    }
}

/// Appends the values `t` selects.
fn collect<'r>(req: &'r ReqData<'_>, st: &State<'_>, t: &Target, out: &mut Vec<Value<'r>>) {
    if t.count {
        let mut tmp = Vec::new();
        collect(
            req,
            st,
            &Target {
                var: t.var,
                key: t.key.clone(),
                count: false,
            },
            &mut tmp,
        );
        out.push(Value {
            var: t.var,
            key: Cow::Borrowed(b""),
            value: Cow::Owned(tmp.len().to_string().into_bytes()),
        });
        return;
    }
    let var = t.var;
    let scalar = |out: &mut Vec<Value<'r>>, v: Cow<'r, [u8]>| {
        out.push(Value {
            var,
            key: Cow::Borrowed(b""),
            value: v,
        })
    };
    let pairs = |out: &mut Vec<Value<'r>>, ps: &'r [Pair], names: bool| {
        for (k, v) in ps {
            if t.key.selects(k) {
                out.push(Value {
                    var,
                    key: Cow::Borrowed(k),
                    value: Cow::Borrowed(if names { k } else { v }),
                });
            }
        }
    };
    let num = |n: usize| Cow::Owned(n.to_string().into_bytes());
    let flag = |b: bool| Cow::Borrowed(if b { &b"1"[..] } else { &b"0"[..] });
    let body_parsed = req.processor.is_some();
    let post: &'r [Pair] = &req.parsed.args;
    match var {
        Var::Args => {
            pairs(out, &req.args_get, false);
            pairs(out, post, false);
        }
        Var::ArgsGet => pairs(out, &req.args_get, false),
        Var::ArgsPost => pairs(out, post, false),
        Var::ArgsNames => {
            pairs(out, &req.args_get, true);
            pairs(out, post, true);
        }
        Var::ArgsGetNames => pairs(out, &req.args_get, true),
        Var::ArgsPostNames => pairs(out, post, true),
        Var::ArgsCombinedSize => {
            let n: usize = req
                .args_get
                .iter()
                .chain(post)
                .map(|(k, v)| k.len() + v.len())
                .sum();
            scalar(out, num(n));
        }
        Var::QueryString => scalar(out, Cow::Borrowed(req.query)),
        Var::RequestUri => scalar(out, Cow::Borrowed(&req.request_uri)),
        Var::RequestUriRaw => scalar(out, Cow::Borrowed(req.uri_raw)),
        Var::RequestFilename => scalar(out, Cow::Borrowed(&req.filename)),
        Var::RequestBasename => scalar(out, Cow::Borrowed(&req.basename)),
        Var::RequestLine => scalar(out, Cow::Borrowed(&req.request_line)),
        Var::RequestMethod => scalar(out, Cow::Borrowed(req.method.as_bytes())),
        Var::RequestProtocol => scalar(out, Cow::Borrowed(req.protocol.as_bytes())),
        Var::RequestHeaders | Var::RequestHeadersNames => {
            for (k, v) in req.headers {
                if t.key.selects(k.as_bytes()) {
                    out.push(Value {
                        var,
                        key: Cow::Borrowed(k.as_bytes()),
                        value: Cow::Borrowed(if var == Var::RequestHeaders {
                            v
                        } else {
                            k.as_bytes()
                        }),
                    });
                }
            }
        }
        Var::RequestCookies => pairs(out, &req.cookies, false),
        Var::RequestCookiesNames => pairs(out, &req.cookies, true),
        Var::RequestBody => {
            // libmodsecurity 3 keeps the raw body in REQUEST_BODY whatever the processor.
            if req.body_seen {
                scalar(out, Cow::Borrowed(req.body));
            }
        }
        Var::RequestBodyLength => {
            if req.body_seen {
                scalar(out, num(req.body.len()));
            }
        }
        Var::Files => pairs(out, &req.parsed.files, false),
        Var::FilesNames => pairs(out, &req.parsed.files, true),
        Var::FilesSizes => {
            for (k, n) in &req.parsed.file_sizes {
                if t.key.selects(k) {
                    out.push(Value {
                        var,
                        key: Cow::Borrowed(k),
                        value: num(*n),
                    });
                }
            }
        }
        Var::FilesCombinedSize => {
            if body_parsed {
                scalar(out, num(req.parsed.file_sizes.iter().map(|(_, n)| n).sum()));
            }
        }
        // No XML parser: XPath selections are empty (documented in docs/waf.md).
        Var::Xml => {}
        Var::RemoteAddr => scalar(out, Cow::Borrowed(req.remote_addr.as_bytes())),
        Var::MatchedVar => {
            if let Some((_, v)) = &st.matched_var {
                scalar(out, Cow::Owned(v.to_vec()));
            }
        }
        Var::MatchedVarName => {
            if let Some((n, _)) = &st.matched_var {
                scalar(out, Cow::Owned(n.as_bytes().to_vec()));
            }
        }
        Var::MatchedVars | Var::MatchedVarsNames => {
            for (n, v) in &st.matched_vars {
                if t.key.selects(n.as_bytes()) {
                    out.push(Value {
                        var,
                        key: Cow::Owned(n.as_bytes().to_vec()),
                        value: Cow::Owned(if var == Var::MatchedVars {
                            v.to_vec()
                        } else {
                            n.as_bytes().to_vec()
                        }),
                    });
                }
            }
        }
        Var::ReqbodyError => {
            if req.body_seen {
                scalar(out, flag(req.parsed.error.is_some()));
            }
        }
        Var::ReqbodyErrorMsg => {
            if let Some(e) = &req.parsed.error {
                scalar(out, Cow::Owned(e.clone().into_bytes()));
            }
        }
        Var::ReqbodyProcessor => {
            if let Some(p) = st.processor {
                scalar(out, Cow::Borrowed(p.name().as_bytes()));
            }
        }
        Var::ReqbodyProcessorError => {
            if req.body_seen {
                scalar(out, flag(req.parsed.error.is_some()));
            }
        }
        Var::MultipartStrictError => {
            if req.processor == Some(Processor::Multipart) {
                scalar(
                    out,
                    flag(req.parsed.multipart.strict_error() || req.parsed.error.is_some()),
                );
            }
        }
        Var::MultipartUnmatchedBoundary => {
            if req.processor == Some(Processor::Multipart) {
                scalar(out, flag(req.parsed.multipart.unmatched_boundary));
            }
        }
        Var::MultipartFlag(f) => {
            if req.processor == Some(Processor::Multipart) {
                let m = &req.parsed.multipart;
                scalar(
                    out,
                    flag(match f {
                        MultipartFlag::BoundaryQuoted => m.boundary_quoted,
                        MultipartFlag::BoundaryWhitespace => m.boundary_whitespace,
                        MultipartFlag::DataBefore => m.data_before,
                        MultipartFlag::DataAfter => m.data_after,
                        MultipartFlag::HeaderFolding => m.header_folding,
                        MultipartFlag::LfLine => m.lf_line,
                        MultipartFlag::MissingSemicolon => m.missing_semicolon,
                        MultipartFlag::InvalidQuoting => m.invalid_quoting,
                        MultipartFlag::InvalidPart => m.invalid_part,
                        MultipartFlag::InvalidHeaderFolding => m.invalid_header_folding,
                        MultipartFlag::FileLimitExceeded | MultipartFlag::CrlfLfLines => false,
                    }),
                );
            }
        }
        Var::MultipartPartHeaders => pairs(out, &req.parsed.part_headers, false),
        Var::MultipartFilename | Var::MultipartName => {}
        Var::UniqueId => scalar(
            out,
            Cow::Owned(format!("{:x}{:08x}", std::process::id(), req.unique_n).into_bytes()),
        ),
        Var::Duration => scalar(out, num(req.start.elapsed().as_millis() as usize)),
        Var::Time | Var::TimeEpoch => {
            let s = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            scalar(out, Cow::Owned(s.to_string().into_bytes()));
        }
        Var::WebAppId => {}
        Var::Collection(c) => {
            let m = &st.colls[c.index()];
            match &t.key {
                Key::Name(k) => {
                    if let Some(v) = std::str::from_utf8(k).ok().and_then(|k| m.get(k)) {
                        out.push(Value {
                            var,
                            key: Cow::Owned(k.to_vec()),
                            value: Cow::Owned(v.to_vec()),
                        });
                    }
                }
                key => {
                    let mut all: Vec<_> = m.select(|k| key.selects(k.as_bytes())).collect();
                    all.sort_unstable();
                    for (k, v) in all {
                        out.push(Value {
                            var,
                            key: Cow::Owned(k.as_bytes().to_vec()),
                            value: Cow::Owned(v.to_vec()),
                        });
                    }
                }
            }
        }
        Var::Geo | Var::Env | Var::Rule => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integer_conversion_is_lenient() {
        assert_eq!(to_int(b"5"), 5);
        assert_eq!(to_int(b" -3 "), -3);
        assert_eq!(to_int(b"12abc"), 12);
        assert_eq!(to_int(b"abc"), 0);
        assert_eq!(to_int(b""), 0);
    }

    #[test]
    fn cookies_split_like_modsecurity() {
        let mut v = Vec::new();
        parse_cookies(b"a=1; b=x=y;;c", &mut v);
        assert_eq!(
            v,
            vec![
                (b"a".to_vec(), b"1".to_vec()),
                (b"b".to_vec(), b"x=y".to_vec()),
                (b"c".to_vec(), b"".to_vec())
            ]
        );
    }
}
