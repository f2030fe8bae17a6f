//! The access log: one line per request when `access_log` names a file.

use http::{Request, Response};
use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Mutex;

/// An append-only access log file shared by the sites of a process.
#[derive(Debug)]
pub struct AccessLog {
    file: Mutex<std::fs::File>,
}

impl AccessLog {
    /// Opens `path` for appending (created if missing).
    pub fn open(path: &Path) -> std::io::Result<AccessLog> {
        let file = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
        Ok(AccessLog {
            file: Mutex::new(file),
        })
    }

    /// Writes `unix-time addr method target status bytes cache-status` in one write.
    pub fn record<B>(&self, peer: SocketAddr, req: &Request<B>, resp: &Response<crate::entity::Body>) {
        let len = resp
            .headers()
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-");
        let cache = resp
            .headers()
            .get("x-cache-status")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-");
        let target = req.uri().path_and_query().map(|p| p.as_str()).unwrap_or("/");
        let line = format!(
            "{:.3} {} {} {} {} {} {}\n",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs_f64(),
            peer.ip(),
            req.method(),
            target.escape_debug(),
            resp.status().as_u16(),
            len,
            cache
        );
        let mut f = self.file.lock().unwrap_or_else(|p| p.into_inner());
        if let Err(e) = f.write_all(line.as_bytes()) {
            tracing::warn!("access log: {e}");
        }
    }
}
