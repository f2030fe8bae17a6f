//! One HTTP/1.x exchange on an open connection: write the request the way
//! `ab` does (HTTP/1.0, `Connection: Keep-Alive` only with `-k`) and read a
//! response, delimited by Content-Length, chunked encoding or EOF.

use super::target::Target;
use std::time::Instant;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Largest response head accepted (status line + headers).
const MAX_HEAD: usize = 64 * 1024;

/// Builds the request bytes once; every request of a run is identical.
pub fn build_request(target: &Target, head: bool, keepalive: bool, headers: &[(String, String)]) -> Vec<u8> {
    let method = if head { "HEAD" } else { "GET" };
    let mut r = format!("{method} {} HTTP/1.0\r\n", target.path);
    let has = |name: &str| headers.iter().any(|(k, _)| k.eq_ignore_ascii_case(name));
    if !has("host") {
        r.push_str(&format!("Host: {}\r\n", target.host_header()));
    }
    if !has("user-agent") {
        r.push_str("User-Agent: ApacheBench/2.3 (conclave ab)\r\n");
    }
    if !has("accept") {
        r.push_str("Accept: */*\r\n");
    }
    if keepalive && !has("connection") {
        r.push_str("Connection: Keep-Alive\r\n");
    }
    for (k, v) in headers {
        r.push_str(&format!("{k}: {v}\r\n"));
    }
    r.push_str("\r\n");
    r.into_bytes()
}

/// What went wrong in one exchange, in `ab`'s failure categories.
#[derive(Debug)]
pub enum ExchangeError {
    /// Writing the request failed (`ab` counts it as an exception).
    Write(std::io::Error),
    /// The connection failed or closed before the response was complete.
    /// `nothing_read` tells a stale keep-alive connection (retry) apart.
    Receive { nothing_read: bool, error: String },
    /// The response could not be parsed.
    Malformed(String),
}

/// A complete response.
#[derive(Debug, Clone)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Body bytes (the "document length").
    pub body_len: u64,
    /// All bytes read for this response (head + body, chunk framing included).
    pub total_len: u64,
    /// The server allows the connection to be reused.
    pub keep_alive: bool,
    /// The `Server:` header, if any.
    pub server: Option<String>,
    /// When the first byte of the response arrived.
    pub first_byte: Instant,
}

/// Writes `request` and reads one response from `io`. `buf` is scratch space
/// reused across requests.
pub async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    io: &mut S,
    request: &[u8],
    head_request: bool,
    buf: &mut Vec<u8>,
) -> Result<Response, ExchangeError> {
    io.write_all(request).await.map_err(ExchangeError::Write)?;
    io.flush().await.map_err(ExchangeError::Write)?;
    buf.clear();
    let mut first_byte = None;
    let mut chunk = [0u8; 16 * 1024];
    // Read the head.
    let head_end = loop {
        if let Some(i) = find_head_end(buf) {
            break i;
        }
        if buf.len() > MAX_HEAD {
            return Err(ExchangeError::Malformed(format!(
                "response head longer than {MAX_HEAD} bytes"
            )));
        }
        let n = io.read(&mut chunk).await.map_err(|e| ExchangeError::Receive {
            nothing_read: buf.is_empty(),
            error: e.to_string(),
        })?;
        if n == 0 {
            return Err(ExchangeError::Receive {
                nothing_read: buf.is_empty(),
                error: "connection closed before the response head".into(),
            });
        }
        first_byte.get_or_insert_with(Instant::now);
        buf.extend_from_slice(&chunk[..n]);
    };
    let first_byte = first_byte.unwrap_or_else(Instant::now);
    let head = parse_head(&buf[..head_end])?;
    let mut total = head_end as u64;
    let already = buf.len() - head_end;
    let no_body = head_request || head.status / 100 == 1 || head.status == 204 || head.status == 304;
    let (body_len, delimited) = if no_body {
        (0, true)
    } else if head.chunked {
        let rest = buf[head_end..].to_vec();
        let (body, read) = read_chunked(io, rest).await?;
        total += read;
        (body, true)
    } else if let Some(len) = head.content_length {
        let mut have = already as u64;
        while have < len {
            let n = io.read(&mut chunk).await.map_err(|e| receive(e.to_string()))?;
            if n == 0 {
                return Err(receive(format!(
                    "connection closed after {have} of {len} body bytes"
                )));
            }
            have += n as u64;
        }
        total += have;
        (len.min(have), have == len)
    } else {
        // Delimited by EOF.
        let mut have = already as u64;
        loop {
            let n = io.read(&mut chunk).await.map_err(|e| receive(e.to_string()))?;
            if n == 0 {
                break;
            }
            have += n as u64;
        }
        total += have;
        (have, false)
    };
    let keep_alive = delimited
        && match head.connection {
            Some(ConnectionHeader::Close) => false,
            Some(ConnectionHeader::KeepAlive) => true,
            None => head.http11,
        };
    Ok(Response {
        status: head.status,
        body_len,
        total_len: total,
        keep_alive,
        server: head.server,
        first_byte,
    })
}

