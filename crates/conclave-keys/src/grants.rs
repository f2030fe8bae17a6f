//! Key grants: which identities (role + tenant) may use which keys.
//!
//! The key server holds every tenant's site key; a grant list decides who
//! may see (`LIST_KEYS`, `GET_KEY`) and use (`SIGN`) each one, so a stolen
//! edge identity of tenant B signs nothing with tenant A's key. A grant is
//! written `IDENTITY:KEYNAME`: `edge@acme:acme-site`, `edge@*:shared`,
//! `edge:*` (`edge` alone means the tenant `default`; `*` as a key name
//! means every key). With no grant given the server grants `edge:*`, the
//! single-tenant deployment of before grants existed.

use crate::name::KeyName;
use conclave_rpc::{Identity, Role, Tenant};
use std::fmt;
use std::str::FromStr;

/// Which tenants a grant applies to.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum TenantPattern {
    /// One tenant.
    Exact(Tenant),
    /// Every tenant (`role@*`).
    Any,
}

/// Who a grant applies to: a role in one tenant or in every tenant.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct IdentityPattern {
    /// The role.
    pub role: Role,
    /// The tenant or tenants.
    pub tenant: TenantPattern,
}

impl IdentityPattern {
    /// True if `id` is one of the identities this pattern names.
    pub fn matches(&self, id: &Identity) -> bool {
        self.role == id.role
            && match &self.tenant {
                TenantPattern::Any => true,
                TenantPattern::Exact(t) => *t == id.tenant,
            }
    }
}

/// `role@tenant` or `role@*` (tenant `default` when written as `role`).
impl fmt::Display for IdentityPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.tenant {
            TenantPattern::Any => write!(f, "{}@*", self.role),
            TenantPattern::Exact(t) => write!(f, "{}@{t}", self.role),
        }
    }
}

impl FromStr for IdentityPattern {
    type Err = BadGrant;
    fn from_str(s: &str) -> Result<Self, BadGrant> {
        let bad = |reason: String| BadGrant {
            grant: s.to_string(),
            reason,
        };
        if let Some(role) = s.strip_suffix("@*") {
            let role = role.parse().map_err(|e| bad(format!("{e}")))?;
            return Ok(IdentityPattern {
                role,
                tenant: TenantPattern::Any,
            });
        }
        let id: Identity = s.parse().map_err(|e| bad(format!("{e}")))?;
        Ok(IdentityPattern {
            role: id.role,
            tenant: TenantPattern::Exact(id.tenant),
        })
    }
}

/// Which keys a grant covers.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum KeyPattern {
    /// One key, by exact name.
    Exact(KeyName),
    /// Every key the server holds (`*`).
    Any,
}

impl KeyPattern {
    /// True if key `name` is covered.
    pub fn matches(&self, name: &str) -> bool {
        match self {
            KeyPattern::Any => true,
            KeyPattern::Exact(k) => k.as_str() == name,
        }
    }
}

impl fmt::Display for KeyPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyPattern::Any => f.write_str("*"),
            KeyPattern::Exact(k) => f.write_str(k.as_str()),
        }
    }
}

/// One grant: `who` may list, describe and sign with `key`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct KeyGrant {
    /// The identities granted.
    pub who: IdentityPattern,
    /// The keys granted.
    pub key: KeyPattern,
}

/// A grant that does not parse; says which and why.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("bad key grant {grant:?} (expected IDENTITY:KEYNAME, e.g. edge@acme:acme or edge@*:*): {reason}")]
pub struct BadGrant {
    /// The text given.
    pub grant: String,
    /// What is wrong with it.
    pub reason: String,
}

/// `IDENTITY:KEYNAME`; key names never hold `:`, identities never do either.
impl FromStr for KeyGrant {
    type Err = BadGrant;
    fn from_str(s: &str) -> Result<Self, BadGrant> {
        let bad = |reason: String| BadGrant {
            grant: s.to_string(),
            reason,
        };
        let (who, key) = s
            .split_once(':')
            .ok_or_else(|| bad("no ':' between the identity and the key name".into()))?;
        let who = who.parse::<IdentityPattern>().map_err(|e| bad(e.reason))?;
        let key = if key == "*" {
            KeyPattern::Any
        } else {
            KeyPattern::Exact(KeyName::new(key).map_err(|e| bad(e.to_string()))?)
        };
        Ok(KeyGrant { who, key })
    }
}

