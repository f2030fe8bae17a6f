//! `conclave-waf`: a web application firewall for the conclave edge that reads ModSecurity rule
//! files (the subset CDN rule sets use most) and decides per request with set matchers, so the cost
//! of a check barely grows with the number of rules (ModSecurity tests its rules one by one).
//!
//! It owns rule-file parsing, compilation and the per-request decision. It does not own HTTP: the
//! edge builds a [`RequestView`] (and a [`RequestContext`] with the body) from each request and acts
//! on the [`Decision`]. Two engines: rule sets the set matcher can express (the seed's, a million
//! rules deep) are compiled into set matchers; others (the OWASP CRS: `setvar`, `skipAfter`, `ctl`,
//! anomaly scoring, request bodies) run in a rule-by-rule interpreter with ModSecurity v3 semantics.
//! Responses are not inspected (phases 3 and 4 are accepted and noted, not run).
//!
//! ```no_run
//! # fn main() -> Result<(), conclave_waf::WafError> {
//! use conclave_waf::{Decision, RequestView, Waf};
//! let waf = std::sync::Arc::new(Waf::load("main.conf")?);
//! let headers = [("Host", &b"example.com"[..])];
//! let req = RequestView { method: "GET", uri: "/?testparam=abcdef", headers: &headers };
//! if let Decision::Deny { status, rule_id, .. } = waf.check(&req) {
//!     println!("denied with {status} by rule {rule_id}");
//! }
//! # Ok(()) }
//! ```
#![deny(unsafe_code)]

mod body;
pub mod corpus;
mod error;
mod hash;
mod interp;
mod matcher;
#[cfg(feature = "modsecurity")]
pub mod modsec;
// Some accessors (pattern sources, names) are for the set matcher and logs.
#[allow(dead_code)]
mod operator;
mod request;
mod rng;
mod rule;
pub mod rulegen;
mod rules_file;
mod ruleset;
#[allow(dead_code)]
mod transform;

use std::cell::RefCell;
use std::path::Path;

pub use error::WafError;
pub use operator::{set_verdict_cache_entries, DEFAULT_VERDICT_CACHE, MAX_VERDICT_CACHE};

/// Interpreter counters since the process started (all [`Waf`]s of the process). Benchmarks
/// read them to report how many rules run per request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct InterpStats {
    /// Transactions run.
    pub requests: u64,
    /// Rules evaluated exactly (with or without a prefilter).
    pub evaluated: u64,
    /// Of those, rules with a prefilter that let them through (one of their literals occurred).
    pub passed: u64,
    /// Rules skipped by their prefilter.
    pub skipped: u64,
    /// Rules not run because their outcome was computed when the rules loaded (paranoia-level
    /// gates, setup `SecAction`s and defaults; see docs/waf.md, "Partial evaluation").
    pub folded: u64,
}

/// The interpreter's counters (see [`InterpStats`]).
pub fn interp_stats() -> InterpStats {
    interp::eval::stats()
}
pub use request::RequestView;
pub use ruleset::{Engine, LoadOptions};

use matcher::Matcher;
use request::Scratch;

/// The verdict for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision<'w> {
    /// Let the request through.
    Allow,
    /// Refuse the request with `status`; `rule_id` and `msg` are for the log.
    Deny {
        /// HTTP status to answer (the rule's `status`, 403 by default).
        status: u16,
        /// The `id` of the rule that denied.
        rule_id: u64,
        /// The rule's `msg`, if any.
        msg: Option<&'w str>,
    },
}

/// What the edge knows about a request beyond its head: the protocol, the client and the body
/// (phase 2 inspects the body only if the rules say `SecRequestBodyAccess On`).
#[derive(Debug, Clone, Copy)]
pub struct RequestContext<'a> {
    /// `REQUEST_PROTOCOL`, for example `HTTP/1.1`.
    pub protocol: &'a str,
    /// `REMOTE_ADDR`, the client's address without port.
    pub remote_addr: &'a str,
    /// The request body as received (at most the edge's body limit); empty if none.
    pub body: &'a [u8],
}

impl Default for RequestContext<'_> {
    fn default() -> Self {
        RequestContext {
            protocol: "HTTP/1.1",
            remote_addr: "127.0.0.1",
            body: b"",
        }
    }
}

/// Everything a check found: the decision, every rule whose chain matched and the `TX`
/// collection (anomaly scores); for differential tests and detailed logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inspection {
    /// `None`: allowed; otherwise (status, rule id, expanded `msg`).
    pub deny: Option<(u16, u64, Option<String>)>,
    /// `Location` of a `redirect`.
    pub location: Option<String>,
    /// Ids of the rules that matched, in evaluation order.
    pub matched: Vec<u64>,
    /// The `TX` collection at the end (empty for the set matcher).
    pub tx: Vec<(String, String)>,
}

