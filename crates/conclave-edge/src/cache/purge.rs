//! Purging (the NGINX `ngx_cache_purge` module's way): a `PURGE` request
//! from an address in `purge_allow` removes the entry of its URL, or every
//! entry whose key starts with the URL's key when the URL ends in `*`.
//!
//! The address check is the authentication, as with the module's
//! `proxy_cache_purge` allow lists: keep `purge_allow` to loopback or an
//! admin network. A prefix purge walks the cache directory (the index holds
//! only hashes), as the module's wildcard purge does.

use super::{file, hash_of, KeyHash, Store};
use crate::entity::{full, status_response, Body};
use http::header::{self, HeaderValue};
use http::request::Parts;
use http::{Response, StatusCode};
use std::net::{IpAddr, SocketAddr};

/// One `purge_allow` entry: an address and a prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

/// A `purge_allow` entry that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not ADDRESS/PREFIX (e.g. \"127.0.0.1/32\", \"::1/128\")")]
pub struct BadCidr(pub String);

impl std::str::FromStr for Cidr {
    type Err = BadCidr;

    fn from_str(s: &str) -> Result<Cidr, BadCidr> {
        let bad = || BadCidr(s.to_string());
        let (a, p) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = a.trim().parse().map_err(|_| bad())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match p {
            Some(p) => p
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|&n| n <= max)
                .ok_or_else(bad)?,
            None => max,
        };
        Ok(Cidr { addr, prefix })
    }
}

impl Cidr {
    /// Whether `ip` is inside (an IPv4-mapped IPv6 peer counts as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(a)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.prefix)).unwrap_or(0);
                u32::from(net) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(a)) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(self.prefix)).unwrap_or(0);
                u128::from(net) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

/// What a `PURGE` names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// One key.
    Exact(String),
    /// Every key starting with this.
    Prefix(String),
}

impl Target {
    /// From the key of the purge request: a trailing `*` makes it a prefix.
    pub fn from_key(key: String) -> Target {
        match key.strip_suffix('*') {
            Some(p) => Target::Prefix(p.to_string()),
            None => Target::Exact(key),
        }
    }

    /// Whether the stored `key` (a primary key, without secondary part) is purged.
    pub fn matches(&self, key: &str) -> bool {
        match self {
            Target::Exact(k) => key == k,
            Target::Prefix(p) => key.starts_with(p.as_str()),
        }
    }
}

/// Answers a `PURGE`: 403 unless `peer` is allowed, 200 with the number of
/// entries removed, 404 when nothing matched (as `ngx_cache_purge`).
pub(crate) fn run(store: &Store, req: &Parts, peer: SocketAddr) -> Response<Body> {
    if !store.cfg.purge_allow.iter().any(|c| c.contains(peer.ip())) {
        tracing::warn!("cache: PURGE from {peer} refused (not in purge_allow)");
        return status_response(StatusCode::FORBIDDEN);
    }
    let target = Target::from_key(store.cfg.key.of(req));
    let n = match &target {
        Target::Exact(k) => {
            let primary = hash_of(k);
            let name = Store::file_name(&primary);
            let head = store.read_head(k, &name, None).ok().and_then(Result::ok);
            let mut n = 0;
            // A vary record: its variants live under their own keys.
            if head
                .as_ref()
                .is_some_and(|h| h.headers.iter().any(|(n, _)| n == "vary"))
            {
                n += walk(store, &target);
            }
            if head.is_some() {
                store.remove(&primary);
                n += 1;
            }
            n
        }
        Target::Prefix(_) => walk(store, &target),
    };
    tracing::info!("cache: PURGE {target:?} from {peer}: {n} entries removed");
    if n == 0 {
        return status_response(StatusCode::NOT_FOUND);
    }
    let mut r = Response::new(full(format!("purged {n}\n")));
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    r
}

/// Removes every stored entry whose primary key `target` matches, by
/// reading the key in each cache file's head; returns how many.
fn walk(store: &Store, target: &Target) -> usize {
    let st = &store.storage;
    let mut n = 0;
    let list = |p: &str| st.list_dir(p).unwrap_or_default();
    for (d1, is_dir) in list("") {
        if !is_dir {
            continue;
        }
        for (d2, is_dir) in list(&d1) {
            if !is_dir {
                continue;
            }
            for (f, is_dir) in list(&format!("{d1}/{d2}")) {
                let Some(hash) = hash_of_name(&f).filter(|_| !is_dir) else {
                    continue;
                };
                let name = format!("{d1}/{d2}/{f}");
                let Ok(first) = st.read_at(&name, 0, 4096) else {
                    continue;
                };
                let Ok(len) = file::head_len(&first) else { continue };
                let data = if len <= first.len() {
                    first
                } else {
                    match st.read_at(&name, 0, len) {
                        Ok(d) => d,
                        Err(_) => continue,
                    }
                };
                let Ok(head) = file::decode_head(None, &data) else {
                    continue;
                };
                // A variant's key is its primary key, then `\n` and the secondary key.
                let primary = head.key.split('\n').next().unwrap_or("");
                if target.matches(primary) {
                    store.remove(&hash);
                    n += 1;
                }
            }
        }
    }
    n
}

/// The key hash a cache file is named by (temporary files are not).
fn hash_of_name(f: &str) -> Option<KeyHash> {
    let b = hex::decode(f).ok()?;
    b.try_into().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidrs_match_their_network_only() {
        let c: Cidr = "127.0.0.1/32".parse().unwrap();
        assert!(c.contains("127.0.0.1".parse().unwrap()));
        assert!(c.contains("::ffff:127.0.0.1".parse().unwrap()));
        assert!(!c.contains("127.0.0.2".parse().unwrap()));
        let n: Cidr = "10.1.0.0/16".parse().unwrap();
        assert!(n.contains("10.1.200.3".parse().unwrap()));
        assert!(!n.contains("10.2.0.1".parse().unwrap()));
        let all: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains("192.0.2.1".parse().unwrap()));
        let v6: Cidr = "::1".parse().unwrap();
        assert!(v6.contains("::1".parse().unwrap()) && !v6.contains("127.0.0.1".parse().unwrap()));
        assert_eq!("10.0.0.0/33".parse::<Cidr>(), Err(BadCidr("10.0.0.0/33".into())));
        assert!("localhost".parse::<Cidr>().is_err());
    }

    #[test]
    fn a_trailing_star_purges_a_prefix() {
        let t = Target::from_key("httpsh/img/*".into());
        assert!(t.matches("httpsh/img/a.png") && !t.matches("httpsh/css/a.css"));
        let e = Target::from_key("httpsh/a".into());
        assert!(e.matches("httpsh/a") && !e.matches("httpsh/ab"));
    }
}