/// Written back so it parses to the same grant (`edge@default:*`).
impl fmt::Display for KeyGrant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.who, self.key)
    }
}

/// The grant list a key server enforces.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyGrants {
    grants: Vec<KeyGrant>,
}

/// The grant when none is configured: the `edge` identity of the tenant
/// `default` may use every key.
pub const DEFAULT_GRANT: &str = "edge:*";

impl KeyGrants {
    /// The given grants, or [`DEFAULT_GRANT`] when the list is empty (an
    /// empty list would refuse everyone, which no deployment means).
    pub fn new(grants: Vec<KeyGrant>) -> KeyGrants {
        if grants.is_empty() {
            return KeyGrants::default();
        }
        KeyGrants { grants }
    }

    /// True if `id` may use key `name`.
    pub fn allows(&self, id: &Identity, name: &str) -> bool {
        self.grants
            .iter()
            .any(|g| g.who.matches(id) && g.key.matches(name))
    }

    /// True if `id` is named by some grant: others are refused at connect.
    pub fn admits(&self, id: &Identity) -> bool {
        self.grants.iter().any(|g| g.who.matches(id))
    }

    /// The grants, in the order given.
    pub fn iter(&self) -> impl Iterator<Item = &KeyGrant> {
        self.grants.iter()
    }
}

impl Default for KeyGrants {
    fn default() -> Self {
        KeyGrants {
            grants: vec![KeyGrant {
                who: IdentityPattern {
                    role: Role::Edge,
                    tenant: TenantPattern::Exact(Tenant::default()),
                },
                key: KeyPattern::Any,
            }],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> Identity {
        s.parse().unwrap()
    }

    #[test]
    fn grants_parse_and_print_back() {
        for (text, printed) in [
            ("edge:*", "edge@default:*"),
            ("edge@acme:acme-site", "edge@acme:acme-site"),
            ("edge@*:shared", "edge@*:shared"),
            ("client@b:*", "client@b:*"),
        ] {
            let g: KeyGrant = text.parse().unwrap();
            assert_eq!(g.to_string(), printed);
            assert_eq!(printed.parse::<KeyGrant>().unwrap(), g);
        }
    }

    #[test]
    fn refuses_malformed_grants_naming_them() {
        for bad in [
            "",
            "edge",
            "edge:",
            ":server",
            "root:server",
            "edge@Acme:server",
            "edge@a:../server",
            "edge@a:a/b",
            "edge@a:x:y",
            "edge@**:x",
        ] {
            let err = bad.parse::<KeyGrant>().unwrap_err();
            assert_eq!(err.grant, bad);
            assert!(err.to_string().contains("IDENTITY:KEYNAME"), "{err}");
        }
    }

    #[test]
    fn a_grant_covers_its_tenant_only_unless_it_says_any() {
        let g = KeyGrants::new(vec![
            "edge@a:site-a".parse().unwrap(),
            "edge@*:shared".parse().unwrap(),
        ]);
        assert!(g.allows(&id("edge@a"), "site-a"));
        assert!(!g.allows(&id("edge@b"), "site-a"));
        assert!(!g.allows(&id("client@a"), "site-a"));
        assert!(g.allows(&id("edge@b"), "shared"));
        assert!(g.allows(&id("edge"), "shared"));
        assert!(!g.allows(&id("edge@a"), "site-b"));
        assert!(g.admits(&id("edge@z")));
        assert!(!g.admits(&id("client@a")));
    }

    #[test]
    fn no_grant_means_the_default_tenant_edge_uses_every_key() {
        let g = KeyGrants::new(Vec::new());
        assert_eq!(g, KeyGrants::default());
        assert_eq!(
            g.iter().collect::<Vec<_>>(),
            [&DEFAULT_GRANT.parse::<KeyGrant>().unwrap()]
        );
        assert!(g.allows(&id("edge"), "anything"));
        assert!(!g.allows(&id("edge@acme"), "anything"));
        assert!(!g.admits(&id("client")));
        assert!(!g.admits(&id("fileserver")));
    }
}
