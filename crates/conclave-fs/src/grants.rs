//! Who may do what where in the file server: grants of `ro` or `rw` per
//! identity (role and tenant) and path, e.g. `edge:ro:/html` and
//! `edge:rw:/cache`.
//!
//! A stolen identity should yield only what that identity needs: the edge
//! reads its content and writes its cache, so it must not be able to
//! truncate `/html/index.html` (issue 15). Everything not granted is
//! denied with `EACCES`; with no grants at all, every TLS peer is denied.
//! A path is covered by a grant when the grant's path is a component
//! prefix of it (`/cache` covers `/cache/x`, not `/cachex`); when several
//! grants cover it, the longest path wins (so `rw:/` with `ro:/html` makes
//! `/html` read-only), and at equal length a grant naming the tenant wins
//! over `role@*`.

use conclave_rpc::{Identity, Role, Tenant};
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// What a grant allows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Access {
    /// Open for reading, stat, list, read links.
    ReadOnly,
    /// Everything: create, write, truncate, unlink, rename, chmod...
    ReadWrite,
}

impl Access {
    fn as_str(self) -> &'static str {
        match self {
            Access::ReadOnly => "ro",
            Access::ReadWrite => "rw",
        }
    }
}

/// The identities a grant is for: one role in one tenant, or in any (`role@*`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grantee {
    /// The role.
    pub role: Role,
    /// The tenant; `None` for every tenant.
    pub tenant: Option<Tenant>,
}

impl Grantee {
    fn matches(&self, id: &Identity) -> bool {
        self.role == id.role && self.tenant.as_ref().is_none_or(|t| *t == id.tenant)
    }
}

impl fmt::Display for Grantee {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.tenant {
            None => write!(f, "{}@*", self.role),
            Some(t) if t.as_str() == Tenant::DEFAULT => write!(f, "{}", self.role),
            Some(t) => write!(f, "{}@{t}", self.role),
        }
    }
}

/// One grant: `IDENTITY:MODE:PATH`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grant {
    /// Who.
    pub who: Grantee,
    /// What.
    pub access: Access,
    /// Where: an absolute, normalised path (`/` covers everything).
    pub path: String,
}

/// A grant that does not parse, with the reason.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("bad grant {text:?}: {reason} (expected IDENTITY:ro|rw:/PATH, e.g. edge:rw:/cache)")]
pub struct BadGrant {
    /// The text.
    pub text: String,
    /// What is wrong with it.
    pub reason: String,
}

/// Why a grants file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum GrantsFileError {
    /// It could not be read.
    #[error("cannot read grants file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// A line is not a grant.
    #[error("{path}:{line}: {error}")]
    Line {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// The grant's error.
        error: BadGrant,
    },
}

impl FromStr for Grant {
    type Err = BadGrant;
    fn from_str(s: &str) -> Result<Grant, BadGrant> {
        let bad = |reason: String| BadGrant {
            text: s.to_string(),
            reason,
        };
        let mut parts = s.splitn(3, ':');
        let (Some(who), Some(mode), Some(path)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(bad("needs three parts separated by ':'".into()));
        };
        let who = match who.split_once('@') {
            Some((r, "*")) => Grantee {
                role: r
                    .parse()
                    .map_err(|e: conclave_rpc::role::UnknownRole| bad(e.to_string()))?,
                tenant: None,
            },
            _ => {
                let id: Identity = who
                    .parse()
                    .map_err(|e: conclave_rpc::identity::BadIdentity| bad(e.to_string()))?;
                Grantee {
                    role: id.role,
                    tenant: Some(id.tenant),
                }
            }
        };
        let access = match mode {
            "ro" => Access::ReadOnly,
            "rw" => Access::ReadWrite,
            m => return Err(bad(format!("mode {m:?} is not ro or rw"))),
        };
        if !path.starts_with('/') {
            return Err(bad("the path must be absolute".into()));
        }
        let path = crate::server::normalize_path(path).map_err(|st| bad(format!("bad path ({st})")))?;
        Ok(Grant { who, access, path })
    }
}

impl fmt::Display for Grant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.who, self.access.as_str(), self.path)
    }
}

/// Whether `path` is `prefix` or below it, by whole components.
pub fn covers(prefix: &str, path: &str) -> bool {
    prefix == "/"
        || path == prefix
        || (path.starts_with(prefix) && path.as_bytes().get(prefix.len()) == Some(&b'/'))
}

