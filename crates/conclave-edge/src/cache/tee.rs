//! Streaming an origin body to the client and into the cache at once.
//!
//! Nothing is buffered whole: each piece goes on to the client as it comes
//! and into the entry's file (in [`FLUSH`] batches). The entry is committed
//! only when the body ended cleanly with the announced length; a body that
//! breaks, outgrows `max_size`, or whose client goes away is dropped, never
//! stored truncated.

use super::{Cached, Flight, Store, MEM_MAX};
use crate::entity::EntityBody;
use crate::storage::StorageWriter;
use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

/// Bytes gathered before one storage write (one file-server round trip).
const FLUSH: usize = 256 << 10;

/// An entry being written: its file (head already written) and what the
/// index gets when the body is complete.
pub(crate) struct Pending {
    pub(crate) store: Arc<Store>,
    pub(crate) hash: super::KeyHash,
    pub(crate) writer: Box<dyn StorageWriter>,
    pub(crate) head_len: u64,
    pub(crate) status: u16,
    pub(crate) kept: Vec<(String, String)>,
    pub(crate) birth_ms: u64,
    pub(crate) fresh_until_ms: u64,
}

/// An origin body passed through to the client and written to the cache.
pub(crate) struct Tee<B> {
    inner: B,
    pending: Option<Pending>,
    expected: Option<u64>,
    got: u64,
    buf: Vec<u8>,
    /// The body, kept for the worker-memory mirror while it is small.
    mem: Option<Vec<Bytes>>,
    flight: Option<Flight>,
}

impl<B> Tee<B> {
    /// Tees `inner` (announced as `expected` bytes, if known) into `pending`.
    pub(crate) fn new(inner: B, pending: Pending, expected: Option<u64>, flight: Option<Flight>) -> Tee<B>
    where
        B: Body,
    {
        let mut t = Tee {
            inner,
            pending: Some(pending),
            expected,
            got: 0,
            buf: Vec::new(),
            mem: Some(Vec::new()),
            flight,
        };
        // An empty body (a redirect) is never polled: it is complete already.
        if t.inner.is_end_stream() {
            t.finish();
        }
        t
    }

    fn abort(&mut self, why: &str) {
        if let Some(p) = self.pending.take() {
            tracing::debug!("cache: not storing {}: {why}", hex::encode(p.hash));
        }
        self.buf = Vec::new();
        self.mem = None;
        // Dropping the writer removes the partial file; dropping the flight
        // sends the waiting requests to the origin themselves.
        self.flight = None;
    }

    fn take(&mut self, data: &Bytes) {
        self.got += data.len() as u64;
        let Some(p) = &mut self.pending else { return };
        if self.got > p.store.cfg.max_size || self.expected.is_some_and(|n| self.got > n) {
            self.abort("larger than max_size or than announced");
            return;
        }
        self.buf.extend_from_slice(data);
        if self.buf.len() >= FLUSH {
            if let Err(e) = p.writer.write(&self.buf) {
                tracing::error!("cache: writing a body: {e}");
                self.abort("storage write failed");
                return;
            }
            self.buf.clear();
        }
        match &mut self.mem {
            Some(m) if self.got <= MEM_MAX => m.push(data.clone()),
            _ => self.mem = None,
        }
    }

