//! Several sites on one address, told apart by SNI (NGINX name-based
//! virtual servers): the ClientHello is read first, then the handshake goes
//! on with the TLS configuration (certificates, protocols, ciphers) of the
//! site its `server_name` names.
//!
//! Choice, as NGINX: an exact name, else the longest `*.domain` wildcard
//! that matches, else the address's default site (`default_server`, or the
//! first). The `Host` of each request is chosen among the same sites; when it
//! picks another site than the connection's SNI did, the request gets 421
//! (a client reusing a connection for another name that resolves to the
//! same address would otherwise get a site under the wrong certificate).

use crate::site::Site;
use rustls::server::{Acceptor, ServerConfig};
use std::io;
use std::sync::Arc;
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tokio_rustls::LazyConfigAcceptor;

/// Host names of a site: exact (`a.example`) or wildcard (`*.example`, any
/// name under `example`), lower case.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServerNames(Vec<String>);

/// How well a name matched: exact beats any wildcard, a longer wildcard a shorter one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Match {
    Wildcard(usize),
    Exact,
}

impl ServerNames {
    /// Names as validated (`server_name`, lower case).
    pub fn new(names: Vec<String>) -> ServerNames {
        ServerNames(names)
    }

    /// The best match of `host` (any case, no port) among these names.
    fn best(&self, host: &str) -> Option<Match> {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        self.0
            .iter()
            .filter_map(|n| match n.strip_prefix("*.") {
                None => (*n == host).then_some(Match::Exact),
                Some(domain) => {
                    let under = host.len() > domain.len() + 1
                        && host.ends_with(domain)
                        && host.as_bytes()[host.len() - domain.len() - 1] == b'.';
                    under.then_some(Match::Wildcard(domain.len()))
                }
            })
            .max()
    }

    /// Whether `host` (any case, no port) is one of these names.
    pub fn matches(&self, host: &str) -> bool {
        self.best(host).is_some()
    }
}

/// Where the signing step of a keyless site's handshakes runs
/// (`keyless_handshake`).
#[derive(Clone, Debug)]
pub enum KeylessStep {
    /// On a coroutine of the runtime thread, the signature awaited
    /// ([`conclave_keys::fiber`]).
    Coroutine,
    /// On the worker's handshake threads ([`conclave_keys::HandshakeThreads`]).
    Threads(Arc<conclave_keys::HandshakeThreads>),
}

/// One site of an address: its TLS configuration and what it serves.
struct Route {
    config: Arc<ServerConfig>,
    site: Arc<Site>,
    keyless: Option<KeylessStep>,
}

/// The names of every site of one address, in order, and the default.
#[derive(Clone, Debug, Default)]
struct NameTable {
    names: Vec<ServerNames>,
    default: usize,
}

impl NameTable {
    /// The site `host` (SNI or `Host`, any case, no port) chooses.
    fn choose(&self, host: Option<&str>) -> usize {
        host.and_then(|h| {
            self.names
                .iter()
                .enumerate()
                .filter_map(|(i, n)| n.best(h).map(|m| (m, std::cmp::Reverse(i))))
                .max()
        })
        .map_or(self.default, |(_, std::cmp::Reverse(i))| i)
    }
}

/// The sites of one listening address, chosen per connection by SNI.
pub struct SniRouter {
    routes: Vec<Route>,
    table: Arc<NameTable>,
}

/// Whether a request's `Host` names the site its connection was routed to.
#[derive(Clone, Debug)]
pub struct HostCheck {
    table: Arc<NameTable>,
    route: usize,
}

impl HostCheck {
    /// True when `host` (any case, no port) chooses the connection's site
    /// among the address's sites, as its SNI did.
    pub fn allows(&self, host: &str) -> bool {
        self.table.choose(Some(host)) == self.route
    }
}