/// Reads a grants file: one grant per line; blank lines and `#` comments
/// are skipped.
pub fn read_grants_file(path: &Path) -> Result<Vec<Grant>, GrantsFileError> {
    let text = std::fs::read_to_string(path).map_err(|source| GrantsFileError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse_grants(&text).map_err(|(line, error)| GrantsFileError::Line {
        path: path.to_path_buf(),
        line,
        error,
    })
}

/// Parses grants text (see [`read_grants_file`]); errors carry a 1-based line.
pub fn parse_grants(text: &str) -> Result<Vec<Grant>, (usize, BadGrant)> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if !line.is_empty() {
            out.push(line.parse().map_err(|e| (i + 1, e))?);
        }
    }
    Ok(out)
}

/// The grants a file server enforces.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Grants {
    grants: Vec<Grant>,
}

impl Grants {
    /// Enforces `grants` (none: everything denied).
    pub fn new(grants: Vec<Grant>) -> Grants {
        Grants { grants }
    }

    /// Whether there are none (every TLS peer is denied).
    pub fn is_empty(&self) -> bool {
        self.grants.is_empty()
    }

    /// The grants.
    pub fn iter(&self) -> impl Iterator<Item = &Grant> {
        self.grants.iter()
    }

    /// What `id` may do at `path` (normalised): the most specific grant
    /// that covers it, or `None` (denied).
    pub fn access(&self, id: &Identity, path: &str) -> Option<Access> {
        self.grants
            .iter()
            .filter(|g| g.who.matches(id) && covers(&g.path, path))
            .max_by_key(|g| (g.path.len(), g.who.tenant.is_some()))
            .map(|g| g.access)
    }

    /// Whether `path` is a strict ancestor of a path granted to `id`: such
    /// a directory may be stat'ed and "created" when it exists (EEXIST), so
    /// a client can walk and `mkdir -p` down to what it was granted.
    pub fn is_ancestor_of_grant(&self, id: &Identity, path: &str) -> bool {
        self.grants
            .iter()
            .any(|g| g.who.matches(id) && g.path != path && covers(path, &g.path))
    }

    /// Whether `id` holds any grant.
    pub fn has_any(&self, id: &Identity) -> bool {
        self.grants.iter().any(|g| g.who.matches(id))
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
        for text in [
            "edge:ro:/html",
            "edge@acme:rw:/cache",
            "client@*:ro:/",
            "edge:rw:/a:b",
        ] {
            let g: Grant = text.parse().unwrap();
            assert_eq!(g.to_string(), text);
        }
        let g: Grant = "edge@default:rw:/cache/./x/".parse().unwrap();
        assert_eq!(g.to_string(), "edge:rw:/cache/x");
        for bad in [
            "edge:ro",
            "root:ro:/x",
            "edge:rx:/x",
            "edge:ro:x",
            "edge@A:ro:/x",
            "edge:ro:/../x",
        ] {
            assert!(bad.parse::<Grant>().is_err(), "{bad}");
        }
        let e = "edge:wr:/x".parse::<Grant>().unwrap_err().to_string();
        assert!(e.contains("\"wr\" is not ro or rw"), "{e}");
    }

    #[test]
    fn the_longest_matching_grant_wins_by_whole_components() {
        let g = Grants::new(
            parse_grants("# edge\nedge:ro:/html\nedge:rw:/cache\n\nedge:rw:/\nedge:ro:/html/fixed # pinned\nclient@acme:ro:/pub\n")
                .unwrap(),
        );
        let edge = id("edge");
        assert_eq!(g.access(&edge, "/html/index.html"), Some(Access::ReadOnly));
        assert_eq!(g.access(&edge, "/cache/x"), Some(Access::ReadWrite));
        assert_eq!(
            g.access(&edge, "/cachex"),
            Some(Access::ReadWrite),
            "from edge:rw:/"
        );
        let only = Grants::new(parse_grants("edge:rw:/cache").unwrap());
        assert_eq!(only.access(&edge, "/cachex"), None);
        assert_eq!(only.access(&edge, "/"), None);
        assert!(only.is_ancestor_of_grant(&edge, "/"));
        assert!(!only.is_ancestor_of_grant(&edge, "/cache"));
        assert_eq!(g.access(&id("client@acme"), "/pub/a"), Some(Access::ReadOnly));
        assert_eq!(g.access(&id("client"), "/pub/a"), None);
        assert_eq!(
            g.access(&id("edge@acme"), "/html"),
            None,
            "edge means edge@default"
        );
        let any = Grants::new(parse_grants("edge@*:ro:/html\nedge@acme:rw:/html").unwrap());
        assert_eq!(any.access(&id("edge@beta"), "/html/a"), Some(Access::ReadOnly));
        assert_eq!(any.access(&id("edge@acme"), "/html/a"), Some(Access::ReadWrite));
        assert_eq!(parse_grants("edge:ro:/x\nnope").unwrap_err().0, 2);
    }
}