impl Inspection {
    /// A `TX` variable parsed as an integer (for example `anomaly_score`), 0 if absent.
    pub fn tx_int(&self, name: &str) -> i64 {
        self.tx
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .and_then(|(_, v)| v.trim().parse().ok())
            .unwrap_or(0)
    }
}

/// Which engine runs a loaded rule set.
enum Compiled {
    /// Set matchers (Aho-Corasick, hash maps, RegexSet): the seed's rule sets.
    Sets(Matcher),
    /// The rule-by-rule interpreter (CRS). Boxed: the program (with its plan) is much larger
    /// than the set matcher's handle.
    Interp(Box<interp::Program>),
}

/// A loaded, compiled rule set. Immutable, `Send + Sync`: share one per process via `Arc`.
pub struct Waf {
    engine: Engine,
    compiled: Compiled,
    skipped: Vec<WafError>,
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

impl Waf {
    /// Loads `path` (and its includes); anything outside the supported subset is an error.
    pub fn load(path: impl AsRef<Path>) -> Result<Waf, WafError> {
        Waf::load_with(path, &LoadOptions::default())
    }

    /// Loads `path` with options (for example skipping unsupported rules, see [`Waf::skipped`]).
    ///
    /// A rule set the set matcher can express is compiled into set matchers; any other (one with
    /// `setvar`, `SecAction`, `ctl`, more variables and operators: the CRS) goes to the interpreter,
    /// whose first unsupported line is the error.
    pub fn load_with(path: impl AsRef<Path>, opts: &LoadOptions) -> Result<Waf, WafError> {
        let path = path.as_ref();
        match ruleset::parse(
            path,
            &LoadOptions {
                ignore_unsupported: false,
            },
        ) {
            Ok(mut parsed) => {
                let matcher = Matcher::compile(&mut parsed)?;
                Ok(Waf {
                    engine: parsed.engine,
                    compiled: Compiled::Sets(matcher),
                    skipped: parsed.skipped,
                })
            }
            Err(WafError::Unsupported { .. }) => match interp::load(path) {
                Ok(p) => Ok(Waf {
                    engine: p.engine,
                    compiled: Compiled::Interp(Box::new(p)),
                    skipped: Vec::new(),
                }),
                // The subset loader can still skip what neither engine supports.
                Err(WafError::Unsupported { .. }) if opts.ignore_unsupported => {
                    let mut parsed = ruleset::parse(path, opts)?;
                    let matcher = Matcher::compile(&mut parsed)?;
                    Ok(Waf {
                        engine: parsed.engine,
                        compiled: Compiled::Sets(matcher),
                        skipped: parsed.skipped,
                    })
                }
                Err(e) => Err(e),
            },
            Err(e) => Err(e),
        }
    }

    /// Decides one request from its head alone, honouring `SecRuleEngine` (only `On` ever denies).
    pub fn check(&self, req: &RequestView<'_>) -> Decision<'_> {
        self.check_with(req, &RequestContext::default())
    }

    /// Decides one request with its context (body for phase 2, protocol, client address).
    pub fn check_with(&self, req: &RequestView<'_>, ctx: &RequestContext<'_>) -> Decision<'_> {
        if self.engine != Engine::On {
            return Decision::Allow;
        }
        self.detect_with(req, ctx)
    }

    /// What the rules would decide if `SecRuleEngine` were `On` (for logging in `DetectionOnly`).
    pub fn detect(&self, req: &RequestView<'_>) -> Decision<'_> {
        self.detect_with(req, &RequestContext::default())
    }

    /// [`Waf::detect`] with the request's context.
    pub fn detect_with(&self, req: &RequestView<'_>, ctx: &RequestContext<'_>) -> Decision<'_> {
        if self.engine == Engine::Off {
            return Decision::Allow;
        }
        match &self.compiled {
            Compiled::Sets(m) => {
                if m.rules.is_empty() {
                    return Decision::Allow;
                }
                let hit = SCRATCH.with(|s| match s.try_borrow_mut() {
                    Ok(mut s) => m.evaluate(req, &mut s),
                    Err(_) => m.evaluate(req, &mut Scratch::default()),
                });
                match hit {
                    None => Decision::Allow,
                    Some(h) => {
                        let r = &m.rules[h.rule as usize];
                        Decision::Deny {
                            status: h.status,
                            rule_id: r.id,
                            msg: r.msg.as_deref(),
                        }
                    }
                }
            }
            Compiled::Interp(p) => {
                let mut tx = interp::eval::Transaction::new(p, req, ctx);
                match tx.run() {
                    interp::eval::Outcome::Pass => Decision::Allow,
                    interp::eval::Outcome::Interrupt { status, rule, .. } => {
                        let r = p.rules.get(rule as usize);
                        Decision::Deny {
                            status,
                            rule_id: r.map_or(0, |r| r.id),
                            msg: r.and_then(|r| r.msg.as_deref()),
                        }
                    }
                }
            }
        }
    }

