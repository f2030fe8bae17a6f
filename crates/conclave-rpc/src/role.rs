//! The roles of a conclave: what a certificate says its holder is.
//!
//! One type for certificate issuance (`pki`), for every server's admission
//! check (`PeerInfo::require_role`) and for clients' server-name checks, so
//! no role is ever spelled as a string literal elsewhere.

use rustls_pki_types::ServerName;
use std::fmt;
use std::str::FromStr;

/// A process's role, named by the DNS subject alternative name of its
/// certificate and by its file names in a `conclave certs` directory.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    /// The file server (nextfs).
    FileServer,
    /// A memory server (smdish, smuf).
    MemServer,
    /// The key server (keyless TLS signing).
    KeyServer,
    /// The HTTPS edge, a client of every kernel server.
    Edge,
    /// Tools and tests: a client with no server role.
    Client,
}

impl Role {
    /// Every role, in the order `conclave certs` issues them.
    pub const ALL: [Role; 5] = [
        Role::FileServer,
        Role::MemServer,
        Role::KeyServer,
        Role::Edge,
        Role::Client,
    ];

    /// The name in certificates and file names (`fileserver`, `edge`, ...).
    pub const fn as_str(self) -> &'static str {
        match self {
            Role::FileServer => "fileserver",
            Role::MemServer => "memserver",
            Role::KeyServer => "keyserver",
            Role::Edge => "edge",
            Role::Client => "client",
        }
    }

    /// The name a client expects in the certificate of a server of this role.
    pub fn server_name(self) -> ServerName<'static> {
        ServerName::try_from(self.as_str()).expect("every role name is a valid DNS name")
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A name that is not one of the conclave's roles.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown role {0:?} (expected one of fileserver, memserver, keyserver, edge, client)")]
pub struct UnknownRole(pub String);

impl FromStr for Role {
    type Err = UnknownRole;
    fn from_str(s: &str) -> Result<Self, UnknownRole> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| UnknownRole(s.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_role_round_trips_through_its_name() {
        for r in Role::ALL {
            assert_eq!(r.as_str().parse::<Role>(), Ok(r));
            assert_eq!(r.server_name().to_str(), r.as_str());
        }
        assert_eq!("root".parse::<Role>(), Err(UnknownRole("root".into())));
    }
}