fn receive(error: String) -> ExchangeError {
    ExchangeError::Receive {
        nothing_read: false,
        error,
    }
}

fn find_head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4)
}

enum ConnectionHeader {
    Close,
    KeepAlive,
}

struct Head {
    status: u16,
    http11: bool,
    content_length: Option<u64>,
    chunked: bool,
    connection: Option<ConnectionHeader>,
    server: Option<String>,
}

fn parse_head(raw: &[u8]) -> Result<Head, ExchangeError> {
    let text =
        std::str::from_utf8(raw).map_err(|_| ExchangeError::Malformed("non-UTF-8 response head".into()))?;
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    if !version.starts_with("HTTP/1.") {
        return Err(ExchangeError::Malformed(format!(
            "bad status line {status_line:?}"
        )));
    }
    let status = parts
        .next()
        .and_then(|s| s.parse::<u16>().ok())
        .filter(|s| (100..1000).contains(s))
        .ok_or_else(|| ExchangeError::Malformed(format!("bad status line {status_line:?}")))?;
    let mut head = Head {
        status,
        http11: version == "HTTP/1.1",
        content_length: None,
        chunked: false,
        connection: None,
        server: None,
    };
    for line in lines {
        if line.is_empty() {
            continue;
        }
        let Some((name, value)) = line.split_once(':') else {
            return Err(ExchangeError::Malformed(format!("bad header line {line:?}")));
        };
        let value = value.trim();
        match name.trim().to_ascii_lowercase().as_str() {
            "content-length" => {
                let v = value
                    .parse::<u64>()
                    .map_err(|_| ExchangeError::Malformed(format!("bad Content-Length {value:?}")))?;
                head.content_length = Some(v);
            }
            "transfer-encoding" => head.chunked = value.to_ascii_lowercase().contains("chunked"),
            "connection" => {
                let v = value.to_ascii_lowercase();
                if v.contains("close") {
                    head.connection = Some(ConnectionHeader::Close);
                } else if v.contains("keep-alive") {
                    head.connection = Some(ConnectionHeader::KeepAlive);
                }
            }
            "server" => head.server = Some(value.to_string()),
            _ => {}
        }
    }
    Ok(head)
}

