//! The access log and the error log files: one line per finished request in
//! the configured format (`main`, NGINX `combined`, or JSON), and both files
//! reopened by [`reopen`] (SIGUSR1) after a log rotation moved them.
//!
//! A request is logged and counted in [`crate::metrics`] when its response
//! body has been handed to the connection (or dropped, when the client went
//! away), so the log's `bytes_sent` and `request_time` are what was sent and
//! how long it took, as NGINX's `$body_bytes_sent` and `$request_time` are.

use crate::config::AccessLogFormat;
use crate::entity::Body;
use http::{HeaderMap, Method, Response, Version};
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant, SystemTime};

/// A log file opened for appending that [`reopen`] can swap for a fresh one
/// at the same path.
#[derive(Debug)]
pub struct LogFile {
    path: PathBuf,
    file: Mutex<std::fs::File>,
}

/// Every log file of this process, for [`reopen`].
fn open_files() -> &'static Mutex<Vec<Weak<LogFile>>> {
    static FILES: OnceLock<Mutex<Vec<Weak<LogFile>>>> = OnceLock::new();
    FILES.get_or_init(|| Mutex::new(Vec::new()))
}

fn append(path: &Path) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new().create(true).append(true).open(path)
}

impl LogFile {
    /// Opens `path` for appending (created if missing) and registers it for [`reopen`].
    pub fn open(path: &Path) -> std::io::Result<Arc<LogFile>> {
        let f = Arc::new(LogFile {
            path: path.to_path_buf(),
            file: Mutex::new(append(path)?),
        });
        let mut files = open_files().lock().unwrap_or_else(|p| p.into_inner());
        files.retain(|w| w.strong_count() > 0);
        files.push(Arc::downgrade(&f));
        Ok(f)
    }

    /// Writes `bytes` in one `write` to the end of the file (O_APPEND keeps the
    /// lines of several workers whole).
    pub fn write(&self, bytes: &[u8]) -> std::io::Result<()> {
        let mut f = self.file.lock().unwrap_or_else(|p| p.into_inner());
        f.write_all(bytes)
    }

