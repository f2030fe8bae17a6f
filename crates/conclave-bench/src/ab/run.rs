//! The load driver: `concurrency` workers on the caller's tokio runtime take
//! request tickets from a shared counter until `requests` are done (or the
//! time limit passes, or the caller cancels), each opening a new connection
//! per request unless keep-alive is on.

use super::http::{self, ExchangeError, Response};
use super::stats::{Recorder, Sample};
use super::target::{Scheme, Target};
use super::{tls, AbError, LoadReport, LoadSpec, RunControl, TlsInfo};
use rustls::pki_types::ServerName;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

/// A plain or TLS connection.
enum Conn {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_flush(cx),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// One target of a run: where to connect, the TLS name, the request bytes.
struct Node {
    addr: std::net::SocketAddr,
    name: Option<ServerName<'static>>,
    request: Vec<u8>,
}

/// Shared, read-only state of a run.
struct Shared {
    target: Target,
    /// The targets, `url` first; new connections go round robin.
    nodes: Vec<Node>,
    next_node: std::sync::atomic::AtomicUsize,
    head: bool,
    keepalive: bool,
    timeout: Duration,
    connector: Option<TlsConnector>,
    requests: u64,
    deadline: Option<Instant>,
    control: RunControl,
    /// Body length of the first good response: the reference for length failures.
    doc_len: OnceLock<u64>,
    server: OnceLock<String>,
    tls_info: OnceLock<(String, String)>,
}

impl Shared {
    /// The node the next new connection goes to.
    fn pick(&self) -> &Node {
        &self.nodes[self.next_node.fetch_add(1, Ordering::Relaxed) % self.nodes.len()]
    }