/// A connection after its handshake, with the site it was routed to.
pub struct Routed {
    /// The TLS stream.
    pub stream: TlsStream<TcpStream>,
    /// The site.
    pub site: Arc<Site>,
    /// The check of each request's `Host`, when the address has several sites.
    pub host_check: Option<HostCheck>,
}

impl Default for SniRouter {
    fn default() -> Self {
        SniRouter::new()
    }
}

impl SniRouter {
    /// No site yet.
    pub fn new() -> SniRouter {
        SniRouter {
            routes: Vec::new(),
            table: Arc::default(),
        }
    }

    /// Adds a site; `default` makes it the one for unknown names (else the first is).
    /// `keyless`: for a site with a keyless certificate, where the signing
    /// step of its handshakes runs.
    pub fn add(
        &mut self,
        names: ServerNames,
        config: Arc<ServerConfig>,
        site: Arc<Site>,
        default: bool,
        keyless: Option<KeylessStep>,
    ) {
        // Built before any connection holds the table: no copy is made.
        let table = Arc::make_mut(&mut self.table);
        if default {
            table.default = self.routes.len();
        }
        table.names.push(names);
        self.routes.push(Route {
            config,
            site,
            keyless,
        });
    }

    /// The default site (the one plain connections would get).
    pub fn default_site(&self) -> Option<Arc<Site>> {
        self.routes.get(self.table.default).map(|r| r.site.clone())
    }

    /// Reads the ClientHello of `tcp`, picks the site its SNI names, and
    /// completes the handshake with that site's configuration.
    pub async fn accept(&self, tcp: TcpStream) -> io::Result<Routed> {
        let start = LazyConfigAcceptor::new(Acceptor::default(), tcp).await?;
        let i = self.table.choose(start.client_hello().server_name());
        let route = self
            .routes
            .get(i)
            .ok_or_else(|| io::Error::other("no site on this address"))?;
        // A keyless site's signing step must not block the runtime thread.
        let stream = match &route.keyless {
            Some(KeylessStep::Coroutine) => conclave_keys::fiber::finish(start, route.config.clone()).await?,
            Some(KeylessStep::Threads(t)) => t.finish(start, route.config.clone()).await?,
            None => start.into_stream(route.config.clone()).await?,
        };
        Ok(Routed {
            stream,
            site: route.site.clone(),
            host_check: (self.routes.len() > 1).then(|| HostCheck {
                table: self.table.clone(),
                route: i,
            }),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: &[&str]) -> ServerNames {
        ServerNames::new(n.iter().map(|s| s.to_string()).collect())
    }

    #[test]
    fn exact_names_beat_wildcards_and_longer_wildcards_beat_shorter() {
        let n = names(&["a.example", "*.example", "*.b.example"]);
        assert_eq!(n.best("A.Example."), Some(Match::Exact));
        assert_eq!(n.best("x.example"), Some(Match::Wildcard(7)));
        assert_eq!(n.best("x.b.example"), Some(Match::Wildcard(9)));
        assert_eq!(n.best("example"), None);
        assert_eq!(n.best("xexample"), None);
        assert!(!n.matches("a.example.org"));
    }

    #[test]
    fn a_host_is_allowed_when_it_chooses_the_connections_site() {
        let table = Arc::new(NameTable {
            names: vec![names(&["a.example"]), names(&["*.b.example"])],
            default: 1,
        });
        assert_eq!(table.choose(Some("a.example")), 0);
        assert_eq!(table.choose(Some("x.b.example")), 1);
        assert_eq!(table.choose(Some("unknown")), 1);
        assert_eq!(table.choose(None), 1);
        let on_a = HostCheck {
            table: table.clone(),
            route: 0,
        };
        assert!(on_a.allows("A.EXAMPLE"));
        assert!(!on_a.allows("x.b.example") && !on_a.allows("unknown"));
        let on_b = HostCheck { table, route: 1 };
        assert!(on_b.allows("x.b.example") && on_b.allows("unknown"));
    }
}