    /// Opens the path again: after `mv log log.1`, new lines go to a new `log`.
    fn reopen(&self) -> std::io::Result<()> {
        let fresh = append(&self.path)?;
        *self.file.lock().unwrap_or_else(|p| p.into_inner()) = fresh;
        Ok(())
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Reopens every access and error log file of this process (what a worker
/// does on SIGUSR1, as NGINX's `-s reopen`). A file that cannot be opened
/// keeps its old handle, and the error names it.
pub fn reopen() -> std::io::Result<()> {
    let files: Vec<Arc<LogFile>> = {
        let mut files = open_files().lock().unwrap_or_else(|p| p.into_inner());
        files.retain(|w| w.strong_count() > 0);
        files.iter().filter_map(Weak::upgrade).collect()
    };
    let mut first_err = None;
    for f in files {
        if let Err(e) = f.reopen() {
            first_err.get_or_insert(std::io::Error::new(
                e.kind(),
                format!("reopening {}: {e}", f.path.display()),
            ));
        }
    }
    first_err.map_or(Ok(()), Err)
}

/// Sends this process's `tracing` output where `error_log` says, at
/// `error_log_level` (`RUST_LOG`, when set, overrides the level, for
/// debugging one run). Called once per process (master and each worker)
/// after the configuration is read; a second call changes nothing.
pub fn init_error_log(cfg: &crate::EdgeConfig) -> Result<(), crate::EdgeError> {
    use crate::config::{ErrorLog, LogLevel};
    use tracing_subscriber::EnvFilter;
    let level = match cfg.error_log_level {
        LogLevel::Error => "error",
        LogLevel::Warn => "warn",
        LogLevel::Info => "info",
        LogLevel::Debug => "debug",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    let fmt = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false);
    // Err: a subscriber is already set (tests in one process); keep it.
    let _ = match &cfg.error_log {
        ErrorLog::Off => Ok(()),
        ErrorLog::Stderr => fmt.with_writer(std::io::stderr).try_init(),
        ErrorLog::File(p) => {
            let f = LogFile::open(p)
                .map_err(|e| crate::EdgeError::io(format!("error_log {}", p.display()), e))?;
            fmt.with_writer(ErrorLogWriter(f)).with_ansi(false).try_init()
        }
    };
    Ok(())
}

/// Reopens the log files on every SIGUSR1 (the master forwards it to each
/// worker); a file that cannot be reopened is named in the error log.
/// Call inside the process's runtime.
pub fn reopen_on_sigusr1() -> Result<(), crate::EdgeError> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut usr1 =
        signal(SignalKind::user_defined1()).map_err(|e| crate::EdgeError::io("SIGUSR1 handler", e))?;
    tokio::spawn(async move {
        while usr1.recv().await.is_some() {
            match reopen() {
                Ok(()) => tracing::info!("SIGUSR1: log files reopened"),
                Err(e) => tracing::error!("SIGUSR1: {e}"),
            }
        }
    });
    Ok(())
}

/// The error log as a `tracing` writer: one event per write.
#[derive(Clone, Debug)]
pub struct ErrorLogWriter(pub Arc<LogFile>);

impl Write for &ErrorLogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.write(buf)?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for ErrorLogWriter {
    type Writer = &'a ErrorLogWriter;
    fn make_writer(&'a self) -> Self::Writer {
        self
    }
}

/// An append-only access log file shared by the sites of a process.
#[derive(Debug)]
pub struct AccessLog {
    file: Arc<LogFile>,
    format: AccessLogFormat,
}

impl AccessLog {
    /// Opens `path` for appending (created if missing), lines in `format`.
    pub fn open(path: &Path, format: AccessLogFormat) -> std::io::Result<AccessLog> {
        Ok(AccessLog {
            file: LogFile::open(path)?,
            format,
        })
    }

    /// Writes the line of `r` in one write.
    pub fn record(&self, r: &Finished<'_>) {
        let line = match self.format {
            AccessLogFormat::Main => main_line(r),
            AccessLogFormat::Combined => combined_line(r),
            AccessLogFormat::Json => json_line(r),
        };
        if let Err(e) = self.file.write(&line) {
            tracing::warn!("access log {}: {e}", self.file.path.display());
        }
    }
}

/// The TLS side of a connection, put in each request's extensions by the
/// accept loop for the log.
#[derive(Clone, Copy, Debug)]
pub struct TlsInfo {
    /// "TLSv1.3", "TLSv1.2".
    pub version: &'static str,
    /// The handshake resumed a session (ticket or id).
    pub resumed: bool,
}

/// How long the origin took to send its response head; the cache and the
/// proxy put it in the response's extensions when they asked an origin.
#[derive(Clone, Copy, Debug)]
pub struct UpstreamTime(pub Duration);

/// The WAF rule that denied a request, in the response's extensions.
#[derive(Clone, Debug)]
pub struct WafDenied(pub String);

/// What is kept of a request until its response is sent.
#[derive(Debug)]
pub struct Pending {
    site: Arc<str>,
    log: Option<Arc<AccessLog>>,
    peer: SocketAddr,
    head: RequestHead,
    status: u16,
    length: Option<String>,
    cache: Option<String>,
    upstream: Option<Duration>,
    waf_rule: Option<String>,
}

/// A request and its response as logged.
#[derive(Debug)]
pub struct Finished<'a> {
    /// The request and response.
    pub req: &'a Pending,
    /// Body bytes handed to the connection.
    pub bytes_sent: u64,
    /// From the request head to the last body byte.
    pub elapsed: Duration,
    /// When it finished.
    pub at: SystemTime,
}

/// What of a request the log needs, taken before the request is consumed.
#[derive(Debug)]
pub struct RequestHead {
    started: Instant,
    method: Method,
    uri: String,
    version: Version,
    user_agent: Option<Vec<u8>>,
    referer: Option<Vec<u8>>,
    tls: Option<TlsInfo>,
}

impl RequestHead {
    /// Reads the head of a request that started at `started`.
    pub fn of(parts: &http::request::Parts, started: Instant) -> RequestHead {
        let raw = |h: &HeaderMap, n: http::header::HeaderName| h.get(n).map(|v| v.as_bytes().to_vec());
        RequestHead {
            started,
            method: parts.method.clone(),
            uri: parts
                .uri
                .path_and_query()
                .map(|p| p.as_str())
                .unwrap_or("/")
                .to_string(),
            version: parts.version,
            user_agent: raw(&parts.headers, http::header::USER_AGENT),
            referer: raw(&parts.headers, http::header::REFERER),
            tls: parts.extensions.get::<TlsInfo>().copied(),
        }
    }
}

/// Wraps `resp` so that, once its body is sent, the request is counted in
/// the metrics of `site` and written to `log`.
pub fn track(
    site: &Arc<str>,
    log: Option<&Arc<AccessLog>>,
    head: RequestHead,
    peer: SocketAddr,
    resp: Response<Body>,
) -> Response<Body> {
    use http_body_util::BodyExt;
    let h = resp.headers();
    let text = |n: &str| h.get(n).and_then(|v| v.to_str().ok()).map(str::to_string);
    let pending = Pending {
        site: site.clone(),
        log: log.cloned(),
        peer,
        head,
        status: resp.status().as_u16(),
        length: text("content-length"),
        cache: text("x-cache-status"),
        upstream: resp.extensions().get::<UpstreamTime>().map(|u| u.0),
        waf_rule: resp.extensions().get::<WafDenied>().map(|w| w.0.clone()),
    };
    if let Some(rule) = &pending.waf_rule {
        crate::metrics::waf_denied(&pending.site, rule);
    }
    resp.map(|body| {
        Counted {
            body,
            bytes: 0,
            pending: Some(pending),
        }
        .boxed_unsync()
    })
}

/// A response body that counts its bytes and logs the request at its end.
struct Counted {
    body: Body,
    bytes: u64,
    pending: Option<Pending>,
}

impl Counted {
    fn finish(&mut self) {
        let Some(p) = self.pending.take() else { return };
        let elapsed = p.head.started.elapsed();
        crate::metrics::request_done(&crate::metrics::RequestDone {
            site: &p.site,
            status: p.status,
            cache: p.cache.as_deref().unwrap_or("-"),
            bytes: self.bytes,
            elapsed,
        });
        if let Some(log) = &p.log {
            log.record(&Finished {
                req: &p,
                bytes_sent: self.bytes,
                elapsed,
                at: SystemTime::now(),
            });
        }
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.finish();
    }
}

impl http_body::Body for Counted {
    type Data = bytes::Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<bytes::Bytes>, std::io::Error>>> {
        let r = std::pin::Pin::new(&mut self.body).poll_frame(cx);
        match &r {
            std::task::Poll::Ready(Some(Ok(f))) => {
                self.bytes += f.data_ref().map_or(0, |d| d.len() as u64);
                if self.body.is_end_stream() {
                    self.finish();
                }
            }
            std::task::Poll::Ready(None) => self.finish(),
            _ => {}
        }
        r
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

fn unix_secs(t: SystemTime) -> f64 {
    t.duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64()
}

/// conclave's own line: `unix-time addr method target status length cache-status`.
fn main_line(r: &Finished<'_>) -> Vec<u8> {
    let p = r.req;
    format!(
        "{:.3} {} {} {} {} {} {}\n",
        unix_secs(r.at),
        p.peer.ip(),
        p.head.method,
        p.head.uri.escape_debug(),
        p.status,
        p.length.as_deref().unwrap_or("-"),
        p.cache.as_deref().unwrap_or("-"),
    )
    .into_bytes()
}

/// NGINX's `combined`:
/// `$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent "$http_referer" "$http_user_agent"`,
/// with NGINX's escaping of `"`, `\`, control and non-ASCII bytes as `\xHH`.
fn combined_line(r: &Finished<'_>) -> Vec<u8> {
    let p = r.req;
    let mut out = format!("{} - - [{}] \"", p.peer.ip(), time_local(r.at)).into_bytes();
    escape_nginx(&mut out, p.head.method.as_str().as_bytes());
    out.push(b' ');
    escape_nginx(&mut out, p.head.uri.as_bytes());
    out.push(b' ');
    out.extend_from_slice(http_version(p.head.version).as_bytes());
    out.extend_from_slice(format!("\" {} {} \"", p.status, r.bytes_sent).as_bytes());
    escape_nginx(&mut out, p.head.referer.as_deref().unwrap_or(b"-"));
    out.extend_from_slice(b"\" \"");
    escape_nginx(&mut out, p.head.user_agent.as_deref().unwrap_or(b"-"));
    out.extend_from_slice(b"\"\n");
    out
}

/// NGINX's default (`escape=default`) log escaping.
fn escape_nginx(out: &mut Vec<u8>, bytes: &[u8]) {
    for &b in bytes {
        if b == b'"' || b == b'\\' || !(0x20..0x7f).contains(&b) {
            out.extend_from_slice(format!("\\x{b:02X}").as_bytes());
        } else {
            out.push(b);
        }
    }
}

/// Header bytes as a JSON string: UTF-8 as it is, any other byte as the text `\xHH`.
fn lossless_text(bytes: &[u8]) -> String {
    let mut out = String::new();
    for chunk in bytes.utf8_chunks() {
        out.push_str(chunk.valid());
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02X}"));
        }
    }
    out
}

fn http_version(v: Version) -> &'static str {
    match v {
        Version::HTTP_09 => "HTTP/0.9",
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_11 => "HTTP/1.1",
        Version::HTTP_2 => "HTTP/2.0",
        Version::HTTP_3 => "HTTP/3.0",
        _ => "HTTP/?",
    }
}

