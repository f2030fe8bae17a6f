//! The rule-by-rule interpreter: ModSecurity v3 semantics for rule sets the set matcher cannot
//! express (the OWASP CRS: `setvar`, macros, `skipAfter`, `ctl`, chains with captures, anomaly
//! scoring, request bodies). Compiled once into an immutable [`Program`] (`Send + Sync`, shared by
//! `Arc`); everything a request changes lives in a per-request [`eval::Transaction`].

pub(crate) mod eval;
pub(crate) mod factor;
pub(crate) mod plan;
pub(crate) mod prefilter;
pub(crate) mod rule;
pub(crate) mod vars;

use std::path::Path;

use crate::error::WafError;
use crate::hash::FxHashMap;
use crate::rules_file::{read_config, Directive};
use crate::transform::Transform;
use crate::Engine;

use rule::{id_ranges, parse_actions, parse_operator, parse_targets, Disruptive, Link, Rule};
use vars::Target;

/// Directives accepted and ignored, with why (docs/waf.md lists the same reasons).
const IGNORED_DIRECTIVES: &[(&str, &str)] = &[
    ("seccollectiontimeout", "collections live for one transaction"),
    ("secpcrematchlimit", "the regex engines bound their own work"),
    (
        "secpcrematchlimitrecursion",
        "the regex engines bound their own work",
    ),
    ("secresponsebodyaccess", "responses are not inspected"),
    ("secresponsebodymimetype", "responses are not inspected"),
    ("secresponsebodylimit", "responses are not inspected"),
    ("secresponsebodylimitaction", "responses are not inspected"),
    ("secauditengine", "no audit log"),
    ("secauditlog", "no audit log"),
    ("secauditlogparts", "no audit log"),
    ("secauditlogtype", "no audit log"),
    ("secauditlogstoragedir", "no audit log"),
    ("secauditlogrelevantstatus", "no audit log"),
    ("secauditlogformat", "no audit log"),
    ("secauditlogdirmode", "no audit log"),
    ("secauditlogfilemode", "no audit log"),
    ("secdebuglog", "no debug log"),
    ("secdebugloglevel", "no debug log"),
    ("sectmpdir", "bodies are held in memory"),
    ("secdatadir", "no persistent collections"),
    ("secuploaddir", "uploads are not stored"),
    ("secuploadkeepfiles", "uploads are not stored"),
    ("secuploadfilemode", "uploads are not stored"),
    ("secstatusengine", "no status reporting"),
    ("seccomponentsignature", "informational"),
    ("seccookieformat", "cookies are parsed as version 0"),
    (
        "secunicodemapfile",
        "urlDecodeUni maps %uXXXX by its low byte, as without a map file",
    ),
    ("secserversignature", "the edge sets its own Server header"),
    ("secargumentslimit", "arguments are bounded by the body limit"),
    ("secrequestbodyinmemorylimit", "bodies are held in memory"),
    ("secrequestbodyjsondepthlimit", "JSON nesting is bounded at 512"),
    ("sechttpblkey", "no RBL look-ups"),
    ("secgeolookupdb", "no GeoIP database"),
];

/// Request-body settings from `SecRequestBody*` and `SecArgumentSeparator`.
#[derive(Debug, Clone)]
pub(crate) struct BodySettings {
    pub access: bool,
    pub limit: usize,
    pub no_files_limit: usize,
    /// `SecRequestBodyLimitAction Reject` (answer 413) rather than `ProcessPartial`.
    pub reject_over_limit: bool,
    pub arg_separator: u8,
    pub json_depth: usize,
}

impl Default for BodySettings {
    fn default() -> Self {
        BodySettings {
            access: false,
            limit: 134_217_728,
            no_files_limit: 1_048_576,
            reject_over_limit: true,
            arg_separator: b'&',
            json_depth: 512,
        }
    }
}

