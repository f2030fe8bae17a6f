//! The cache key (NGINX `proxy_cache_key`): a template of literal text and
//! request variables, parsed once from the configuration.

use http::request::Parts;

/// A request variable a key may use (NGINX's names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Var {
    /// `$scheme`: `https` on an edge site (`http` for a plain request).
    Scheme,
    /// `$host`: the `Host` (or HTTP/2 `:authority`) without port, lower-cased.
    Host,
    /// `$request_uri`: the target as sent, path and query.
    RequestUri,
    /// `$uri`: the path.
    Uri,
    /// `$args`: the query, without `?`.
    Args,
    /// `$is_args`: `?` when there is a query.
    IsArgs,
    /// `$request_method`.
    Method,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Var(Var),
}

/// A parsed `key` template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheKey {
    parts: Vec<Part>,
}

/// The default key: scheme, host and target (NGINX's default is
/// `$scheme$proxy_host$request_uri`; the client's host is what tells sites apart here).
pub const DEFAULT_KEY: &str = "$scheme$host$request_uri";

/// A `key` template that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown variable ${0} in the cache key (use $scheme, $host, $request_uri, $uri, $args, $is_args, $request_method)")]
pub struct UnknownVariable(pub String);

impl std::str::FromStr for CacheKey {
    type Err = UnknownVariable;

    fn from_str(s: &str) -> Result<CacheKey, UnknownVariable> {
        let mut parts = Vec::new();
        let mut rest = s;
        while let Some(i) = rest.find('$') {
            if i > 0 {
                parts.push(Part::Text(rest[..i].to_string()));
            }
            let after = &rest[i + 1..];
            let braced = after.starts_with('{');
            let name_src = if braced { &after[1..] } else { after };
            let n = name_src
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(name_src.len());
            let name = &name_src[..n];
            let var = match name {
                "scheme" => Var::Scheme,
                "host" => Var::Host,
                "request_uri" => Var::RequestUri,
                "uri" => Var::Uri,
                "args" | "query_string" => Var::Args,
                "is_args" => Var::IsArgs,
                "request_method" => Var::Method,
                other => return Err(UnknownVariable(other.to_string())),
            };
            parts.push(Part::Var(var));
            let used = if braced {
                if !name_src[n..].starts_with('}') {
                    return Err(UnknownVariable(format!("{{{name}")));
                }
                n + 2
            } else {
                n
            };
            rest = &after[used..];
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_string()));
        }
        Ok(CacheKey { parts })
    }
}

impl Default for CacheKey {
    fn default() -> CacheKey {
        DEFAULT_KEY.parse().unwrap_or(CacheKey { parts: Vec::new() })
    }
}

impl CacheKey {
    /// The key of a request.
    pub fn of(&self, req: &Parts) -> String {
        let mut k = String::with_capacity(64);
        for p in &self.parts {
            match p {
                Part::Text(t) => k.push_str(t),
                Part::Var(v) => match v {
                    Var::Scheme => k.push_str(req.uri.scheme_str().unwrap_or("https")),
                    Var::Host => {
                        let host = req
                            .headers
                            .get(http::header::HOST)
                            .and_then(|h| h.to_str().ok())
                            .or_else(|| req.uri.authority().map(|a| a.as_str()))
                            .unwrap_or("");
                        // Without the port (a bracketed IPv6 keeps its brackets).
                        let host = match host.rfind(':') {
                            Some(i) if !host[i..].contains(']') => &host[..i],
                            _ => host,
                        };
                        k.push_str(&host.to_ascii_lowercase());
                    }
                    Var::RequestUri => k.push_str(req.uri.path_and_query().map_or("/", |p| p.as_str())),
                    Var::Uri => k.push_str(req.uri.path()),
                    Var::Args => k.push_str(req.uri.query().unwrap_or("")),
                    Var::IsArgs => {
                        if req.uri.query().is_some() {
                            k.push('?');
                        }
                    }
                    Var::Method => k.push_str(req.method.as_str()),
                },
            }
        }
        k
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(uri: &str, host: Option<&str>) -> Parts {
        let mut b = http::Request::builder().uri(uri);
        if let Some(h) = host {
            b = b.header("host", h);
        }
        b.body(()).unwrap().into_parts().0
    }

    #[test]
    fn default_key_is_scheme_host_and_target() {
        let k = CacheKey::default();
        assert_eq!(
            k.of(&parts("/a?b=1", Some("Example.COM:8443"))),
            "httpsexample.com/a?b=1"
        );
        assert_eq!(k.of(&parts("https://h2.example/x", None)), "httpsh2.example/x");
        assert_eq!(k.of(&parts("/x", Some("[::1]:443"))), "https[::1]/x");
    }

    #[test]
    fn templates_mix_text_and_variables() {
        let k: CacheKey = "m=${request_method} $uri$is_args$args".parse().unwrap();
        assert_eq!(k.of(&parts("/p?q", Some("h"))), "m=GET /p?q");
        assert_eq!(k.of(&parts("/p", Some("h"))), "m=GET /p");
        assert_eq!(
            "$cookie_x".parse::<CacheKey>().unwrap_err(),
            UnknownVariable("cookie_x".into())
        );
    }
}
