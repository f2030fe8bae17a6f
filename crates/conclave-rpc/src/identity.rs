//! Who a peer is: a role and a tenant, both named by its certificate.
//!
//! A conclave may serve several tenants (customers) on the same kernel
//! servers. Every server admits a peer by its role (one rule, in
//! `server.rs`), then applies its own grants by role *and* tenant: memory
//! file names live in their opener's tenant namespace, file-server paths and
//! signing keys are granted per identity. The tenant is carried in the
//! certificate as a URI subject alternative name in SPIFFE form,
//! `spiffe://conclave/tenant/<tenant>/role/<role>`, next to the DNS name of
//! the role (which clients check as the server name). A certificate from the
//! conclave's CA without such a URI belongs to the tenant `default`.

use crate::role::Role;
use std::fmt;
use std::str::FromStr;

/// The trust domain of SPIFFE identities issued by `conclave certs`.
pub const SPIFFE_PREFIX: &str = "spiffe://conclave/tenant/";

/// A tenant's name: a DNS label (1 to 63 of `a-z`, `0-9`, `-`, not starting
/// or ending with `-`), so it is safe in file names, URIs and logs.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tenant(String);

/// A tenant name that is not a DNS label.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("bad tenant name {0:?}: expected 1 to 63 of a-z, 0-9 and '-', not starting or ending with '-'")]
pub struct BadTenant(pub String);

impl Tenant {
    /// The tenant of certificates that name none.
    pub const DEFAULT: &'static str = "default";

    /// The tenant `default`.
    pub fn default_tenant() -> Tenant {
        Tenant(Self::DEFAULT.to_string())
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for Tenant {
    fn default() -> Self {
        Tenant::default_tenant()
    }
}

impl FromStr for Tenant {
    type Err = BadTenant;
    fn from_str(s: &str) -> Result<Self, BadTenant> {
        let ok = !s.is_empty()
            && s.len() <= 63
            && !s.starts_with('-')
            && !s.ends_with('-')
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if ok {
            Ok(Tenant(s.to_string()))
        } else {
            Err(BadTenant(s.to_string()))
        }
    }
}

impl fmt::Display for Tenant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A process identity: what it is and whose it is.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Identity {
    /// What the process is.
    pub role: Role,
    /// Whose it is.
    pub tenant: Tenant,
}

impl Identity {
    /// An identity of `role` in `tenant`.
    pub fn new(role: Role, tenant: Tenant) -> Identity {
        Identity { role, tenant }
    }

    /// The SPIFFE URI that names this identity in its certificate.
    pub fn spiffe_uri(&self) -> String {
        format!("{SPIFFE_PREFIX}{}/role/{}", self.tenant, self.role)
    }

    /// Parses a SPIFFE URI written by [`Identity::spiffe_uri`]; `None` for
    /// any other URI.
    pub fn from_spiffe_uri(uri: &str) -> Option<Identity> {
        let rest = uri.strip_prefix(SPIFFE_PREFIX)?;
        let (tenant, role) = rest.split_once("/role/")?;
        Some(Identity {
            role: role.parse().ok()?,
            tenant: tenant.parse().ok()?,
        })
    }
}

/// `role@tenant`, the form used in logs, grants and error messages.
impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.role, self.tenant)
    }
}