/// `SecDefaultAction` of one phase.
#[derive(Debug, Clone)]
pub(crate) struct PhaseDefault {
    pub disruptive: Disruptive,
    pub status: Option<u16>,
    pub transforms: Vec<Transform>,
}

impl Default for PhaseDefault {
    fn default() -> Self {
        PhaseDefault {
            disruptive: Disruptive::Pass,
            status: None,
            transforms: Vec::new(),
        }
    }
}

/// One entry of a phase's evaluation list.
#[derive(Debug)]
pub(crate) enum Item {
    Rule(u32),
    Marker(Box<str>),
}

/// A compiled rule set for the interpreter.
#[derive(Debug)]
pub(crate) struct Program {
    pub engine: Engine,
    pub rules: Vec<Rule>,
    /// Evaluation lists of phases 1 and 2 (index 0 and 1).
    pub phases: [Vec<Item>; 2],
    /// For each rule (by index): where `skipAfter` continues in its phase list.
    pub skip_targets: Vec<usize>,
    pub defaults: [PhaseDefault; 2],
    pub body: BodySettings,
    pub web_app_id: String,
    /// Load-time notes: what was accepted but does not run (response phases), for the log.
    pub notes: Vec<String>,
    /// Which rules can be skipped for a request without running them (built last, at load).
    pub prefilters: prefilter::Prefilters,
    /// What a request walks: the phase lists with the request-independent rules folded.
    pub plan: plan::Plan,
    /// Per chain id: the bytes one of which a value must hold for the chain to change it
    /// (`None`: a transformation of the chain may change any value). Most benign values hold
    /// none for most chains: one pass over the value then replaces the chain's transformations
    /// and the transformation cache's lookup.
    pub chain_bytes: Vec<Option<Box<[bool; 256]>>>,
}

