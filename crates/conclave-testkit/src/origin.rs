//! A scriptable origin for edge tests: per-path status, headers and body
//! (fixed, a large generated pattern, slow, cut short, or never answered),
//! plain HTTP or HTTPS, recording every request it gets, stoppable and
//! restartable on the same port (an origin that goes down and comes back).
//!
//! It runs on its own thread and runtime, so sync and async tests use it alike.

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// What the origin answers to a request.
#[derive(Clone, Debug)]
pub struct Reply {
    /// Status code.
    pub status: u16,
    /// Headers, in order (several with one name are all sent).
    pub headers: Vec<(String, String)>,
    /// The body, unless `generated` is set.
    pub body: Bytes,
    /// A body of this many [`pattern`] bytes, streamed in 64 KiB pieces (never held whole).
    pub generated: Option<u64>,
    /// Wait this long before the response head.
    pub delay: Option<Duration>,
    /// Never answer (the connection stays open until the origin stops).
    pub hang: bool,
    /// Send only this many body bytes, then hang (the head announces them all).
    pub stall_after: Option<u64>,
    /// Wait this long between two body pieces.
    pub piece_delay: Option<Duration>,
    /// No `Content-Length`: the body goes chunked.
    pub chunked: bool,
}

impl Reply {
    /// `status` with an empty body.
    pub fn status(status: u16) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            body: Bytes::new(),
            generated: None,
            delay: None,
            hang: false,
            stall_after: None,
            piece_delay: None,
            chunked: false,
        }
    }

    /// 200 with `body`.
    pub fn ok(body: impl Into<Bytes>) -> Reply {
        Reply::status(200).body(body)
    }

    /// A reply that never comes.
    pub fn hang() -> Reply {
        Reply {
            hang: true,
            ..Reply::status(200)
        }
    }

    /// Adds a header.
    pub fn header(mut self, name: &str, value: &str) -> Reply {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Sets the body.
    pub fn body(mut self, body: impl Into<Bytes>) -> Reply {
        self.body = body.into();
        self
    }

    /// A generated body of `len` [`pattern`] bytes.
    pub fn generated(mut self, len: u64) -> Reply {
        self.generated = Some(len);
        self
    }

    /// Waits `d` before answering.
    pub fn delay(mut self, d: Duration) -> Reply {
        self.delay = Some(d);
        self
    }

    /// Sends `n` body bytes, then hangs.
    pub fn stall_after(mut self, n: u64) -> Reply {
        self.stall_after = Some(n);
        self
    }

    /// Waits `d` between two body pieces.
    pub fn piece_delay(mut self, d: Duration) -> Reply {
        self.piece_delay = Some(d);
        self
    }

    /// Sends the body chunked (no `Content-Length`).
    pub fn chunked(mut self) -> Reply {
        self.chunked = true;
        self
    }

    fn len(&self) -> u64 {
        self.generated.unwrap_or(self.body.len() as u64)
    }
}

/// Byte `i` of a generated body: a pattern that does not repeat at any
/// power-of-two period, so a misplaced piece changes the checksum.
pub fn pattern(i: u64) -> u8 {
    (i % 251) as u8 ^ ((i >> 16) % 253) as u8
}

/// One request the origin got.
#[derive(Clone, Debug)]
pub struct Recorded {
    /// Method.
    pub method: String,
    /// Path and query.
    pub target: String,
    /// Headers as received (names lowercase).
    pub headers: HeaderMap,
    /// The whole request body.
    pub body: Vec<u8>,
    /// The peer (the edge).
    pub peer: SocketAddr,
}

impl Recorded {
    /// The first value of header `name`, as text.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
    }

    /// The path, without the query.
    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or("")
    }
}

type Handler = Arc<dyn Fn(&Recorded) -> Reply + Send + Sync>;

#[derive(Default)]
struct Script {
    routes: HashMap<String, Handler>,
    fallback: Option<Handler>,
    got: Vec<Recorded>,
}