/// A string that is not `role` or `role@tenant`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BadIdentity {
    /// The role part.
    #[error(transparent)]
    Role(#[from] crate::role::UnknownRole),
    /// The tenant part.
    #[error(transparent)]
    Tenant(#[from] BadTenant),
}

/// `role` (tenant `default`) or `role@tenant`.
impl FromStr for Identity {
    type Err = BadIdentity;
    fn from_str(s: &str) -> Result<Self, BadIdentity> {
        let (role, tenant) = match s.split_once('@') {
            Some((r, t)) => (r, t.parse()?),
            None => (s, Tenant::default()),
        };
        Ok(Identity {
            role: role.parse()?,
            tenant,
        })
    }
}

/// Which tenants a grant applies to (grants of the file, memory and key
/// servers all name identities this way).
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
    /// Exactly `id`.
    pub fn exact(id: Identity) -> IdentityPattern {
        IdentityPattern {
            role: id.role,
            tenant: TenantPattern::Exact(id.tenant),
        }
    }

    /// `role@*`: the role in every tenant.
    pub fn any_tenant(role: Role) -> IdentityPattern {
        IdentityPattern {
            role,
            tenant: TenantPattern::Any,
        }
    }

    /// True when the pattern names one tenant (it then wins over `role@*`
    /// where both match).
    pub fn names_tenant(&self) -> bool {
        matches!(self.tenant, TenantPattern::Exact(_))
    }

    /// True if `id` is one of the identities this pattern names.
    pub fn matches(&self, id: &Identity) -> bool {
        self.role == id.role
            && match &self.tenant {
                TenantPattern::Any => true,
                TenantPattern::Exact(t) => *t == id.tenant,
            }
    }
}

/// `role@tenant` or `role@*`; `role` alone for the tenant `default`, the
/// way it is written.
impl fmt::Display for IdentityPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.tenant {
            TenantPattern::Any => write!(f, "{}@*", self.role),
            TenantPattern::Exact(t) if t.as_str() == Tenant::DEFAULT => write!(f, "{}", self.role),
            TenantPattern::Exact(t) => write!(f, "{}@{t}", self.role),
        }
    }
}

impl FromStr for IdentityPattern {
    type Err = BadIdentity;
    fn from_str(s: &str) -> Result<Self, BadIdentity> {
        if let Some(role) = s.strip_suffix("@*") {
            return Ok(IdentityPattern {
                role: role.parse()?,
                tenant: TenantPattern::Any,
            });
        }
        let id: Identity = s.parse()?;
        Ok(IdentityPattern {
            role: id.role,
            tenant: TenantPattern::Exact(id.tenant),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_names_are_dns_labels() {
        for ok in ["a", "default", "tenant-1", "x9"] {
            assert_eq!(ok.parse::<Tenant>().unwrap().as_str(), ok);
        }
        for bad in ["", "-a", "a-", "A", "a_b", "a.b", "a/b", &"x".repeat(64)] {
            assert_eq!(bad.parse::<Tenant>(), Err(BadTenant(bad.to_string())));
        }
    }

    #[test]
    fn identities_round_trip_through_uri_and_text() {
        let id = Identity::new(Role::Edge, "acme".parse().unwrap());
        assert_eq!(id.spiffe_uri(), "spiffe://conclave/tenant/acme/role/edge");
        assert_eq!(Identity::from_spiffe_uri(&id.spiffe_uri()), Some(id.clone()));
        assert_eq!(id.to_string(), "edge@acme");
        assert_eq!("edge@acme".parse::<Identity>(), Ok(id));
        assert_eq!(
            "client".parse::<Identity>(),
            Ok(Identity::new(Role::Client, Tenant::default()))
        );
        assert!(Identity::from_spiffe_uri("spiffe://other/tenant/a/role/edge").is_none());
        assert!(Identity::from_spiffe_uri("spiffe://conclave/tenant/a/role/root").is_none());
        assert!(Identity::from_spiffe_uri("spiffe://conclave/tenant/A/role/edge").is_none());
    }

    #[test]
    fn patterns_name_one_tenant_or_all() {
        let acme = Identity::new(Role::Edge, "acme".parse().unwrap());
        let any: IdentityPattern = "edge@*".parse().unwrap();
        assert!(any.matches(&acme) && any.to_string() == "edge@*");
        let one: IdentityPattern = "edge".parse().unwrap();
        assert!(!one.matches(&acme) && one.to_string() == "edge");
        assert!("edge@acme".parse::<IdentityPattern>().unwrap().matches(&acme));
        assert!("root@*".parse::<IdentityPattern>().is_err());
    }
}