/// One JSON object per line (serde_json escapes every quote, backslash and control character).
fn json_line(r: &Finished<'_>) -> Vec<u8> {
    let p = r.req;
    let secs = |d: Duration| (d.as_secs_f64() * 1000.0).round() / 1000.0;
    let v = serde_json::json!({
        "time": rfc3339(r.at),
        "site": &*p.site,
        "remote_addr": p.peer.ip().to_string(),
        "method": p.head.method.as_str(),
        "uri": p.head.uri,
        "http_version": http_version(p.head.version),
        "status": p.status,
        "bytes_sent": r.bytes_sent,
        "request_time": secs(r.elapsed),
        "upstream_response_time": p.upstream.map(secs),
        "cache_status": p.cache,
        "tls_version": p.head.tls.map(|t| t.version),
        "tls_resumed": p.head.tls.map(|t| t.resumed),
        "user_agent": p.head.user_agent.as_deref().map(lossless_text),
        "referer": p.head.referer.as_deref().map(lossless_text),
        "waf_rule_id": p.waf_rule,
    });
    let mut line = serde_json::to_vec(&v).unwrap_or_default();
    line.push(b'\n');
    line
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (H. Hinnant's `civil_from_days`).
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// (year, month, day, hour, minute, second, millisecond) in UTC.
fn utc(t: SystemTime) -> (i64, u32, u32, u64, u64, u64, u32) {
    let d = t.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let s = d.as_secs();
    let (y, m, day) = civil((s / 86_400) as i64);
    (
        y,
        m,
        day,
        s % 86_400 / 3600,
        s % 3600 / 60,
        s % 60,
        d.subsec_millis(),
    )
}

/// NGINX's `$time_local`, in UTC: `30/Nov/2026:13:37:01 +0000`.
fn time_local(t: SystemTime) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let (y, m, d, hh, mm, ss, _) = utc(t);
    format!(
        "{d:02}/{}/{y}:{hh:02}:{mm:02}:{ss:02} +0000",
        MONTHS[(m as usize - 1) % 12]
    )
}

/// `2026-11-30T13:37:01.123Z`.
fn rfc3339(t: SystemTime) -> String {
    let (y, m, d, hh, mm, ss, ms) = utc(t);
    format!("{y}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}.{ms:03}Z")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending(ua: &[u8]) -> Pending {
        Pending {
            site: Arc::from("a.example"),
            log: None,
            peer: "127.0.0.1:5000".parse().unwrap(),
            head: RequestHead {
                started: Instant::now(),
                method: Method::GET,
                uri: "/x?q=\"1\"".into(),
                version: Version::HTTP_11,
                user_agent: Some(ua.to_vec()),
                referer: None,
                tls: Some(TlsInfo {
                    version: "TLSv1.3",
                    resumed: true,
                }),
            },
            status: 403,
            length: Some("10".into()),
            cache: None,
            upstream: None,
            waf_rule: Some("942100".into()),
        }
    }

    fn finished(p: &Pending) -> Finished<'_> {
        Finished {
            req: p,
            bytes_sent: 10,
            elapsed: Duration::from_millis(1500),
            // 2026-11-30 13:37:01.250 UTC
            at: std::time::UNIX_EPOCH + Duration::from_millis(1_796_045_821_250),
        }
    }

    #[test]
    fn dates_are_utc_civil_dates() {
        let t = std::time::UNIX_EPOCH + Duration::from_millis(1_796_045_821_250);
        assert_eq!(time_local(t), "30/Nov/2026:13:37:01 +0000");
        assert_eq!(rfc3339(t), "2026-11-30T13:37:01.250Z");
        assert_eq!(rfc3339(std::time::UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        // A leap day.
        let leap = std::time::UNIX_EPOCH + Duration::from_secs(951_782_400);
        assert_eq!(rfc3339(leap), "2000-02-29T00:00:00.000Z");
    }

    #[test]
    fn combined_escapes_like_nginx() {
        let p = pending(b"a\"b\\c\td\xff");
        let line = String::from_utf8(combined_line(&finished(&p))).unwrap();
        assert_eq!(
            line,
            "127.0.0.1 - - [30/Nov/2026:13:37:01 +0000] \"GET /x?q=\\x221\\x22 HTTP/1.1\" 403 10 \"-\" \"a\\x22b\\x5Cc\\x09d\\xFF\"\n"
        );
    }

    #[test]
    fn json_keeps_hostile_bytes_and_parses_back() {
        let p = pending(b"a\"b\\c\td\xff\x01");
        let line = json_line(&finished(&p));
        assert_eq!(line.last(), Some(&b'\n'));
        assert_eq!(line.iter().filter(|&&b| b == b'\n').count(), 1);
        let v: serde_json::Value = serde_json::from_slice(&line).unwrap();
        assert_eq!(v["user_agent"], "a\"b\\c\td\\xFF\u{1}");
        assert_eq!(v["status"], 403);
        assert_eq!(v["request_time"], 1.5);
        assert_eq!(v["tls_version"], "TLSv1.3");
        assert_eq!(v["tls_resumed"], true);
        assert_eq!(v["waf_rule_id"], "942100");
        assert_eq!(v["cache_status"], serde_json::Value::Null);
        assert_eq!(v["time"], "2026-11-30T13:37:01.250Z");
    }

    #[test]
    fn reopen_writes_to_the_new_file_after_a_move() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.log");
        let log = AccessLog::open(&path, AccessLogFormat::Main).unwrap();
        let p = pending(b"ua");
        log.record(&finished(&p));
        std::fs::rename(&path, dir.path().join("access.log.1")).unwrap();
        log.record(&finished(&p));
        reopen().unwrap();
        log.record(&finished(&p));
        let old = std::fs::read_to_string(dir.path().join("access.log.1")).unwrap();
        let new = std::fs::read_to_string(&path).unwrap();
        assert_eq!((old.lines().count(), new.lines().count()), (2, 1));
    }
}