/// A running test origin; stops when dropped.
pub struct TestOrigin {
    addr: SocketAddr,
    script: Arc<Mutex<Script>>,
    stop: Option<watch::Sender<bool>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TestOrigin {
    /// A plain-HTTP origin on a free loopback port, answering 404 to unrouted paths.
    pub fn start() -> TestOrigin {
        Self::start_at("127.0.0.1:0".parse().unwrap(), None)
    }

    /// An HTTPS origin with the PEM certificate chain `cert` and key `key`.
    pub fn start_tls(cert: &Path, key: &Path) -> TestOrigin {
        Self::start_at("127.0.0.1:0".parse().unwrap(), Some(tls_acceptor(cert, key)))
    }

    /// A plain-HTTP origin on `addr` (e.g. the address of one stopped before).
    pub fn start_on(addr: SocketAddr) -> TestOrigin {
        Self::start_at(addr, None)
    }

    fn start_at(addr: SocketAddr, tls: Option<tokio_rustls::TlsAcceptor>) -> TestOrigin {
        let script = Arc::new(Mutex::new(Script::default()));
        let (stop_tx, stop_rx) = watch::channel(false);
        let std_listener = std::net::TcpListener::bind(addr).expect("bind the test origin");
        std_listener.set_nonblocking(true).unwrap();
        let addr = std_listener.local_addr().unwrap();
        let s = script.clone();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(serve(std_listener, tls, s, stop_rx));
            // Dropping the runtime aborts every connection still open.
        });
        TestOrigin {
            addr,
            script,
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Answers requests for `path` (without the query) with `reply`.
    pub fn route(&self, path: &str, reply: Reply) {
        self.route_fn(path, move |_| reply.clone());
    }

    /// Answers requests for `path` with what `f` makes of each request
    /// (e.g. a 304 when `If-None-Match` matches).
    pub fn route_fn(&self, path: &str, f: impl Fn(&Recorded) -> Reply + Send + Sync + 'static) {
        self.lock().routes.insert(path.into(), Arc::new(f));
    }

    /// Answers unrouted paths with `f` (default: 404).
    pub fn fallback(&self, f: impl Fn(&Recorded) -> Reply + Send + Sync + 'static) {
        self.lock().fallback = Some(Arc::new(f));
    }

    /// Every request received so far, in order.
    pub fn requests(&self) -> Vec<Recorded> {
        self.lock().got.clone()
    }

    /// The requests received for `path` (without the query).
    pub fn requests_to(&self, path: &str) -> Vec<Recorded> {
        self.lock()
            .got
            .iter()
            .filter(|r| r.path() == path)
            .cloned()
            .collect()
    }

    /// How many requests for `path` were received.
    pub fn count(&self, path: &str) -> usize {
        self.lock().got.iter().filter(|r| r.path() == path).count()
    }

    /// Stops listening and closes every connection (an origin that went down).
    pub fn stop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(true);
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Script> {
        self.script.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for TestOrigin {
    fn drop(&mut self) {
        self.stop();
    }
}

fn tls_acceptor(cert: &Path, key: &Path) -> tokio_rustls::TlsAcceptor {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .expect("origin certificate")
        .collect::<Result<_, _>>()
        .expect("origin certificate PEM");
    let key = PrivateKeyDer::from_pem_file(key).expect("origin key");
    let cfg =
        rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .expect("origin certificate and key");
    tokio_rustls::TlsAcceptor::from(Arc::new(cfg))
}

async fn serve(
    listener: std::net::TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    script: Arc<Mutex<Script>>,
    mut stop: watch::Receiver<bool>,
) {
    let listener = tokio::net::TcpListener::from_std(listener).unwrap();
    loop {
        let (tcp, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(_) => continue,
            },
            _ = stop.changed() => return,
        };
        let script = script.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| answer(req, peer, script.clone()));
            let h1 = hyper::server::conn::http1::Builder::new();
            match tls {
                None => {
                    let _ = h1.serve_connection(TokioIo::new(tcp), svc).await;
                }
                Some(a) => {
                    if let Ok(s) = a.accept(tcp).await {
                        let _ = h1.serve_connection(TokioIo::new(s), svc).await;
                    }
                }
            }
        });
    }
}

async fn answer(
    req: Request<Incoming>,
    peer: SocketAddr,
    script: Arc<Mutex<Script>>,
) -> Result<Response<ReplyBody>, Infallible> {
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|c| c.to_bytes().to_vec())
        .unwrap_or_default();
    let rec = Recorded {
        method: parts.method.to_string(),
        target: parts
            .uri
            .path_and_query()
            .map(|p| p.to_string())
            .unwrap_or_default(),
        headers: parts.headers,
        body,
        peer,
    };
    let handler = {
        let mut s = script.lock().unwrap_or_else(|e| e.into_inner());
        s.got.push(rec.clone());
        s.routes.get(rec.path()).or(s.fallback.as_ref()).cloned()
    };
    let reply = match handler {
        Some(h) => h(&rec),
        None => Reply::status(404).body("not routed\n"),
    };
    if reply.hang {
        std::future::pending::<()>().await;
    }
    if let Some(d) = reply.delay {
        tokio::time::sleep(d).await;
    }
    let mut r = Response::new(ReplyBody::start(&reply));
    *r.status_mut() = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    for (k, v) in &reply.headers {
        r.headers_mut().append(
            http::HeaderName::from_bytes(k.as_bytes()).expect("header name"),
            http::HeaderValue::from_str(v).expect("header value"),
        );
    }
    Ok(r)
}

/// A reply body fed by a task that follows the script (pieces, delays, stalls).
struct ReplyBody {
    rx: mpsc::Receiver<Bytes>,
    len: Option<u64>,
}

impl ReplyBody {
    fn start(reply: &Reply) -> ReplyBody {
        let (tx, rx) = mpsc::channel(4);
        let len = reply.len();
        let limit = reply.stall_after.unwrap_or(len).min(len);
        let (fixed, generated, pause) = (reply.body.clone(), reply.generated.is_some(), reply.piece_delay);
        let stall = reply.stall_after.is_some();
        tokio::spawn(async move {
            const PIECE: u64 = 64 << 10;
            let mut at = 0u64;
            while at < limit {
                let n = PIECE.min(limit - at);
                let piece = if generated {
                    Bytes::from((at..at + n).map(pattern).collect::<Vec<u8>>())
                } else {
                    fixed.slice(at as usize..(at + n) as usize)
                };
                if tx.send(piece).await.is_err() {
                    return;
                }
                at += n;
                if let Some(d) = pause {
                    tokio::time::sleep(d).await;
                }
            }
            if stall {
                // Keep the body open without sending: the peer must time out.
                tx.closed().await;
            }
        });
        ReplyBody {
            rx,
            len: (!reply.chunked).then_some(len),
        }
    }
}

impl Body for ReplyBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.rx.poll_recv(cx).map(|o| o.map(|b| Ok(Frame::data(b))))
    }

    fn size_hint(&self) -> SizeHint {
        match self.len {
            Some(n) => SizeHint::with_exact(n),
            None => SizeHint::default(),
        }
    }
}
