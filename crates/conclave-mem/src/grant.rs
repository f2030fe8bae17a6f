//! Who may use which memory files: the grants of a memory server
//! (`--grant IDENTITY:MODE:NAME`).
//!
//! Names are per tenant (a name always means the opener's tenant's memory
//! file, see [`crate::server`]); grants say which roles of a tenant may read
//! or write which of its names. No matching grant means `EACCES` at OPEN, so
//! a stolen `client` certificate reaches nothing it was not granted.

use conclave_rpc::{Identity, Role, Tenant};
use std::fmt;
use std::str::FromStr;

/// Memory files only the `edge` role may open, whatever the grants: the TLS
/// ticket keys decrypt every session ticket the edge issued.
pub const EDGE_ONLY_NAMES: [&str; 1] = ["TLS_TICKET_KEYS"];

/// What a grant allows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Mode {
    /// OPEN, PEEK, LOCK and UNLOCK without publishing (a reader; it still
    /// holds the lock while it reads).
    Ro,
    /// Everything, publishing included.
    Rw,
}

impl Mode {
    /// The name in a grant.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Ro => "ro",
            Mode::Rw => "rw",
        }
    }
}

/// Whose a grant is: one role, in one tenant or in every tenant (`role@*`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Grantee {
    /// The role.
    pub role: Role,
    /// The tenant; `None` for every tenant (each in its own namespace).
    pub tenant: Option<Tenant>,
}

impl Grantee {
    fn covers(&self, id: &Identity) -> bool {
        self.role == id.role && self.tenant.as_ref().is_none_or(|t| *t == id.tenant)
    }
}

/// Which names a grant covers: one name, or every name that starts with a
/// prefix (written `PREFIX*`; `*` alone is every name).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum NamePattern {
    /// Exactly this name.
    Exact(String),
    /// Every name starting with this.
    Prefix(String),
}

impl NamePattern {
    /// How specifically the pattern covers `name`: `None` if it does not;
    /// otherwise longer prefixes are more specific, and an exact name most.
    fn specificity(&self, name: &str) -> Option<usize> {
        match self {
            NamePattern::Exact(n) => (n == name).then_some(usize::MAX),
            NamePattern::Prefix(p) => name.starts_with(p.as_str()).then_some(p.len()),
        }
    }
}

/// One `IDENTITY:MODE:NAME` grant.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct MemGrant {
    /// Whose.
    pub grantee: Grantee,
    /// What it allows.
    pub mode: Mode,
    /// On which names.
    pub name: NamePattern,
}

/// A grant that does not parse.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BadGrant {
    /// Not three `:`-separated parts.
    #[error("bad grant {0:?}: expected IDENTITY:MODE:NAME, e.g. edge@*:rw:* or client:ro:stats")]
    Shape(String),
    /// The identity part.
    #[error("bad grant {grant:?}: {source}")]
    Identity {
        /// The grant.
        grant: String,
        /// Why.
        #[source]
        source: conclave_rpc::identity::BadIdentity,
    },
    /// The mode part.
    #[error("bad grant {0:?}: the mode must be ro or rw")]
    Mode(String),
    /// The name part.
    #[error(
        "bad grant {0:?}: the name is empty, has a NUL, a '*' other than at its end, or is over 255 bytes"
    )]
    Name(String),
}

impl FromStr for MemGrant {
    type Err = BadGrant;
    fn from_str(s: &str) -> Result<Self, BadGrant> {
        // Names may contain ':', identities and modes never do.
        let mut parts = s.splitn(3, ':');
        let (Some(who), Some(mode), Some(name)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(BadGrant::Shape(s.to_string()));
        };
        let grantee = match who.strip_suffix("@*") {
            Some(role) => Grantee {
                role: role
                    .parse()
                    .map_err(|e: conclave_rpc::role::UnknownRole| BadGrant::Identity {
                        grant: s.to_string(),
                        source: e.into(),
                    })?,
                tenant: None,
            },
            None => {
                let id: Identity = who.parse().map_err(|source| BadGrant::Identity {
                    grant: s.to_string(),
                    source,
                })?;
                Grantee {
                    role: id.role,
                    tenant: Some(id.tenant),
                }
            }
        };
        let mode = match mode {
            "ro" => Mode::Ro,
            "rw" => Mode::Rw,
            _ => return Err(BadGrant::Mode(s.to_string())),
        };
        let (body, prefix) = match name.strip_suffix('*') {
            Some(p) => (p, true),
            None => (name, false),
        };
        if (!prefix && body.is_empty())
            || body.contains('*')
            || body.contains('\0')
            || body.len() > crate::MAX_NAME
        {
            return Err(BadGrant::Name(s.to_string()));
        }
        let name = if prefix {
            NamePattern::Prefix(body.to_string())
        } else {
            NamePattern::Exact(body.to_string())
        };
        Ok(MemGrant { grantee, mode, name })
    }
}

/// The text form, which parses back to the same grant.
impl fmt::Display for MemGrant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.grantee.tenant {
            Some(t) => write!(f, "{}@{t}", self.grantee.role)?,
            None => write!(f, "{}@*", self.grantee.role)?,
        }
        write!(f, ":{}:", self.mode.as_str())?;
        match &self.name {
            NamePattern::Exact(n) => f.write_str(n),
            NamePattern::Prefix(p) => write!(f, "{p}*"),
        }
    }
}

/// A memory server's grants.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemGrants(Vec<MemGrant>);