    fn finish(&mut self) {
        let Some(mut p) = self.pending.take() else { return };
        if self.expected.is_some_and(|n| n != self.got) {
            self.abort("shorter than announced");
            return;
        }
        if !self.buf.is_empty() {
            if let Err(e) = p.writer.write(&self.buf) {
                tracing::error!("cache: writing a body: {e}");
                self.abort("storage write failed");
                return;
            }
        }
        self.buf = Vec::new();
        if p.writer.written() != p.head_len + self.got {
            self.abort("file length differs");
            return;
        }
        if let Err(e) = p.writer.commit() {
            tracing::error!("cache: committing a body: {e}");
            self.abort("commit failed");
            return;
        }
        let entry = super::NewEntry {
            size: self.got,
            birth_ms: p.birth_ms,
            fresh_until_ms: p.fresh_until_ms,
            vary: false,
        };
        let Some(version) = p.store.commit(p.hash, entry) else {
            self.abort("does not fit in max_size");
            return;
        };
        if let Some(parts) = self.mem.take() {
            let mut body = Vec::with_capacity(self.got as usize);
            for b in parts {
                body.extend_from_slice(&b);
            }
            let c = Cached::new(p.status, &p.kept, EntityBody::Memory(Bytes::from(body)));
            p.store.remember(p.hash, version, Arc::new(c));
        }
        if let Some(f) = &mut self.flight {
            f.stored();
        }
        self.flight = None;
    }
}

impl<B> Body for Tee<B>
where
    B: Body<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(f))) => {
                if let Some(d) = f.data_ref() {
                    this.take(d);
                }
                // The server stops polling once the announced length is sent:
                // the last piece commits the entry.
                if this.inner.is_end_stream() || this.expected.is_some_and(|n| n == this.got) {
                    this.finish();
                }
                Poll::Ready(Some(Ok(f)))
            }
            Poll::Ready(Some(Err(e))) => {
                this.abort("the origin body failed");
                Poll::Ready(Some(Err(e)))
            }
            Poll::Ready(None) => {
                this.finish();
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        // Until finished (an empty or chunked body), one more poll is needed
        // to commit the entry.
        self.pending.is_none() && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Reads `body` to its end (a HEAD miss, a background refresh): what it
/// tees into the cache gets stored.
/// The client's one range of a body being teed into the cache (a `Range`
/// request on a miss): the bytes before the range are dropped, the client's
/// body ends after the range, and the rest is drained into the cache in the
/// background so the whole entity is still stored.
pub(crate) struct Window<B> {
    inner: Option<B>,
    skip: u64,
    left: u64,
}

impl<B> Window<B> {
    /// The `len` bytes of `inner` from offset `skip`.
    pub(crate) fn new(inner: B, skip: u64, len: u64) -> Window<B> {
        Window {
            inner: Some(inner),
            skip,
            left: len,
        }
    }
}

impl<B> Body for Window<B>
where
    B: Body<Data = Bytes> + Unpin + Send + 'static,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = self.get_mut();
        loop {
            if this.left == 0 {
                if let Some(rest) = this.inner.take() {
                    tokio::spawn(drain(rest));
                }
                return Poll::Ready(None);
            }
            let Some(inner) = this.inner.as_mut() else {
                return Poll::Ready(None);
            };
            match std::task::ready!(Pin::new(inner).poll_frame(cx)) {
                None => {
                    this.inner = None;
                    return Poll::Ready(None);
                }
                Some(Err(e)) => return Poll::Ready(Some(Err(e))),
                Some(Ok(f)) => {
                    // Trailers are not part of a range.
                    let Ok(mut d) = f.into_data() else { continue };
                    let n = d.len() as u64;
                    if this.skip >= n {
                        this.skip -= n;
                        continue;
                    }
                    d = d.slice(this.skip as usize..);
                    this.skip = 0;
                    if d.len() as u64 > this.left {
                        d.truncate(this.left as usize);
                    }
                    this.left -= d.len() as u64;
                    if this.left == 0 {
                        // Now: the server may drop a body that says it has ended
                        // without polling it again.
                        if let Some(rest) = this.inner.take() {
                            tokio::spawn(drain(rest));
                        }
                    }
                    return Poll::Ready(Some(Ok(Frame::data(d))));
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.left == 0 || self.inner.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.left)
    }
}

pub(crate) async fn drain<B: Body>(body: B) {
    use http_body_util::BodyExt;
    let mut body = std::pin::pin!(body);
    while let Some(Ok(_)) = body.as_mut().frame().await {}
}
