//! Bodies on their way through the proxy, each with its deadline: the
//! client's request body (`client_max_body_size`, `client_body_timeout`), the
//! same body as the origin takes it (`proxy_send_timeout`), and the origin's
//! response body (`proxy_read_timeout`).
//!
//! A timer runs only while a body waits for the other side (lazily armed on
//! the first `Pending`), so a reader that is slow itself never trips it.

use super::error::{ClientBodyError, UpstreamError};
use super::ProxyBody;
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::{Instant, Sleep};

/// A deadline armed when its body starts waiting, disarmed when data comes.
struct Gap {
    limit: Duration,
    sleep: Pin<Box<Sleep>>,
    armed: bool,
}

impl Gap {
    fn new(limit: Duration) -> Gap {
        Gap {
            limit,
            sleep: Box::pin(tokio::time::sleep(limit)),
            armed: false,
        }
    }

    /// Called when the body is `Pending`: true once `limit` has passed since it started waiting.
    fn expired(&mut self, cx: &mut Context<'_>) -> bool {
        if !self.armed {
            self.sleep.as_mut().reset(Instant::now() + self.limit);
            self.armed = true;
        }
        self.sleep.as_mut().poll(cx).is_ready()
    }

    fn disarm(&mut self) {
        self.armed = false;
    }
}

/// A client's request body bounded in size and in the gap between two pieces:
/// what the edge streams to the origin (never read whole).
pub fn client_body(incoming: hyper::body::Incoming, limit: u64, timeout: Duration) -> ProxyBody {
    use http_body_util::BodyExt;
    ClientBody {
        inner: incoming,
        limit,
        got: 0,
        gap: Gap::new(timeout),
    }
    .boxed_unsync()
}

struct ClientBody {
    inner: hyper::body::Incoming,
    limit: u64,
    got: u64,
    gap: Gap,
}

fn client_error(e: ClientBodyError) -> std::io::Error {
    std::io::Error::other(e)
}

impl Body for ClientBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(f))) => {
                this.gap.disarm();
                this.got += f.data_ref().map_or(0, |d| d.len() as u64);
                if this.got > this.limit {
                    return Poll::Ready(Some(Err(client_error(ClientBodyError::TooLarge {
                        limit: this.limit,
                    }))));
                }
                Poll::Ready(Some(Ok(f)))
            }
            Poll::Ready(Some(Err(e))) => {
                Poll::Ready(Some(Err(client_error(ClientBodyError::Io(e.to_string())))))
            }
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => {
                if this.gap.expired(cx) {
                    let after = this.gap.limit;
                    return Poll::Ready(Some(Err(client_error(ClientBodyError::Timeout { after }))));
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// How far the origin has taken a request body (shared with the watchdog of
/// the exchange, which turns a stall into `proxy_send_timeout`/`proxy_read_timeout`).
#[derive(Debug, Default)]
pub(crate) struct Progress {
    /// When the last piece was handed to the origin's connection (while it is not yet taken).
    pub handed_at: Option<Instant>,
    /// When the whole body was handed over: the response is due from then on.
    pub sent_at: Option<Instant>,
    /// Why the client's body failed, if it did.
    pub client_failed: Option<ClientBodyError>,
}

/// A request body as the origin's connection takes it.
pub(crate) struct SendBody {
    inner: ProxyBody,
    progress: Arc<Mutex<Progress>>,
}

impl SendBody {
    /// Wraps `inner`; a body with nothing to send counts as sent now.
    pub fn new(inner: ProxyBody) -> (SendBody, Arc<Mutex<Progress>>) {
        let progress = Arc::new(Mutex::new(Progress {
            sent_at: inner.is_end_stream().then(Instant::now),
            ..Progress::default()
        }));
        (
            SendBody {
                inner,
                progress: progress.clone(),
            },
            progress,
        )
    }
}

impl Body for SendBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        let r = Pin::new(&mut self.inner).poll_frame(cx);
        let end = self.inner.is_end_stream();
        let mut p = self.progress.lock().unwrap_or_else(|e| e.into_inner());
        p.handed_at = None;
        match &r {
            Poll::Ready(Some(Ok(_))) => {
                let now = Instant::now();
                p.handed_at = Some(now);
                if end {
                    p.sent_at = Some(now);
                }
            }
            Poll::Ready(Some(Err(e))) => {
                let why = e
                    .get_ref()
                    .and_then(|i| i.downcast_ref::<ClientBodyError>())
                    .cloned()
                    .unwrap_or_else(|| ClientBodyError::Io(e.to_string()));
                p.client_failed = Some(why);
            }
            Poll::Ready(None) => p.sent_at = Some(Instant::now()),
            Poll::Pending => {}
        }
        r
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The origin's response body; a gap longer than proxy_read_timeout between two frames is an error.
pub struct UpstreamBody {
    inner: hyper::body::Incoming,
    gap: Gap,
    server: Arc<str>,
}

impl UpstreamBody {
    pub(crate) fn new(
        inner: hyper::body::Incoming,
        read_timeout: Duration,
        server: Arc<str>,
    ) -> UpstreamBody {
        UpstreamBody {
            inner,
            gap: Gap::new(read_timeout),
            server,
        }
    }
}

impl std::fmt::Debug for UpstreamBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamBody")
            .field("server", &self.server)
            .finish()
    }
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = UpstreamError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, UpstreamError>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(f))) => {
                this.gap.disarm();
                Poll::Ready(Some(Ok(f)))
            }
            Poll::Ready(Some(Err(e))) => {
                let e = UpstreamError::Broken {
                    server: this.server.to_string(),
                    source: Box::new(e),
                };
                super::note_failure(&e);
                Poll::Ready(Some(Err(e)))
            }
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => {
                if this.gap.expired(cx) {
                    let e = UpstreamError::ReadTimeout {
                        server: this.server.to_string(),
                        after: this.gap.limit,
                    };
                    super::note_failure(&e);
                    return Poll::Ready(Some(Err(e)));
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
