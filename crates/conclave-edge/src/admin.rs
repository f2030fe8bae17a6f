//! The admin listener (`[admin]`): `/metrics`, `/healthz` and `/readyz` for
//! the whole edge, served by the master.
//!
//! Every worker counts in its own process ([`crate::metrics`]), so the
//! numbers of the edge are spread over processes. The master owns the admin
//! address and, per scrape, asks each worker for its exposition over a unix
//! socket in a private directory (`<dir>/<pid>.sock`, mode 0700, made by the
//! master and passed to each worker as `--metrics-dir`), then adds them up
//! ([`crate::metrics::merge`]). Asking at scrape time keeps the counters
//! exact (nothing is batched or sampled) and costs the workers nothing
//! between scrapes; sockets named by pid survive worker restarts and
//! reloads, where old and new workers overlap.
//!
//! Off loopback the listener requires mTLS: a client certificate of the
//! conclave's CA with the `client` role (see `conclave certs`).

use crate::config::AdminConfig;
use crate::EdgeError;
use bytes::Bytes;
use http::{Method, Response, StatusCode};
use http_body_util::Full;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// How long a scrape waits for one worker.
const WORKER_TIMEOUT: Duration = Duration::from_secs(2);

/// The content type of the OpenMetrics text exposition.
pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The directory of the workers' metrics sockets: made private (0700) for
/// the master's lifetime, removed when dropped.
#[derive(Debug)]
pub struct SocketDir {
    path: PathBuf,
}

impl SocketDir {
    /// Makes a fresh private directory under the system's temporary directory.
    pub fn create() -> Result<SocketDir, EdgeError> {
        use std::os::unix::fs::DirBuilderExt;
        // A random name: nobody can make it first and have the master use theirs
        // (creating it fails if it exists).
        let mut nonce = [0u8; 8];
        getrandom::fill(&mut nonce)
            .map_err(|e| EdgeError::Setup(format!("no randomness for the metrics directory: {e}")))?;
        let path = std::env::temp_dir().join(format!(
            "conclave-edge-{}-{}-metrics",
            std::process::id(),
            hex::encode(nonce)
        ));
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&path)
            .map_err(|e| EdgeError::io(format!("creating {}", path.display()), e))?;
        Ok(SocketDir { path })
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for SocketDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// A worker's metrics socket; the file is removed when dropped.
#[derive(Debug)]
pub struct WorkerSocket {
    path: PathBuf,
}

impl Drop for WorkerSocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// In a worker: answers every connection on `<dir>/<pid>.sock` with this
/// process's exposition, then closes it. Call inside the worker's runtime,
/// after its listeners are bound (a socket means "this worker serves").
pub fn serve_worker(dir: &Path) -> Result<WorkerSocket, EdgeError> {
    let path = dir.join(format!("{}.sock", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let l = tokio::net::UnixListener::bind(&path)
        .map_err(|e| EdgeError::io(format!("metrics socket {}", path.display()), e))?;
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = l.accept().await else {
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            };
            tokio::spawn(async move {
                use tokio::io::AsyncWriteExt;
                let text = crate::metrics::get().encode();
                let _ = tokio::time::timeout(WORKER_TIMEOUT, s.write_all(text.as_bytes())).await;
            });
        }
    });
    Ok(WorkerSocket { path })
}

/// What the workers said in one scrape.
struct Scrape {
    parts: Vec<String>,
}

/// Asks every worker socket in `dir`; a socket nobody listens on any more
/// (a worker that died) is removed.
async fn scrape(dir: &Path) -> Scrape {
    let mut parts = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Scrape { parts };
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.extension().is_none_or(|x| x != "sock") {
            continue;
        }
        let got = tokio::time::timeout(WORKER_TIMEOUT, async {
            use tokio::io::AsyncReadExt;
            let mut s = tokio::net::UnixStream::connect(&p).await?;
            let mut text = String::new();
            s.read_to_string(&mut text).await?;
            Ok::<_, std::io::Error>(text)
        })
        .await;
        match got {
            Ok(Ok(text)) => parts.push(text),
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                let _ = std::fs::remove_file(&p);
            }
            Ok(Err(e)) => tracing::warn!("metrics of {}: {e}", p.display()),
            Err(_) => tracing::warn!("metrics of {}: no answer in {WORKER_TIMEOUT:?}", p.display()),
        }
    }
    Scrape { parts }
}

/// Kernel servers whose last call failed in one worker's exposition, as
/// `server="..",op=".."`.
fn failing(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("conclave_edge_backend_up{"))
        .filter_map(|rest| rest.strip_suffix("} 0"))
        .map(str::to_string)
        .collect()
}

/// What the admin listener needs to answer.
struct State {
    dir: PathBuf,
    workers: usize,
}

fn text(status: StatusCode, body: String, ctype: &'static str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static(ctype));
    r
}

const PLAIN: &str = "text/plain; charset=utf-8";