    /// Everything the rules found for a request, as if `SecRuleEngine` were `On`: the decision,
    /// matched rule ids and the `TX` collection (anomaly scores). The set matcher reports only the
    /// deciding rule.
    pub fn inspect(&self, req: &RequestView<'_>, ctx: &RequestContext<'_>) -> Inspection {
        match &self.compiled {
            Compiled::Interp(p) if self.engine != Engine::Off => {
                let mut tx = interp::eval::Transaction::new(p, req, ctx);
                let outcome = tx.run();
                let (deny, location) = match outcome {
                    interp::eval::Outcome::Pass => (None, None),
                    interp::eval::Outcome::Interrupt {
                        status,
                        rule,
                        location,
                    } => {
                        let id = p.rules.get(rule as usize).map_or(0, |r| r.id);
                        let msg = p.rules.get(rule as usize).and_then(|_| tx.message(rule));
                        (Some((status, id, msg)), location)
                    }
                };
                Inspection {
                    deny,
                    location,
                    matched: std::mem::take(&mut tx.matched_rules),
                    tx: tx.tx_all(),
                }
            }
            _ => {
                let d = self.detect_with(req, ctx);
                let deny = match d {
                    Decision::Allow => None,
                    Decision::Deny { status, rule_id, msg } => {
                        Some((status, rule_id, msg.map(str::to_string)))
                    }
                };
                Inspection {
                    matched: deny.iter().map(|d| d.1).collect(),
                    deny,
                    location: None,
                    tx: Vec::new(),
                }
            }
        }
    }

    /// Whether phase 2 reads request bodies (`SecRequestBodyAccess On`), and up to how many bytes
    /// (`SecRequestBodyLimit`): the edge buffers at most this much.
    pub fn body_limit(&self) -> Option<usize> {
        match &self.compiled {
            Compiled::Interp(p) if p.body.access => Some(p.body.limit),
            _ => None,
        }
    }

    /// Load-time notes: what the rule set holds that does not run (response-phase rules), to log
    /// once at start-up.
    pub fn notes(&self) -> &[String] {
        match &self.compiled {
            Compiled::Interp(p) => &p.notes,
            Compiled::Sets(_) => &[],
        }
    }

    /// Whether the rule-by-rule interpreter runs this rule set (rather than the set matcher).
    pub fn is_interpreted(&self) -> bool {
        matches!(self.compiled, Compiled::Interp(_))
    }

    /// The `SecRuleEngine` mode of the loaded configuration.
    pub fn engine(&self) -> Engine {
        self.engine
    }

    /// Number of rules loaded (a chain counts once).
    pub fn rule_count(&self) -> usize {
        match &self.compiled {
            Compiled::Sets(m) => m.rules.len(),
            Compiled::Interp(p) => p.rules.len(),
        }
    }

    /// Interpreted rules that have a prefilter (skipped without running when none of their
    /// literals occurs in their transformed values); 0 for the set matcher.
    pub fn prefiltered_rule_count(&self) -> usize {
        match &self.compiled {
            Compiled::Sets(_) => 0,
            Compiled::Interp(p) => p.prefilters.covered(),
        }
    }

    /// Interpreted rules whose outcome was computed at load (see [`InterpStats::folded`]) and
    /// rules no request can reach (skipped on every path by folded rules); (0, 0) for the set
    /// matcher.
    pub fn folded_rule_count(&self) -> (usize, usize) {
        match &self.compiled {
            Compiled::Sets(_) => (0, 0),
            Compiled::Interp(p) => (p.plan.folded, p.plan.unreachable),
        }
    }

    /// Rules and directives skipped as unsupported (only with `ignore_unsupported`), each naming
    /// its file, line and directive.
    pub fn skipped(&self) -> &[WafError] {
        &self.skipped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_sync<T: Send + Sync>() {}

    #[test]
    fn waf_is_shareable() {
        assert_send_sync::<Waf>();
    }
}
