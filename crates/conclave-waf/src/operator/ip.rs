//! `@ipMatch` and `@ipMatchFromFile`: a list of IPv4/IPv6 addresses and CIDR blocks.

use std::net::IpAddr;
use std::path::Path;

use super::read_data_file;

/// One network: address and prefix length.
#[derive(Debug, Clone, Copy)]
struct Net {
    addr: IpAddr,
    prefix: u8,
}

impl Net {
    /// `a.b.c.d`, `a.b.c.d/n`, `v6`, `v6/n`, exactly as `inet_pton` reads them (no blanks).
    fn parse(entry: &str) -> Result<Net, String> {
        let bad = || format!("@ipMatch: not an address or network: {entry:?}");
        let (ip, prefix) = match entry.split_once('/') {
            Some((ip, n)) => (ip, Some(n.parse::<u8>().map_err(|_| bad())?)),
            None => (entry, None),
        };
        let addr: IpAddr = ip.parse().map_err(|_| bad())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = prefix.unwrap_or(max);
        if prefix > max {
            return Err(bad());
        }
        Ok(Net { addr, prefix })
    }

    fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => prefix_eq(&n.octets(), &a.octets(), self.prefix),
            (IpAddr::V6(n), IpAddr::V6(a)) => prefix_eq(&n.octets(), &a.octets(), self.prefix),
            _ => false,
        }
    }
}

fn prefix_eq(net: &[u8], addr: &[u8], prefix: u8) -> bool {
    let full = usize::from(prefix / 8);
    if net[..full] != addr[..full] {
        return false;
    }
    let rest = prefix % 8;
    if rest == 0 {
        return true;
    }
    let mask = 0xffu8 << (8 - rest);
    net[full] & mask == addr[full] & mask
}

/// A parsed address list.
#[derive(Debug, Default)]
pub(crate) struct IpSet {
    nets: Vec<Net>,
}

impl IpSet {
    /// `@ipMatch 10.0.0.0/8,::1`: comma-separated.
    pub(crate) fn from_param(arg: &str) -> Result<IpSet, String> {
        let mut set = IpSet::default();
        set.add_line(arg)?;
        Ok(set)
    }

    /// `@ipMatchFromFile a.txt`: one list per line, `#` starts a comment.
    pub(crate) fn from_files(arg: &str, dir: &Path) -> Result<IpSet, String> {
        let mut set = IpSet::default();
        for name in arg.split_ascii_whitespace() {
            for line in read_data_file(name, dir)?.lines() {
                let line = line.split('#').next().unwrap_or("");
                set.add_line(line)?;
            }
        }
        Ok(set)
    }

    fn add_line(&mut self, line: &str) -> Result<(), String> {
        for entry in line.split(',').filter(|e| !e.is_empty()) {
            self.nets.push(Net::parse(entry)?);
        }
        Ok(())
    }

    /// Whether the value, read as an address, is in the list (a value that is no address is not).
    pub(crate) fn contains_text(&self, input: &[u8]) -> bool {
        let Some(ip) = std::str::from_utf8(input)
            .ok()
            .and_then(|s| s.parse::<IpAddr>().ok())
        else {
            return false;
        };
        self.nets.iter().any(|n| n.contains(ip))
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_ctx::eval;
    use super::*;

    #[test]
    fn matches_v4_and_v6_networks() {
        let list = "127.0.0.1,10.0.0.0/8,192.168.1.128/25,::1,2001:db8::/32";
        assert!(eval("ipMatch", list, b"127.0.0.1"));
        assert!(eval("ipMatch", list, b"10.200.3.4"));
        assert!(eval("ipMatch", list, b"192.168.1.200"));
        assert!(!eval("ipMatch", list, b"192.168.1.100"));
        assert!(eval("ipMatch", list, b"::1"));
        assert!(eval("ipMatch", list, b"2001:db8:1::5"));
        assert!(!eval("ipMatch", list, b"2001:db9::5"));
        assert!(!eval("ipMatch", list, b"not-an-ip"));
    }

    #[test]
    fn rejects_bad_entries() {
        assert!(IpSet::from_param("10.0.0.0/33").is_err());
        assert!(IpSet::from_param("10.0.0").is_err());
        assert!(IpSet::from_param(" 10.0.0.1").is_err());
    }

    #[test]
    fn reads_files_with_comments() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("ips.txt"),
            "# bad hosts\n203.0.113.0/24 # doc\n\n198.51.100.7\n",
        )
        .unwrap();
        let set = IpSet::from_files("ips.txt", dir.path());
        assert!(
            set.is_err(),
            "a blank before # is part of the entry, as inet_pton reads it"
        );
        std::fs::write(
            dir.path().join("ips.txt"),
            "# bad hosts\n203.0.113.0/24#doc\n\n198.51.100.7\n",
        )
        .unwrap();
        let set = IpSet::from_files("ips.txt", dir.path()).unwrap();
        assert!(set.contains_text(b"203.0.113.9"));
        assert!(set.contains_text(b"198.51.100.7"));
        assert!(!set.contains_text(b"198.51.100.8"));
    }
}
