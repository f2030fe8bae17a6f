//! `conclave-waf`: a web application firewall for the conclave edge that reads ModSecurity rule
//! files (the subset CDN rule sets use most) and decides per request with set matchers, so the cost
//! of a check barely grows with the number of rules (ModSecurity tests its rules one by one).
//!
//! It owns rule-file parsing, compilation and the per-request decision. It does not own HTTP: the
//! edge builds a [`RequestView`] from each request and acts on the [`Decision`]. Request bodies and
//! responses are not inspected (phases 1 and 2 over the request line and headers only).
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

mod error;
mod hash;
mod matcher;
// The CRS engine (rule evaluation) calls these; until it does, only tests use them.
#[cfg(feature = "modsecurity")]
pub mod modsec;
#[allow(dead_code)]
mod operator;
mod request;
mod rule;
pub mod rulegen;
mod rules_file;
mod ruleset;
#[allow(dead_code)]
mod transform;

use std::cell::RefCell;
use std::path::Path;

pub use error::WafError;
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

/// A loaded, compiled rule set. Immutable, `Send + Sync`: share one per process via `Arc`.
pub struct Waf {
    engine: Engine,
    matcher: Matcher,
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
    pub fn load_with(path: impl AsRef<Path>, opts: &LoadOptions) -> Result<Waf, WafError> {
        let mut parsed = ruleset::parse(path.as_ref(), opts)?;
        let matcher = Matcher::compile(&mut parsed)?;
        Ok(Waf {
            engine: parsed.engine,
            matcher,
            skipped: parsed.skipped,
        })
    }

    /// Decides one request, honouring `SecRuleEngine` (only `On` ever denies).
    pub fn check(&self, req: &RequestView<'_>) -> Decision<'_> {
        if self.engine != Engine::On {
            return Decision::Allow;
        }
        self.detect(req)
    }

    /// What the rules would decide if `SecRuleEngine` were `On` (for logging in `DetectionOnly`).
    pub fn detect(&self, req: &RequestView<'_>) -> Decision<'_> {
        if self.engine == Engine::Off || self.matcher.rules.is_empty() {
            return Decision::Allow;
        }
        let hit = SCRATCH.with(|s| match s.try_borrow_mut() {
            Ok(mut s) => self.matcher.evaluate(req, &mut s),
            Err(_) => self.matcher.evaluate(req, &mut Scratch::default()),
        });
        match hit {
            None => Decision::Allow,
            Some(h) => {
                let r = &self.matcher.rules[h.rule as usize];
                Decision::Deny {
                    status: h.status,
                    rule_id: r.id,
                    msg: r.msg.as_deref(),
                }
            }
        }
    }

    /// The `SecRuleEngine` mode of the loaded configuration.
    pub fn engine(&self) -> Engine {
        self.engine
    }

    /// Number of rules loaded (a chain counts once).
    pub fn rule_count(&self) -> usize {
        self.matcher.rules.len()
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