/// Reads a chunked body; returns (body bytes, bytes read from the wire).
async fn read_chunked<S: AsyncRead + Unpin>(
    io: &mut S,
    mut buf: Vec<u8>,
) -> Result<(u64, u64), ExchangeError> {
    let mut wire = buf.len() as u64;
    let mut body = 0u64;
    let mut pos = 0usize;
    let mut chunk = [0u8; 16 * 1024];
    loop {
        // Need a full size line.
        let line_end = loop {
            if let Some(i) = buf[pos..].windows(2).position(|w| w == b"\r\n") {
                break pos + i;
            }
            let n = io.read(&mut chunk).await.map_err(|e| receive(e.to_string()))?;
            if n == 0 {
                return Err(receive("connection closed inside a chunked body".into()));
            }
            wire += n as u64;
            buf.extend_from_slice(&chunk[..n]);
        };
        let line = std::str::from_utf8(&buf[pos..line_end]).unwrap_or("");
        let size_hex = line.split(';').next().unwrap_or("").trim();
        let size = u64::from_str_radix(size_hex, 16)
            .map_err(|_| ExchangeError::Malformed(format!("bad chunk size {line:?}")))?;
        pos = line_end + 2;
        // The chunk data plus its CRLF (for the last chunk: the final CRLF, no trailers supported).
        let need = size as usize + 2;
        while buf.len() - pos < need {
            let n = io.read(&mut chunk).await.map_err(|e| receive(e.to_string()))?;
            if n == 0 {
                return Err(receive("connection closed inside a chunked body".into()));
            }
            wire += n as u64;
            buf.extend_from_slice(&chunk[..n]);
        }
        pos += need;
        body += size;
        if size == 0 {
            return Ok((body, wire));
        }
        // Keep memory bounded for big bodies.
        if pos > 1 << 20 {
            buf.drain(..pos);
            pos = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ab::target::Target;

    fn run(resp: &[u8], head: bool) -> Result<Response, ExchangeError> {
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        rt.block_on(async {
            let (mut client, mut server) = tokio::io::duplex(1 << 20);
            let resp = resp.to_vec();
            let srv = tokio::spawn(async move {
                let mut req = vec![0u8; 4096];
                let _ = server.read(&mut req).await;
                server.write_all(&resp).await.unwrap();
                drop(server);
            });
            let mut buf = Vec::new();
            let r = exchange(&mut client, b"GET / HTTP/1.0\r\n\r\n", head, &mut buf).await;
            srv.await.unwrap();
            r
        })
    }

    #[test]
    fn builds_ab_like_request() {
        let t = Target::parse("http://127.0.0.1:8080/1k.txt").unwrap();
        let r = String::from_utf8(build_request(&t, false, true, &[("X-A".into(), "1".into())])).unwrap();
        assert!(r.starts_with("GET /1k.txt HTTP/1.0\r\nHost: 127.0.0.1:8080\r\n"));
        assert!(
            r.contains("Connection: Keep-Alive\r\n") && r.contains("X-A: 1\r\n") && r.ends_with("\r\n\r\n")
        );
    }

    #[test]
    fn reads_content_length_body() {
        let r = run(
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nServer: t\r\n\r\nhello",
            false,
        )
        .unwrap();
        assert_eq!(
            (r.status, r.body_len, r.keep_alive, r.server.as_deref()),
            (200, 5, true, Some("t"))
        );
    }

    #[test]
    fn reads_chunked_and_eof_bodies() {
        let r = run(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
            false,
        );
        assert_eq!(r.unwrap().body_len, 5);
        let r = run(b"HTTP/1.0 404 Not Found\r\n\r\nnope", false).unwrap();
        assert_eq!((r.status, r.body_len, r.keep_alive), (404, 4, false));
    }

    #[test]
    fn short_body_is_a_receive_failure() {
        let r = run(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", false);
        assert!(matches!(
            r,
            Err(ExchangeError::Receive {
                nothing_read: false,
                ..
            })
        ));
    }

    #[test]
    fn garbage_is_malformed() {
        assert!(matches!(
            run(b"SMTP hello\r\n\r\n", false),
            Err(ExchangeError::Malformed(_))
        ));
        assert!(matches!(
            run(b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n", false),
            Err(ExchangeError::Malformed(_))
        ));
        assert!(matches!(
            run(b"", false),
            Err(ExchangeError::Receive {
                nothing_read: true,
                ..
            })
        ));
    }

    #[test]
    fn head_response_has_no_body() {
        let r = run(b"HTTP/1.1 200 OK\r\nContent-Length: 1024\r\n\r\n", true).unwrap();
        assert_eq!(r.body_len, 0);
    }
}