    fn take_ticket(&self) -> bool {
        if self.control.cancel.load(Ordering::Relaxed) {
            return false;
        }
        if let Some(d) = self.deadline {
            if Instant::now() >= d {
                return false;
            }
        }
        self.control.started.fetch_add(1, Ordering::Relaxed) < self.requests
    }
}

/// Runs the load described by `spec` on the current tokio runtime.
pub async fn run(spec: &LoadSpec, control: RunControl) -> Result<LoadReport, AbError> {
    let target = Target::parse(&spec.url)?;
    let mut targets = vec![target.clone()];
    for u in &spec.more_urls {
        let t = Target::parse(u)?;
        if t.scheme != target.scheme {
            return Err(AbError::Usage(format!(
                "{u}: every URL of one run must use the scheme of {}",
                spec.url
            )));
        }
        targets.push(t);
    }
    if spec.concurrency == 0 {
        return Err(AbError::Usage("concurrency must be at least 1".into()));
    }
    if spec.requests == 0 && spec.time_limit.is_none() {
        return Err(AbError::Usage("number of requests must be at least 1".into()));
    }
    let mut nodes = Vec::with_capacity(targets.len());
    for t in &targets {
        let addr = tokio::net::lookup_host(t.authority())
            .await
            .map_err(|e| AbError::Url(format!("{}: cannot resolve: {e}", t.authority())))?
            .next()
            .ok_or_else(|| AbError::Url(format!("{}: no address", t.authority())))?;
        let name = match t.scheme {
            Scheme::Http => None,
            Scheme::Https => Some(
                ServerName::try_from(t.host.clone())
                    .map_err(|e| AbError::Url(format!("{:?}: bad TLS server name: {e}", t.host)))?,
            ),
        };
        nodes.push(Node {
            addr,
            name,
            request: http::build_request(t, spec.head, spec.keepalive, &spec.headers),
        });
    }
    // One client configuration, so one session cache, for every node.
    let connector = match target.scheme {
        Scheme::Http => None,
        Scheme::Https => {
            let trust = spec.trust.clone().ok_or_else(|| {
                AbError::Usage("https needs --cacert FILE (the conclave's root.crt) or --insecure".into())
            })?;
            let cfg = tls::client_config(spec.tls, &trust, spec.resume)?;
            Some(TlsConnector::from(Arc::new(cfg)))
        }
    };
    // ab -t: at most 50000 requests unless -n was given too.
    let requests = match (spec.time_limit, spec.requests) {
        (Some(_), 0) => 50_000,
        (_, n) => n,
    };
    control.started.store(0, Ordering::Relaxed);
    control.completed.store(0, Ordering::Relaxed);
    let start = Instant::now();
    let shared = Arc::new(Shared {
        target,
        nodes,
        next_node: std::sync::atomic::AtomicUsize::new(0),
        head: spec.head,
        keepalive: spec.keepalive,
        timeout: spec.timeout,
        connector,
        requests,
        deadline: spec.time_limit.map(|t| start + t),
        control,
        doc_len: OnceLock::new(),
        server: OnceLock::new(),
        tls_info: OnceLock::new(),
    });
    let first_error: Arc<Mutex<Option<String>>> = Arc::default();
    let workers = spec.concurrency.min(requests.max(1) as usize);
    let mut tasks = Vec::with_capacity(workers);
    for _ in 0..workers {
        let s = shared.clone();
        let fe = first_error.clone();
        tasks.push(tokio::spawn(async move { worker(&s, &fe).await }));
    }
    let mut rec = Recorder::default();
    for t in tasks {
        let r = t
            .await
            .map_err(|e| AbError::Internal(format!("load worker panicked: {e}")))?;
        rec.merge(&r);
    }
    let elapsed = start.elapsed();
    let tls_info = shared.connector.as_ref().map(|_| {
        let (protocol, cipher) = shared.tls_info.get().cloned().unwrap_or_default();
        TlsInfo {
            version: spec.tls,
            protocol,
            cipher,
            resumption: spec.resume,
            handshakes_full: rec.handshakes_full,
            handshakes_resumed: rec.handshakes_resumed,
        }
    });
    let first_error = first_error.lock().map(|g| g.clone()).unwrap_or(None);
    let mut report = LoadReport::build(
        spec,
        &shared.target,
        shared.server.get().cloned(),
        shared.doc_len.get().copied().unwrap_or(0),
        tls_info,
        elapsed,
        &rec,
        first_error,
    );
    report.cancelled = shared.control.cancel.load(Ordering::Relaxed);
    Ok(report)
}

enum Outcome {
    Done(Response),
    Failed,
}

async fn worker(s: &Shared, first_error: &Mutex<Option<String>>) -> Recorder {
    let mut rec = Recorder::default();
    // A kept-alive connection and the node it goes to.
    let mut conn: Option<(Conn, &Node)> = None;
    let mut buf = Vec::with_capacity(32 * 1024);
    let note = |msg: String| {
        if let Ok(mut g) = first_error.lock() {
            g.get_or_insert(msg);
        }
    };
    while s.take_ticket() {
        let start = Instant::now();
        let mut retried = false;
        let outcome = loop {
            let reused = conn.is_some();
            let (c, node) = match conn.take() {
                Some(c) => c,
                None => match tokio::time::timeout(s.timeout, connect(s, s.pick(), &mut rec)).await {
                    Ok(Ok(c)) => c,
                    Ok(Err(e)) => {
                        rec.failures.connect += 1;
                        note(format!("connect: {e}"));
                        break Outcome::Failed;
                    }
                    Err(_) => {
                        rec.failures.connect += 1;
                        note(format!("connect: timed out after {:?}", s.timeout));
                        break Outcome::Failed;
                    }
                },
            };
            let mut c = c;
            let connected = Instant::now();
            let r = tokio::time::timeout(s.timeout, http::exchange(&mut c, &node.request, s.head, &mut buf))
                .await;
            match r {
                Ok(Ok(resp)) => {
                    let connect_us = if reused {
                        0
                    } else {
                        (connected - start).as_micros() as u64
                    };
                    if reused {
                        rec.keepalive_requests += 1;
                    }
                    let done = Instant::now();
                    rec.record(Sample {
                        connect_us,
                        waiting_us: (resp.first_byte.saturating_duration_since(connected)).as_micros() as u64,
                        processing_us: (done - connected).as_micros() as u64,
                        total_us: (done - start).as_micros() as u64,
                    });
                    if s.keepalive && resp.keep_alive {
                        conn = Some((c, node));
                    }
                    break Outcome::Done(resp);
                }
                Ok(Err(ExchangeError::Receive {
                    nothing_read: true, ..
                })) if reused && !retried => {
                    // The server closed an idle keep-alive connection: reconnect, as ab does.
                    retried = true;
                    continue;
                }
                Ok(Err(ExchangeError::Receive { error, .. })) => {
                    rec.failures.receive += 1;
                    note(format!("receive: {error}"));
                    break Outcome::Failed;
                }
                Ok(Err(ExchangeError::Write(e))) => {
                    rec.failures.exceptions += 1;
                    note(format!("write: {e}"));
                    break Outcome::Failed;
                }
                Ok(Err(ExchangeError::Malformed(m))) => {
                    rec.failures.exceptions += 1;
                    note(format!("malformed response: {m}"));
                    break Outcome::Failed;
                }
                Err(_) => {
                    rec.failures.exceptions += 1;
                    note(format!("response timed out after {:?}", s.timeout));
                    break Outcome::Failed;
                }
            }
        };
        if let Outcome::Done(resp) = outcome {
            rec.total_bytes += resp.total_len;
            rec.html_bytes += resp.body_len;
            if !(200..300).contains(&resp.status) {
                rec.non_2xx += 1;
            }
            if let Some(sv) = resp.server {
                let _ = s.server.set(sv);
            }
            let reference = *s.doc_len.get_or_init(|| resp.body_len);
            if resp.body_len != reference {
                rec.failures.length += 1;
                note(format!(
                    "length: {} bytes, first response had {reference}",
                    resp.body_len
                ));
            }
        }
        s.control.completed.fetch_add(1, Ordering::Relaxed);
    }
    rec
}

async fn connect<'a>(s: &Shared, node: &'a Node, rec: &mut Recorder) -> Result<(Conn, &'a Node), String> {
    let tcp = TcpStream::connect(node.addr)
        .await
        .map_err(|e| format!("{}: {e}", node.addr))?;
    let _ = tcp.set_nodelay(true);
    let (Some(connector), Some(name)) = (&s.connector, &node.name) else {
        return Ok((Conn::Plain(tcp), node));
    };
    let tls = connector
        .connect(name.clone(), tcp)
        .await
        .map_err(|e| format!("TLS handshake with {}: {e}", node.addr))?;
    let (_, state) = tls.get_ref();
    match state.handshake_kind() {
        Some(rustls::HandshakeKind::Resumed) => rec.handshakes_resumed += 1,
        _ => rec.handshakes_full += 1,
    }
    if s.tls_info.get().is_none() {
        let proto = state
            .protocol_version()
            .map(|v| format!("{v:?}"))
            .unwrap_or_default();
        let cipher = state
            .negotiated_cipher_suite()
            .map(|c| format!("{:?}", c.suite()))
            .unwrap_or_default();
        let _ = s.tls_info.set((proto, cipher));
    }
    Ok((Conn::Tls(Box::new(tls)), node))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn more_urls_must_share_the_first_ones_scheme() {
        let mut spec = LoadSpec::new("https://127.0.0.1:1/a");
        spec.more_urls = vec!["http://127.0.0.1:2/a".into()];
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let err = rt.block_on(run(&spec, RunControl::default())).unwrap_err();
        assert_eq!(
            err.to_string(),
            "http://127.0.0.1:2/a: every URL of one run must use the scheme of https://127.0.0.1:1/a"
        );
        spec.more_urls = vec!["https://127.0.0.1:2".into(), "ftp://x".into()];
        let err = rt.block_on(run(&spec, RunControl::default())).unwrap_err();
        assert!(matches!(err, AbError::Url(_)), "{err}");
    }
}