impl MemGrants {
    /// `grants`, or the default `edge@*:rw:*` when there are none (every
    /// tenant's edge owns its namespace; `client` gets nothing).
    pub fn new(grants: Vec<MemGrant>) -> MemGrants {
        if grants.is_empty() {
            Self::default()
        } else {
            MemGrants(grants)
        }
    }

    /// The grants, in the order given.
    pub fn as_slice(&self) -> &[MemGrant] {
        &self.0
    }

    /// What `id` may do with its tenant's memory file `name`: the mode of
    /// the most specific grant covering both (an exact name beats a longer
    /// prefix, which beats a shorter one; then a named tenant beats `@*`;
    /// then `rw` beats `ro`), `None` for nothing. [`EDGE_ONLY_NAMES`] are
    /// `None` for every other role.
    pub fn mode_for(&self, id: &Identity, name: &str) -> Option<Mode> {
        if id.role != Role::Edge && EDGE_ONLY_NAMES.contains(&name) {
            return None;
        }
        self.0
            .iter()
            .filter(|g| g.grantee.covers(id))
            .filter_map(|g| {
                let spec = g.name.specificity(name)?;
                Some(((spec, g.grantee.tenant.is_some(), g.mode), g.mode))
            })
            .max_by_key(|(rank, _)| *rank)
            .map(|(_, mode)| mode)
    }
}

impl Default for MemGrants {
    fn default() -> Self {
        MemGrants(vec![MemGrant {
            grantee: Grantee {
                role: Role::Edge,
                tenant: None,
            },
            mode: Mode::Rw,
            name: NamePattern::Prefix(String::new()),
        }])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> Identity {
        s.parse().unwrap()
    }

    fn grants(list: &[&str]) -> MemGrants {
        MemGrants::new(list.iter().map(|g| g.parse().unwrap()).collect())
    }

    #[test]
    fn grants_round_trip_through_their_text() {
        for g in [
            "edge@*:rw:*",
            "client@default:ro:stats",
            "client@acme:rw:zone-*",
            "edge@b:ro:a:b:c",
        ] {
            assert_eq!(g.parse::<MemGrant>().unwrap().to_string(), g);
        }
        assert_eq!(
            "client:ro:x".parse::<MemGrant>().unwrap().to_string(),
            "client@default:ro:x"
        );
        let g: MemGrant = "edge@b:ro:a:b:c".parse().unwrap();
        assert_eq!(g.name, NamePattern::Exact("a:b:c".into()));
    }

    #[test]
    fn rejects_malformed_grants() {
        for bad in [
            "edge",
            "edge:rw",
            "edge:rx:*",
            "root:rw:*",
            "edge@A:rw:*",
            "edge:rw:",
            "edge:rw:a*b",
            "edge:rw:a\0",
        ] {
            assert!(bad.parse::<MemGrant>().is_err(), "{bad:?}");
        }
        assert_eq!(
            "edge:rw".parse::<MemGrant>(),
            Err(BadGrant::Shape("edge:rw".into()))
        );
        assert_eq!(
            "edge:rx:*".parse::<MemGrant>(),
            Err(BadGrant::Mode("edge:rx:*".into()))
        );
    }

    #[test]
    fn default_grants_every_tenants_edge_and_no_client() {
        let g = MemGrants::new(Vec::new());
        assert_eq!(g.as_slice().len(), 1);
        assert_eq!(g.as_slice()[0].to_string(), "edge@*:rw:*");
        assert_eq!(g.mode_for(&id("edge"), "TLS_TICKET_KEYS"), Some(Mode::Rw));
        assert_eq!(g.mode_for(&id("edge@acme"), "zone"), Some(Mode::Rw));
        assert_eq!(g.mode_for(&id("client"), "zone"), None);
        assert_eq!(g.mode_for(&id("fileserver"), "zone"), None);
    }

    #[test]
    fn most_specific_grant_wins() {
        let g = grants(&[
            "client@*:rw:*",
            "client:ro:cfg-*",
            "client:rw:cfg-live",
            "client@acme:ro:*",
        ]);
        assert_eq!(g.mode_for(&id("client"), "x"), Some(Mode::Rw));
        assert_eq!(g.mode_for(&id("client"), "cfg-a"), Some(Mode::Ro));
        assert_eq!(g.mode_for(&id("client"), "cfg-live"), Some(Mode::Rw));
        // A named tenant beats `@*` at the same specificity.
        assert_eq!(g.mode_for(&id("client@acme"), "x"), Some(Mode::Ro));
        assert_eq!(g.mode_for(&id("client@other"), "x"), Some(Mode::Rw));
        assert_eq!(g.mode_for(&id("edge"), "x"), None);
    }

    #[test]
    fn ticket_keys_are_the_edges_alone_whatever_the_grants() {
        let g = grants(&["client@*:rw:*", "client:rw:TLS_TICKET_KEYS"]);
        assert_eq!(g.mode_for(&id("client"), "TLS_TICKET_KEYS"), None);
        assert_eq!(g.mode_for(&id("client"), "TLS_TICKET_KEYS2"), Some(Mode::Rw));
        assert_eq!(
            g.mode_for(&id("edge"), "TLS_TICKET_KEYS"),
            None,
            "not granted to edge here"
        );
        let g = grants(&["edge@*:ro:*"]);
        assert_eq!(g.mode_for(&id("edge@b"), "TLS_TICKET_KEYS"), Some(Mode::Ro));
    }
}
