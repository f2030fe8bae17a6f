//! Turning a configuration's directives into rules: `SecRuleEngine`, `SecDefaultAction`, `SecRule`
//! with `chain`, id checks, and the list of rules skipped as unsupported.

use std::path::Path;
use std::sync::Arc;

use crate::error::WafError;
use crate::hash::{FxHashMap, FxHashSet};
use crate::rule::{
    mentions_chain, parse_default_action, parse_secrule, DefaultAction, Disruptive, RuleDef, Targets,
};
use crate::rules_file::{read_config, Directive};

/// `SecRuleEngine`: whether rules run, and whether their disruptive actions take effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    /// Rules run and deny.
    On,
    /// Rules do not run.
    Off,
    /// Rules run but never deny (also ModSecurity's behaviour when `SecRuleEngine` is not set).
    DetectionOnly,
}

/// How strictly to load a rule set.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// Skip (and list in `Waf::skipped`) rules and directives outside the supported subset instead
    /// of failing the load.
    pub ignore_unsupported: bool,
}

/// Directives accepted and ignored: they only affect logging, bodies or responses, which this WAF
/// does not inspect.
const NO_EFFECT_DIRECTIVES: &[&str] = &[
    "secrequestbodyaccess",
    "secresponsebodyaccess",
    "secresponsebodymimetype",
    "secauditengine",
    "secauditlog",
    "secauditlogparts",
    "secauditlogtype",
    "secauditlogstoragedir",
    "secauditlogrelevantstatus",
    "secdebuglog",
    "secdebugloglevel",
    "sectmpdir",
    "secdatadir",
    "secstatusengine",
    "seccomponentsignature",
];

/// The parsed configuration, before compilation into matchers.
pub(crate) struct Parsed {
    pub engine: Engine,
    /// Rules in configuration order.
    pub rules: Vec<RuleDef>,
    /// `SecDefaultAction` for phases 1 and 2 (index = phase).
    pub defaults: [Option<DefaultAction>; 3],
    pub skipped: Vec<WafError>,
}

struct Loader<'o> {
    opts: &'o LoadOptions,
    parsed: Parsed,
    ids: FxHashSet<u64>,
    open_chain: Option<(RuleDef, Directive<'static>)>,
    skipping_chain: bool,
    /// Variable lists already parsed, by their text.
    targets: FxHashMap<String, Arc<Targets>>,
}

/// Reads `path` (with its includes) into rules.
pub(crate) fn parse(path: &Path, opts: &LoadOptions) -> Result<Parsed, WafError> {
    let mut l = Loader {
        opts,
        parsed: Parsed {
            engine: Engine::DetectionOnly,
            rules: Vec::new(),
            defaults: [None, None, None],
            skipped: Vec::new(),
        },
        ids: FxHashSet::default(),
        open_chain: None,
        skipping_chain: false,
        targets: FxHashMap::default(),
    };
    read_config(path, &mut |d| l.directive(d))?;
    if let Some((_, d)) = l.open_chain {
        return Err(d.syntax("the last rule says `chain` but no rule follows"));
    }
    Ok(l.parsed)
}

impl Loader<'_> {
    fn directive(&mut self, d: Directive<'_>) -> Result<(), WafError> {
        if d.name.eq_ignore_ascii_case("SecRule") {
            return self.secrule(d);
        }
        if let Some((_, start)) = &self.open_chain {
            return Err(start.syntax(format!("`chain` is followed by {} instead of SecRule", d.name)));
        }
        self.skipping_chain = false;
        let name = d.name.to_ascii_lowercase();
        match name.as_str() {
            "secruleengine" => {
                let v = d.args.first().map(|s| s.to_ascii_lowercase());
                self.parsed.engine = match (d.args.len(), v.as_deref()) {
                    (1, Some("on")) => Engine::On,
                    (1, Some("off")) => Engine::Off,
                    (1, Some("detectiononly")) => Engine::DetectionOnly,
                    _ => return Err(d.syntax("expects On, Off or DetectionOnly")),
                };
                Ok(())
            }
            "secdefaultaction" => match parse_default_action(&d) {
                Ok((phase, da)) => {
                    if self.parsed.defaults[phase as usize].is_some() {
                        return Err(d.syntax(format!("a second SecDefaultAction for phase {phase}")));
                    }
                    self.parsed.defaults[phase as usize] = Some(da);
                    Ok(())
                }
                Err(e) => self.skip_or_fail(e),
            },
            n if NO_EFFECT_DIRECTIVES.contains(&n) => Ok(()),
            _ => {
                let e = d.unsupported("directive");
                self.skip_or_fail(e)
            }
        }
    }

    fn skip_or_fail(&mut self, e: WafError) -> Result<(), WafError> {
        if self.opts.ignore_unsupported && matches!(e, WafError::Unsupported { .. }) {
            self.parsed.skipped.push(e);
            Ok(())
        } else {
            Err(e)
        }
    }

    fn secrule(&mut self, d: Directive<'_>) -> Result<(), WafError> {
        let (cond, a) = match parse_secrule(&d, &mut self.targets) {
            Ok(x) => x,
            Err(e) => {
                if !(self.opts.ignore_unsupported && matches!(e, WafError::Unsupported { .. })) {
                    return Err(e);
                }
                // One listing per skipped chain, whichever link was unsupported.
                if !self.skipping_chain {
                    self.parsed.skipped.push(e);
                }
                self.open_chain = None;
                self.skipping_chain = d.args.get(2).is_some_and(|a| mentions_chain(a));
                return Ok(());
            }
        };
        if self.skipping_chain {
            self.skipping_chain = a.chain;
            return Ok(());
        }
        if let Some((mut r, start)) = self.open_chain.take() {
            if a.id.is_some() || a.phase.is_some() || a.disruptive.is_some() || a.status.is_some() {
                return Err(d.syntax("a chained rule may not set id, phase, status or a disruptive action"));
            }
            r.chained.push(cond);
            if a.chain {
                self.open_chain = Some((r, start));
            } else {
                self.parsed.rules.push(r);
            }
            return Ok(());
        }
        let id = a.id.ok_or_else(|| d.syntax("the rule has no id"))?;
        if !self.ids.insert(id) {
            return Err(d.syntax(format!("rule id {id} is duplicated")));
        }
        let r = RuleDef {
            id,
            // libmodsecurity 3 puts rules without `phase` in phase 1 (its RequestHeadersPhase).
            phase: a.phase.unwrap_or(1),
            disruptive: a.disruptive.unwrap_or(Disruptive::None),
            status: a.status,
            msg: a.msg,
            cond,
            chained: Vec::new(),
        };
        if a.chain {
            self.open_chain = Some((r, d.into_owned()));
        } else {
            self.parsed.rules.push(r);
        }
        Ok(())
    }
}
