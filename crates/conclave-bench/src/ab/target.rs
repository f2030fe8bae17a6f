//! The URL a load is aimed at: scheme, host, port and path, parsed the way
//! `ab` takes it (`http[s]://host[:port]/path`).

use super::AbError;

/// Plain HTTP or HTTPS.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scheme {
    /// `http://`
    Http,
    /// `https://`
    Https,
}

/// A parsed target URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// http or https.
    pub scheme: Scheme,
    /// Host name or IP literal (without brackets).
    pub host: String,
    /// TCP port (default 80 / 443).
    pub port: u16,
    /// Path and query, starting with `/`.
    pub path: String,
}

impl Target {
    /// Parses `http[s]://host[:port][/path]`; anything else is an error naming the URL.
    pub fn parse(url: &str) -> Result<Target, AbError> {
        let bad = |why: &str| AbError::Url(format!("{url:?}: {why}"));
        let (scheme, rest) = if let Some(r) = url.strip_prefix("http://") {
            (Scheme::Http, r)
        } else if let Some(r) = url.strip_prefix("https://") {
            (Scheme::Https, r)
        } else {
            return Err(bad("expected http:// or https://"));
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        if authority.is_empty() {
            return Err(bad("missing host"));
        }
        let default_port = match scheme {
            Scheme::Http => 80,
            Scheme::Https => 443,
        };
        let (host, port) = if let Some(r) = authority.strip_prefix('[') {
            let end = r.find(']').ok_or_else(|| bad("unterminated [IPv6] literal"))?;
            let host = &r[..end];
            let after = &r[end + 1..];
            let port = match after.strip_prefix(':') {
                Some(p) => p.parse::<u16>().map_err(|_| bad("bad port"))?,
                None if after.is_empty() => default_port,
                None => return Err(bad("junk after ]")),
            };
            (host.to_string(), port)
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h.to_string(), p.parse::<u16>().map_err(|_| bad("bad port"))?),
                None => (authority.to_string(), default_port),
            }
        };
        if host.is_empty() {
            return Err(bad("missing host"));
        }
        if path.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(bad("whitespace or control characters in the path"));
        }
        Ok(Target {
            scheme,
            host,
            port,
            path: path.to_string(),
        })
    }

    /// The `Host:` header value (port included when not the default).
    pub fn host_header(&self) -> String {
        let h = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        let default = matches!(
            (self.scheme, self.port),
            (Scheme::Http, 80) | (Scheme::Https, 443)
        );
        if default {
            h
        } else {
            format!("{h}:{}", self.port)
        }
    }

    /// `host:port` for connecting.
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_https_with_port_and_path() {
        let t = Target::parse("https://127.0.0.1:8443/1k.txt").unwrap();
        assert_eq!(t.scheme, Scheme::Https);
        assert_eq!(t.host, "127.0.0.1");
        assert_eq!(t.port, 8443);
        assert_eq!(t.path, "/1k.txt");
        assert_eq!(t.host_header(), "127.0.0.1:8443");
    }

    #[test]
    fn defaults_port_and_path() {
        let t = Target::parse("http://localhost").unwrap();
        assert_eq!(
            (t.port, t.path.as_str(), t.host_header()),
            (80, "/", "localhost".to_string())
        );
        let t = Target::parse("https://[::1]/x").unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.authority()),
            ("::1", 443, "[::1]:443".to_string())
        );
    }

    #[test]
    fn rejects_bad_urls() {
        for u in [
            "ftp://x/",
            "https://",
            "http://h:99999/",
            "http://h/a b",
            "http://[::1/",
        ] {
            assert!(Target::parse(u).is_err(), "{u}");
        }
    }
}