struct Loader {
    p: Program,
    open: Option<Rule>,
    /// The chain being read belongs to a response phase: its links are dropped too.
    dropping_chain: bool,
    dropped: [usize; 6],
    remove_ids: Vec<(u64, u64)>,
    remove_tags: Vec<String>,
    remove_msgs: Vec<String>,
    update_targets: Vec<(Vec<(u64, u64)>, Directive<'static>)>,
    ignored: FxHashMap<&'static str, &'static str>,
    ids: crate::hash::FxHashSet<u64>,
    chains: FxHashMap<Vec<Transform>, u32>,
}

/// Reads `path` (with its includes) into a [`Program`].
pub(crate) fn load(path: &Path) -> Result<Program, WafError> {
    let mut l = Loader {
        p: Program {
            engine: Engine::DetectionOnly,
            rules: Vec::new(),
            phases: [Vec::new(), Vec::new()],
            skip_targets: Vec::new(),
            defaults: [PhaseDefault::default(), PhaseDefault::default()],
            body: BodySettings::default(),
            web_app_id: "default".into(),
            notes: Vec::new(),
            prefilters: Default::default(),
            plan: Default::default(),
            chain_bytes: Vec::new(),
        },
        open: None,
        dropping_chain: false,
        dropped: [0; 6],
        remove_ids: Vec::new(),
        remove_tags: Vec::new(),
        remove_msgs: Vec::new(),
        update_targets: Vec::new(),
        ignored: IGNORED_DIRECTIVES.iter().copied().collect(),
        ids: Default::default(),
        chains: Default::default(),
    };
    read_config(path, &mut |d| l.directive(d))?;
    if let Some(r) = &l.open {
        return Err(WafError::Syntax {
            file: r.file.to_path_buf(),
            line: r.line,
            directive: "SecRule".into(),
            msg: "the last rule says `chain` but no rule follows".into(),
        });
    }
    l.finish()
}

impl Loader {
    fn directive(&mut self, d: Directive<'_>) -> Result<(), WafError> {
        let name = d.name.to_ascii_lowercase();
        if name == "secrule" {
            return self.secrule(d);
        }
        if self.open.is_some() {
            return Err(d.syntax(format!("the previous rule says `chain` but {} follows", d.name)));
        }
        self.dropping_chain = false;
        let arg1 = |d: &Directive<'_>| -> Result<String, WafError> {
            match d.args.as_slice() {
                [a] => Ok(a.to_string()),
                _ => Err(d.syntax("expects one argument")),
            }
        };
        let size = |d: &Directive<'_>| -> Result<usize, WafError> {
            let a = arg1(d)?;
            a.parse()
                .map_err(|_| d.syntax(format!("expects a size in bytes, got `{a}`")))
        };
        match name.as_str() {
            "secruleengine" => {
                self.p.engine = match arg1(&d)?.to_ascii_lowercase().as_str() {
                    "on" => Engine::On,
                    "off" => Engine::Off,
                    "detectiononly" => Engine::DetectionOnly,
                    _ => return Err(d.syntax("expects On, Off or DetectionOnly")),
                }
            }
            "secaction" => {
                let a = arg1(&d)?;
                self.rule(&d, None, &a)?;
            }
            "secmarker" => {
                let m = arg1(&d)?;
                for list in &mut self.p.phases {
                    list.push(Item::Marker(m.clone().into()));
                }
            }
            "secdefaultaction" => {
                let a = parse_actions(&d, &arg1(&d)?)?;
                let phase = a
                    .phase
                    .ok_or_else(|| d.syntax("a default action needs a phase"))?;
                if a.id.is_some() || a.chain {
                    return Err(d.syntax("id and chain are not allowed in a default action"));
                }
                let disruptive = match a.disruptive {
                    None => Disruptive::Pass,
                    Some(Disruptive::Block) => {
                        return Err(d.syntax("`block` is not allowed in a default action"))
                    }
                    Some(x) => x,
                };
                if (1..=2).contains(&phase) {
                    self.p.defaults[phase as usize - 1] = PhaseDefault {
                        disruptive,
                        status: a.status,
                        transforms: a.transforms,
                    };
                }
            }
            "secrequestbodyaccess" => self.p.body.access = on_off(&d, &arg1(&d)?)?,
            "secrequestbodylimit" => self.p.body.limit = size(&d)?,
            "secrequestbodynofileslimit" => self.p.body.no_files_limit = size(&d)?,
            "secrequestbodylimitaction" => {
                self.p.body.reject_over_limit = match arg1(&d)?.to_ascii_lowercase().as_str() {
                    "reject" => true,
                    "processpartial" => false,
                    _ => return Err(d.syntax("expects Reject or ProcessPartial")),
                }
            }
            "secargumentseparator" => {
                let a = arg1(&d)?;
                match a.as_bytes() {
                    [c] => self.p.body.arg_separator = *c,
                    _ => return Err(d.syntax("expects one character")),
                }
            }
            "secwebappid" => self.p.web_app_id = arg1(&d)?,
            "secruleremovebyid" => {
                for a in &d.args {
                    let r = id_ranges(a).ok_or_else(|| d.syntax(format!("bad id or range `{a}`")))?;
                    self.remove_ids.extend(r);
                }
            }
            "secruleremovebytag" => self.remove_tags.push(arg1(&d)?),
            "secruleremovebymsg" => self.remove_msgs.push(arg1(&d)?),
            "secruleupdatetargetbyid" => {
                if d.args.len() != 2 {
                    return Err(d.syntax("expects ID VARIABLES"));
                }
                let ids = id_ranges(&d.args[0]).ok_or_else(|| d.syntax("bad id"))?;
                self.update_targets.push((ids, d.into_owned()));
            }
            n => match self.ignored.get(n) {
                Some(_) => {}
                None => return Err(d.unsupported("directive")),
            },
        }
        Ok(())
    }

    fn secrule(&mut self, d: Directive<'_>) -> Result<(), WafError> {
        if d.args.len() < 2 || d.args.len() > 3 {
            return Err(d.syntax("expects VARIABLES \"OPERATOR\" [\"ACTIONS\"]"));
        }
        let actions = d.args.get(2).map(|s| s.to_string()).unwrap_or_default();
        self.rule(&d, Some((&d.args[0], &d.args[1])), &actions)
    }

    /// A `SecRule` (with variables and operator) or a `SecAction` (without).
    fn rule(&mut self, d: &Directive<'_>, cond: Option<(&str, &str)>, actions: &str) -> Result<(), WafError> {
        let a = parse_actions(d, actions)?;
        if self.dropping_chain {
            self.dropping_chain = a.chain;
            return Ok(());
        }
        let phase = match &self.open {
            Some(r) => r.phase,
            None => a.phase.unwrap_or(1),
        };
        let targets = match cond {
            Some((vars, _)) => parse_targets(d, vars)?,
            None => Some((Vec::new(), Vec::new())),
        };
        let Some((targets, exclude)) = targets.filter(|_| phase <= 2) else {
            // A response-phase (or logging-phase) rule: accepted, not run.
            self.dropped[phase as usize] += 1;
            if let Some(id) = a.id {
                self.ids.insert(id);
            }
            self.open = None;
            self.dropping_chain = a.chain;
            return Ok(());
        };
        let (op, negated) = match cond {
            Some((_, op)) => {
                let (o, n) = parse_operator(d, op)?;
                (Some(o), n)
            }
            None => (None, false),
        };
        let default = &self.p.defaults[phase as usize - 1];
        let transforms = if a.has_none {
            a.transforms
        } else {
            default.transforms.iter().copied().chain(a.transforms).collect()
        };
        let n = self.chains.len() as u32;
        let chain = *self.chains.entry(transforms.clone()).or_insert(n);
        let link = Link {
            targets,
            exclude,
            op,
            negated,
            transforms,
            chain,
            multi_match: a.multi_match,
            capture: a.capture,
            setvars: a.setvars,
            ctls: a.ctls,
        };
        if let Some(mut r) = self.open.take() {
            if a.id.is_some() || a.phase.is_some() || a.disruptive.is_some() || a.skip_after.is_some() {
                return Err(
                    d.syntax("a chained rule may not set id, phase, skipAfter or a disruptive action")
                );
            }
            r.links.push(link);
            if a.chain {
                self.open = Some(r);
            } else {
                self.push(r);
            }
            return Ok(());
        }
        let id = a.id.ok_or_else(|| d.syntax("the rule has no id"))?;
        if !self.ids.insert(id) {
            return Err(d.syntax(format!("rule id {id} is duplicated")));
        }
        let r = Rule {
            id,
            phase,
            file: d.file.clone(),
            line: d.line,
            links: vec![link],
            disruptive: a.disruptive.unwrap_or(Disruptive::Pass),
            status: a.status,
            msg: a.msg,
            logdata: a.logdata,
            tags: a.tags,
            severity: a.severity,
            skip_after: a.skip_after,
            skip: a.skip,
            observes_match: true,
        };
        if a.chain {
            self.open = Some(r);
        } else {
            self.push(r);
        }
        Ok(())
    }

    fn push(&mut self, r: Rule) {
        let i = self.p.rules.len() as u32;
        self.p.phases[r.phase as usize - 1].push(Item::Rule(i));
        self.p.rules.push(r);
    }

    fn finish(mut self) -> Result<Program, WafError> {
        for (ids, d) in std::mem::take(&mut self.update_targets) {
            for part in d.args[1].split('|') {
                let (neg, p) = match part.trim().strip_prefix('!') {
                    Some(p) => (true, p),
                    None => (false, part.trim()),
                };
                let t = Target::parse(p).map_err(|e| d.unsupported(e))?;
                for r in self.p.rules.iter_mut().filter(|r| in_ranges(&ids, r.id)) {
                    if neg {
                        r.links[0].exclude.push(t.clone());
                    } else {
                        r.links[0].targets.push(t.clone());
                    }
                }
            }
        }
        let removed: Vec<bool> = self
            .p
            .rules
            .iter()
            .map(|r| {
                in_ranges(&self.remove_ids, r.id)
                    || r.tags.iter().any(|t| self.remove_tags.iter().any(|x| x == t))
                    || r.msg
                        .as_ref()
                        .is_some_and(|m| self.remove_msgs.iter().any(|x| x == m))
            })
            .collect();
        for list in &mut self.p.phases {
            list.retain(|it| !matches!(it, Item::Rule(i) if removed[*i as usize]));
        }
        let mut targets = vec![0usize; self.p.rules.len()];
        for list in &self.p.phases {
            for (pos, it) in list.iter().enumerate() {
                let Item::Rule(i) = it else { continue };
                let r = &self.p.rules[*i as usize];
                targets[*i as usize] = match &r.skip_after {
                    None => pos + 1 + r.skip as usize,
                    Some(m) => list[pos + 1..]
                        .iter()
                        .position(|it| matches!(it, Item::Marker(x) if **x == **m))
                        .map_or(list.len(), |p| pos + 1 + p + 1),
                };
            }
        }
        self.p.skip_targets = targets;
        for r in &mut self.p.rules {
            r.compute_observes_match();
        }
        self.p.chain_bytes = vec![None; self.chains.len()];
        for (ts, id) in &self.chains {
            let mut union = [false; 256];
            let all = ts.iter().all(|t| match t.touched_bytes() {
                Some(b) => {
                    for (u, b) in union.iter_mut().zip(b) {
                        *u |= b;
                    }
                    true
                }
                None => false,
            });
            if all {
                self.p.chain_bytes[*id as usize] = Some(Box::new(union));
            }
        }
        self.p.prefilters = prefilter::Prefilters::build(&self.p);
        self.p.plan = plan::build(&self.p);
        let mut live = vec![false; self.p.rules.len()];
        for step in self.p.plan.steps.iter().flatten() {
            if let plan::Step::Rule(ri) = step {
                live[*ri as usize] = true;
            }
        }
        self.p.prefilters.link_siblings(|ri| live[ri as usize]);
        for (ri, k, op) in std::mem::take(&mut self.p.plan.specialized) {
            let r = &mut self.p.rules[ri as usize];
            r.links[k].op = Some(std::sync::Arc::new(op));
            r.compute_observes_match();
        }
        for (phase, n) in self.dropped.iter().enumerate().filter(|(_, n)| **n > 0) {
            self.p.notes.push(format!(
                "{n} rule(s) of phase {phase} not run: {}",
                if phase == 5 {
                    "the logging phase does not decide"
                } else {
                    "responses are not inspected"
                }
            ));
        }
        Ok(self.p)
    }
}

