//! An upstream group: the servers behind one `proxy_pass`, chosen in round
//! robin, with NGINX's passive health checks (`max_fails`, `fail_timeout`),
//! connect/send/read timeouts, and a keep-alive pool of connections.

use super::body::{Progress, SendBody, UpstreamBody};
use super::connector::{ConnectError, OriginConnector, OriginTls, OriginTlsError};
use super::error::UpstreamError;
use super::ProxyBody;
use crate::config::UpstreamConfig;
use http::{Method, Request, Response, Uri, Version};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// One proxy_pass target: a group of servers.
pub struct Upstream {
    name: String,
    scheme: http::uri::Scheme,
    servers: Vec<Server>,
    next: AtomicUsize,
    client: Client<OriginConnector, SendBody>,
    read_timeout: Duration,
    send_timeout: Duration,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field("name", &self.name)
            .field(
                "servers",
                &self.servers.iter().map(|s| &*s.address).collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// One server of the group and its passive health.
struct Server {
    address: Arc<str>,
    authority: http::uri::Authority,
    max_fails: u32,
    fail_timeout: Duration,
    health: Mutex<Health>,
}

#[derive(Default)]
struct Health {
    /// Failures in the current window.
    fails: u32,
    /// Start of the current window.
    window: Option<Instant>,
    /// Out of the rotation until then.
    down_until: Option<Instant>,
}

impl Server {
    fn available(&self, now: Instant) -> bool {
        let h = self.health.lock().unwrap_or_else(|e| e.into_inner());
        h.down_until.is_none_or(|t| now >= t)
    }

    /// Counts a failure; `alone` servers are never taken out (NGINX ignores
    /// `max_fails` in a one-server group: there is nowhere else to go).
    fn failed(&self, alone: bool) {
        if self.max_fails == 0 || alone {
            return;
        }
        let now = Instant::now();
        let mut h = self.health.lock().unwrap_or_else(|e| e.into_inner());
        if h.window
            .is_none_or(|w| now.duration_since(w) >= self.fail_timeout)
        {
            h.window = Some(now);
            h.fails = 0;
        }
        h.fails += 1;
        if h.fails >= self.max_fails {
            h.down_until = Some(now + self.fail_timeout);
            h.fails = 0;
            h.window = None;
            tracing::warn!(
                "upstream server {} is out for {:?} after {} failure(s) (max_fails)",
                self.address,
                self.fail_timeout,
                self.max_fails
            );
        }
    }

    fn succeeded(&self) {
        let mut h = self.health.lock().unwrap_or_else(|e| e.into_inner());
        if h.fails != 0 || h.down_until.is_some() {
            *h = Health::default();
        }
    }

    fn down_until(&self) -> Option<Instant> {
        self.health.lock().unwrap_or_else(|e| e.into_inner()).down_until
    }
}

impl Upstream {
    /// The group described by `cfg`, with its pool (no connection is made yet).
    pub fn new(cfg: &UpstreamConfig) -> Result<Upstream, OriginTlsError> {
        let tls = match &cfg.tls {
            Some(t) => Some(OriginTls::new(
                t.trusted_certificate.as_deref(),
                &t.server_name,
                t.verify,
            )?),
            None => None,
        };
        let scheme = if tls.is_some() {
            http::uri::Scheme::HTTPS
        } else {
            http::uri::Scheme::HTTP
        };
        let servers = cfg
            .servers
            .iter()
            .filter_map(|s| {
                let authority = s.address.parse().ok()?;
                Some(Server {
                    address: s.address.as_str().into(),
                    authority,
                    max_fails: s.max_fails,
                    fail_timeout: s.fail_timeout,
                    health: Mutex::new(Health::default()),
                })
            })
            .collect();
        let client = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(256)
            .build(OriginConnector::new(cfg.connect_timeout, tls));
        Ok(Upstream {
            name: cfg.name.clone(),
            scheme,
            servers,
            next: AtomicUsize::new(0),
            client,
            read_timeout: cfg.read_timeout,
            send_timeout: cfg.send_timeout,
        })
    }

    /// The `proxy_pass` host (`host:port` or the group's name).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The next server in round robin that is not out, skipping `tried`;
    /// when all are out, the one back soonest (NGINX would answer 502 once
    /// and reset the counts; trying keeps a recovered origin reachable).
    fn pick(&self, tried: &[usize]) -> Option<usize> {
        let n = self.servers.len();
        if tried.len() >= n {
            return None;
        }
        let turn = self.next.fetch_add(1, Ordering::Relaxed);
        let now = Instant::now();
        let candidates = || (0..n).filter(|i| !tried.contains(i));
        // The turn-th of the servers that are in, so a server out does not
        // double the load of the one after it.
        let live = || candidates().filter(|&i| self.servers[i].available(now));
        match live().count() {
            0 => candidates().min_by_key(|&i| self.servers[i].down_until()),
            k => live().nth(turn % k),
        }
    }

    /// Sends `req` (origin-form URI: path+query) to one server of the group: round robin,
    /// passive health, connect/send/read timeouts, keep-alive pool, http or https.
    ///
    /// A request without a body is retried on the next server after a
    /// failure before it reached a server, or after any failure when its
    /// method is idempotent (NGINX `proxy_next_upstream error timeout`); a
    /// streamed body is not kept, so a request with one is never retried.
    pub async fn send(&self, req: Request<ProxyBody>) -> Result<Response<UpstreamBody>, UpstreamError> {
        let started = std::time::Instant::now();
        let (parts, body) = req.into_parts();
        let bodiless = http_body::Body::is_end_stream(&body);
        let idempotent = matches!(
            parts.method,
            Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE | Method::TRACE
        );
        let target = parts.uri.path_and_query().cloned();
        let mut body = Some(body);
        let mut tried = Vec::with_capacity(1);
        let alone = self.servers.len() == 1;
        loop {
            let Some(i) = self.pick(&tried) else {
                return Err(UpstreamError::Broken {
                    server: self.name.clone(),
                    source: "the upstream group has no server".into(),
                });
            };
            tried.push(i);
            let server = &self.servers[i];
            let uri = Uri::builder()
                .scheme(self.scheme.clone())
                .authority(server.authority.clone())
                .path_and_query(
                    target
                        .clone()
                        .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/")),
                )
                .build()
                .map_err(|e| UpstreamError::Broken {
                    server: server.address.to_string(),
                    source: Box::new(e),
                })?;
            let b = body.take().unwrap_or_else(super::empty_body);
            let mut r = Request::new(b);
            *r.method_mut() = parts.method.clone();
            *r.uri_mut() = uri;
            *r.version_mut() = Version::HTTP_11;
            *r.headers_mut() = parts.headers.clone();
            match self.exchange(server, r).await {
                Ok(mut resp) => {
                    // For the access log's upstream_response_time (to the response head).
                    resp.extensions_mut()
                        .insert(crate::access_log::UpstreamTime(started.elapsed()));
                    server.succeeded();
                    return Ok(resp);
                }
                Err(e) => {
                    if !e.is_server_failure() {
                        return Err(e);
                    }
                    server.failed(alone);
                    // The body went with the failed attempt: only an empty one can go again.
                    let again =
                        tried.len() < self.servers.len() && bodiless && (idempotent || e.before_request());
                    if !again {
                        return Err(e);
                    }
                    super::note_failure(&e);
                }
            }
        }
    }

    /// One attempt on `server`, watched by the send and read timeouts.
    async fn exchange(
        &self,
        server: &Server,
        req: Request<ProxyBody>,
    ) -> Result<Response<UpstreamBody>, UpstreamError> {
        let (parts, body) = req.into_parts();
        let (body, progress) = SendBody::new(body);
        let fut = self.client.request(Request::from_parts(parts, body));
        let addr = &server.address;
        let res = tokio::select! {
            r = fut => r,
            e = self.stalled(&progress, addr) => return Err(e),
        };
        match res {
            Ok(resp) => Ok(resp.map(|b| UpstreamBody::new(b, self.read_timeout, addr.clone()))),
            Err(e) => Err(classify(e, &progress, addr)),
        }
    }

    /// Resolves when the exchange stalls: the origin leaves a piece of the
    /// body untaken past `proxy_send_timeout`, or sends no response head
    /// within `proxy_read_timeout` of the whole request.
    async fn stalled(&self, progress: &Mutex<Progress>, addr: &str) -> UpstreamError {
        // While the body is on its way the deadline moves; look again this often.
        const LOOK: Duration = Duration::from_millis(250);
        loop {
            let (sent, handed) = {
                let p = progress.lock().unwrap_or_else(|e| e.into_inner());
                (p.sent_at, p.handed_at)
            };
            let now = Instant::now();
            match (sent, handed) {
                (Some(t), _) if now >= t + self.read_timeout => {
                    return UpstreamError::ReadTimeout {
                        server: addr.to_string(),
                        after: self.read_timeout,
                    }
                }
                // Sent: the deadline stays where it is.
                (Some(t), _) => tokio::time::sleep_until(t + self.read_timeout).await,
                (None, Some(t)) if now >= t + self.send_timeout => {
                    return UpstreamError::SendTimeout {
                        server: addr.to_string(),
                        after: self.send_timeout,
                    }
                }
                (None, Some(t)) => tokio::time::sleep_until((t + self.send_timeout).min(now + LOOK)).await,
                // Waiting on the client's body: `client_body_timeout` is its deadline.
                (None, None) => tokio::time::sleep_until(now + LOOK).await,
            }
        }
    }
}

/// The typed error of a failed attempt.
fn classify(e: hyper_util::client::legacy::Error, progress: &Mutex<Progress>, addr: &str) -> UpstreamError {
    let server = addr.to_string();
    if let Some(why) = progress
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .client_failed
        .clone()
    {
        return UpstreamError::ClientBody { server, source: why };
    }
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(&e);
    while let Some(c) = cause {
        if let Some(ce) = c.downcast_ref::<ConnectError>() {
            return match ce {
                ConnectError::Tcp(io) => UpstreamError::Connect {
                    server,
                    source: std::io::Error::new(io.kind(), io.to_string()),
                },
                ConnectError::Timeout(after) => UpstreamError::ConnectTimeout {
                    server,
                    after: *after,
                },
                ConnectError::Tls(io) => UpstreamError::Tls {
                    server,
                    source: std::io::Error::new(io.kind(), io.to_string()),
                },
                ConnectError::BadUri(_) => UpstreamError::Broken {
                    server,
                    source: ce.to_string().into(),
                },
            };
        }
        cause = c.source();
    }
    UpstreamError::Broken {
        server,
        source: Box::new(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::UpstreamServerConfig;

    fn group(n: u16, max_fails: u32) -> Upstream {
        let cfg = UpstreamConfig {
            name: "g".into(),
            tls: None,
            servers: (1..=n)
                .map(|p| UpstreamServerConfig {
                    address: format!("127.0.0.1:{p}"),
                    max_fails,
                    fail_timeout: Duration::from_secs(10),
                })
                .collect(),
            connect_timeout: Duration::from_secs(1),
            read_timeout: Duration::from_secs(1),
            send_timeout: Duration::from_secs(1),
        };
        Upstream::new(&cfg).unwrap()
    }

    #[test]
    fn picks_in_round_robin_and_skips_a_server_past_max_fails() {
        let u = group(3, 2);
        let picks: Vec<usize> = (0..6).map(|_| u.pick(&[]).unwrap()).collect();
        assert_eq!(picks, [0, 1, 2, 0, 1, 2]);
        u.servers[1].failed(false);
        assert!(
            u.servers[1].available(Instant::now()),
            "one failure of max_fails = 2"
        );
        u.servers[1].failed(false);
        assert!(!u.servers[1].available(Instant::now()));
        let picks: Vec<usize> = (0..4).map(|_| u.pick(&[]).unwrap()).collect();
        assert_eq!(picks, [0, 2, 0, 2], "the live ones share evenly");
        // A retry never goes back to a server it tried.
        assert_eq!(
            u.pick(&[0, 2]),
            Some(1),
            "the only one left, even though it is out"
        );
        assert_eq!(u.pick(&[0, 1, 2]), None);
        u.servers[1].succeeded();
        assert!(u.servers[1].available(Instant::now()));
    }

    #[test]
    fn when_all_are_out_the_one_back_soonest_is_tried() {
        let u = group(2, 1);
        u.servers[1].failed(false);
        u.servers[0].failed(false);
        assert!((0..4).all(|_| u.pick(&[]) == Some(1)));
    }

    #[test]
    fn a_lone_server_or_max_fails_zero_is_never_taken_out() {
        let u = group(1, 1);
        for _ in 0..5 {
            u.servers[0].failed(true);
        }
        assert!(u.servers[0].available(Instant::now()));
        let u = group(2, 0);
        for _ in 0..5 {
            u.servers[0].failed(false);
        }
        assert!(u.servers[0].available(Instant::now()));
    }
}