async fn answer(st: &State, method: &Method, path: &str) -> Response<Full<Bytes>> {
    if method != Method::GET && method != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "GET only\n".into(), PLAIN);
    }
    match path {
        "/healthz" => text(StatusCode::OK, "ok\n".into(), PLAIN),
        "/metrics" => {
            let s = scrape(&st.dir).await;
            match crate::metrics::merge(&s.parts) {
                Ok(m) => text(StatusCode::OK, m, OPENMETRICS),
                Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n"), PLAIN),
            }
        }
        "/readyz" => {
            let s = scrape(&st.dir).await;
            let mut why = Vec::new();
            if s.parts.len() < st.workers {
                why.push(format!("{} of {} workers serving", s.parts.len(), st.workers));
            }
            let mut down: Vec<String> = s.parts.iter().flat_map(|p| failing(p)).collect();
            down.sort();
            down.dedup();
            why.extend(down.into_iter().map(|d| format!("last call failed: {d}")));
            if why.is_empty() {
                text(StatusCode::OK, "ready\n".into(), PLAIN)
            } else {
                text(StatusCode::SERVICE_UNAVAILABLE, why.join("\n") + "\n", PLAIN)
            }
        }
        _ => text(StatusCode::NOT_FOUND, "not found\n".into(), PLAIN),
    }
}

/// The running admin listener; stops when dropped.
#[derive(Debug)]
pub struct Admin {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    /// Where it listens.
    pub addr: std::net::SocketAddr,
}

impl Drop for Admin {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// In the master: serves `std_l` (the socket the master holds for
/// `cfg.listen`) on a thread of its own, reading the workers' sockets in
/// `dir`; `workers` is how many must answer for `/readyz`.
pub fn start(
    cfg: &AdminConfig,
    std_l: std::net::TcpListener,
    dir: &Path,
    workers: usize,
) -> Result<Admin, EdgeError> {
    let tls = match &cfg.certs {
        None => None,
        Some(d) => {
            let creds = conclave_rpc::Credentials::from_dir(d, conclave_rpc::Role::Edge)
                .map_err(|e| EdgeError::Setup(format!("[admin] certs: {e}")))?;
            Some(tokio_rustls::TlsAcceptor::from(
                creds
                    .server_config()
                    .map_err(|e| EdgeError::Setup(format!("[admin] certs: {e}")))?,
            ))
        }
    };
    std_l
        .set_nonblocking(true)
        .map_err(|e| EdgeError::io("[admin] listener", e))?;
    let addr = std_l
        .local_addr()
        .map_err(|e| EdgeError::io("[admin] listener", e))?;
    let state = Arc::new(State {
        dir: dir.to_path_buf(),
        workers,
    });
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::Builder::new()
        .name("admin".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(rt) => rt,
                Err(e) => {
                    tracing::error!("admin listener: no runtime: {e}");
                    return;
                }
            };
            rt.block_on(async move {
                let l = match tokio::net::TcpListener::from_std(std_l) {
                    Ok(l) => l,
                    Err(e) => {
                        tracing::error!("admin listener: {e}");
                        return;
                    }
                };
                tokio::select! {
                    _ = accept(l, tls, state) => {}
                    _ = stop_rx => {}
                }
            });
        })
        .map_err(|e| EdgeError::io("starting the admin thread", e))?;
    tracing::info!("admin: /metrics, /healthz, /readyz on {addr}");
    Ok(Admin {
        stop: Some(stop_tx),
        thread: Some(thread),
        addr,
    })
}

async fn accept(l: tokio::net::TcpListener, tls: Option<tokio_rustls::TlsAcceptor>, state: Arc<State>) {
    loop {
        let (tcp, peer) = match l.accept().await {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!("admin accept: {e}");
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        let (tls, state) = (tls.clone(), state.clone());
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                let state = state.clone();
                async move {
                    Ok::<_, std::convert::Infallible>(answer(&state, req.method(), req.uri().path()).await)
                }
            });
            let http = hyper::server::conn::http1::Builder::new();
            let r = match tls {
                None => {
                    http.serve_connection(hyper_util::rt::TokioIo::new(tcp), svc)
                        .await
                }
                Some(acc) => {
                    let s = match tokio::time::timeout(WORKER_TIMEOUT * 5, acc.accept(tcp)).await {
                        Ok(Ok(s)) => s,
                        _ => return,
                    };
                    // The conclave's one admission rule, then ours: tools (`client`) only.
                    let id = conclave_rpc::tls::peer_identity(s.get_ref().1.peer_certificates());
                    if id.is_none_or(|i| i.role != conclave_rpc::Role::Client) {
                        tracing::warn!("admin: {peer} refused: not a conclave client certificate");
                        return;
                    }
                    http.serve_connection(hyper_util::rt::TokioIo::new(s), svc).await
                }
            };
            if let Err(e) = r {
                tracing::debug!("admin connection {peer}: {e}");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_backend_whose_last_call_failed_is_named() {
        let t = "conclave_edge_backend_up{server=\"keyserver\",op=\"sign\"} 0\n\
                 conclave_edge_backend_up{server=\"fileserver\",op=\"read\"} 1\n";
        assert_eq!(failing(t), vec!["server=\"keyserver\",op=\"sign\"".to_string()]);
    }
}