/// Debian's CRS (`modsecurity-crs`, with Debian's recommended modsecurity.conf) at paranoia
/// level `pl`, when installed.
#[cfg(test)]
pub(crate) fn crs_program(pl: u8) -> Option<Program> {
    let rules = Path::new("/usr/share/modsecurity-crs/rules");
    if !rules.is_dir() {
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let main = dir.path().join("main.conf");
    let recommended = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/crs/modsecurity.conf");
    std::fs::write(
        &main,
        format!(
            "Include {}\nSecRuleEngine On\nInclude /etc/modsecurity/crs/crs-setup.conf\n\
             SecAction \"id:900000,phase:1,nolog,pass,t:none,setvar:tx.paranoia_level={pl}\"\n\
             Include {}/*.conf\n",
            recommended.display(),
            rules.display()
        ),
    )
    .unwrap();
    Some(load(&main).unwrap())
}

fn in_ranges(r: &[(u64, u64)], id: u64) -> bool {
    r.iter().any(|(a, b)| (*a..=*b).contains(&id))
}

fn on_off(d: &Directive<'_>, v: &str) -> Result<bool, WafError> {
    match v.to_ascii_lowercase().as_str() {
        "on" => Ok(true),
        "off" => Ok(false),
        _ => Err(d.syntax("expects On or Off")),
    }
}
