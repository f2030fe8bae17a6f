//! The request side of a connection's frame loop, shared by both connection
//! modes (`server` runs it on a task, `conn_thread` on a thread): taking
//! pipelined frames off the read buffer in order, the body limit with its
//! discard rule, the per-identity in-flight limit, and collecting replies for
//! one write. The drivers only read, call the service and write.

use crate::admission::{Admission, Inflight};
use crate::frame::{encode_into, split_frame, Frame, Split, COALESCE_LIMIT};
use crate::refusals::{Kind, Refusals};
use crate::server::PeerInfo;
use crate::status::Status;
use bytes::{Buf, BytesMut};
use std::sync::atomic::AtomicUsize;
use tracing::warn;

/// Bodies over the limit but under this many bytes are read and dropped so
/// the connection survives the error; larger ones close the connection.
pub(crate) const MAX_DISCARD: u64 = 64 * 1024 * 1024;

/// Room made in a connection's read buffer before each read: a whole TLS
/// record's plaintext, so one read takes every frame the peer has sent.
pub(crate) const READ_CHUNK: usize = 16 * 1024;

/// Below this much free room the read buffer is grown before a read.
const MIN_READ: usize = 4 * 1024;

/// What the read buffer yields next.
pub(crate) enum Next<'a> {
    /// A request to pass to the service, counted against its identity's
    /// in-flight limit until the guard drops.
    Request(Frame, Option<Inflight<'a>>),
    /// No whole frame left: read more.
    More,
    /// A body too large to skip: its `E2BIG` is queued; send the replies
    /// and close.
    Close,
}

/// Who is asking, for the in-flight limit and refusal logs.
pub(crate) struct Gate<'a> {
    pub(crate) adm: &'a Admission,
    pub(crate) refusals: &'a Refusals,
    pub(crate) peer: &'a PeerInfo,
    /// The identity's in-flight counter (`None`: no identity, no limit).
    pub(crate) inflight: Option<&'a AtomicUsize>,
}

/// A connection's read buffer and queued replies.
pub(crate) struct Requests {
    /// Bytes read and not yet taken as frames.
    pub(crate) inbuf: BytesMut,
    /// Replies collected for the next write.
    pub(crate) out: Vec<u8>,
    /// Bytes of an oversized body still to drop.
    skip: u64,
    max_body: u32,
}

impl Requests {
    pub(crate) fn new(max_body: u32) -> Requests {
        Requests {
            inbuf: BytesMut::with_capacity(READ_CHUNK),
            out: Vec::with_capacity(READ_CHUNK),
            skip: 0,
            max_body,
        }
    }

    /// The next request in the buffer, in order. Oversized bodies (`E2BIG`)
    /// and requests over the identity's in-flight limit (`EAGAIN`) get their
    /// error queued in place and are passed over.
    pub(crate) fn next<'g>(&mut self, gate: &Gate<'g>) -> Next<'g> {
        loop {
            if self.skip > 0 {
                let n = self.skip.min(self.inbuf.len() as u64);
                self.inbuf.advance(n as usize);
                self.skip -= n;
                if self.skip > 0 {
                    return Next::More;
                }
            }
            let req = match split_frame(&mut self.inbuf, self.max_body) {
                Split::Incomplete { needed } => {
                    self.inbuf.reserve(needed.saturating_sub(self.inbuf.len()));
                    return Next::More;
                }
                Split::TooLarge(hdr) => {
                    warn!(peer = %gate.peer.addr, opcode = hdr.code, len = hdr.len, max = self.max_body, "oversized request");
                    self.queue_error(Status::E2BIG);
                    if hdr.len as u64 > MAX_DISCARD {
                        return Next::Close;
                    }
                    self.skip = hdr.len as u64;
                    continue;
                }
                Split::Frame(req) => req,
            };
            // Peers without an identity (no TLS) are trusted in-process callers.
            let Some(c) = gate.inflight else {
                return Next::Request(req, None);
            };
            match gate.adm.begin_request(c) {
                Some(g) => return Next::Request(req, Some(g)),
                None => {
                    let who = gate.peer.identity().map_or_else(String::new, |id| id.to_string());
                    gate.refusals.note(Kind::IdentityInflight, &gate.peer.addr, &who);
                    self.queue_error(Status::EAGAIN);
                }
            }
        }
    }

    fn queue_error(&mut self, st: Status) {
        // An error frame has an empty body: encoding cannot fail.
        let _ = encode_into(&Frame::error(st), &mut self.out);
    }

    /// Queues a reply behind the earlier ones. A large body is handed back
    /// to go out from where it is, not copied: the caller writes the queued
    /// replies, then it.
    pub(crate) fn reply(&mut self, reply: Frame) -> std::io::Result<Option<Frame>> {
        if reply.body.len() > COALESCE_LIMIT {
            return Ok(Some(reply));
        }
        encode_into(&reply, &mut self.out)?;
        Ok(None)
    }

    /// True when part of a frame (or of a body being dropped) is buffered.
    pub(crate) fn inside_frame(&self) -> bool {
        !self.inbuf.is_empty() || self.skip > 0
    }

    /// Makes room for one read.
    pub(crate) fn make_room(&mut self) {
        if self.inbuf.capacity() - self.inbuf.len() < MIN_READ {
            self.inbuf.reserve(READ_CHUNK);
        }
    }
}
