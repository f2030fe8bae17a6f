//! The wire unit: an 8-byte header (`u32` BE code, `u32` BE body length)
//! followed by the body. Kept apart from sockets so it can be fuzzed.

use bytes::{Buf, Bytes, BytesMut};
use std::io::{self, Read, Write};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Length of the frame header in bytes.
pub const HEADER_LEN: usize = 8;

/// Bodies up to this size are sent in the same write as their header, so a
/// small RPC costs one TLS record and one syscall.
pub(crate) const COALESCE_LIMIT: usize = 64 * 1024;

/// The fixed-size frame header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// Opcode in a request, status in a reply.
    pub code: u32,
    /// Number of body bytes that follow.
    pub len: u32,
}

impl Header {
    /// Decodes the 8 header bytes.
    pub fn decode(b: [u8; HEADER_LEN]) -> Header {
        Header {
            code: u32::from_be_bytes([b[0], b[1], b[2], b[3]]),
            len: u32::from_be_bytes([b[4], b[5], b[6], b[7]]),
        }
    }

    /// Encodes the header as it goes on the wire.
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[..4].copy_from_slice(&self.code.to_be_bytes());
        b[4..].copy_from_slice(&self.len.to_be_bytes());
        b
    }
}

/// One request or reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    /// Opcode (request) or status (reply).
    pub code: u32,
    /// The body.
    pub body: Bytes,
}

/// Why a frame could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The header announces a body larger than this service accepts.
    #[error("frame body of {len} bytes exceeds this service's limit of {max} bytes")]
    TooLarge {
        /// Announced body length.
        len: u32,
        /// The service's limit.
        max: u32,
    },
    /// The peer closed the stream inside a header.
    #[error("connection closed inside a frame header ({got} of 8 bytes)")]
    ShortHeader {
        /// Header bytes received.
        got: usize,
    },
    /// The peer closed the stream inside a body.
    #[error("connection closed inside a frame body ({got} of {len} bytes)")]
    ShortBody {
        /// Body bytes received.
        got: usize,
        /// Announced body length.
        len: u32,
    },
    /// The stream failed.
    #[error("i/o error: {0}")]
    Io(#[from] io::Error),
}

/// Result of decoding from a buffer that may hold a partial frame.
#[derive(Debug, PartialEq, Eq)]
pub enum Decoded {
    /// More bytes are needed; at least this many in total.
    Incomplete {
        /// Total bytes the buffer must hold before a frame can be decoded.
        needed: usize,
    },
    /// A whole frame, and how many bytes of the buffer it used.
    Complete(Frame, usize),
}

impl Frame {
    /// A frame with the given code and body.
    pub fn new(code: u32, body: impl Into<Bytes>) -> Frame {
        Frame {
            code,
            body: body.into(),
        }
    }

    /// A reply carrying only an error status.
    pub fn error(status: crate::Status) -> Frame {
        Frame {
            code: status.0,
            body: Bytes::new(),
        }
    }

    /// A success reply with this body.
    pub fn ok(body: impl Into<Bytes>) -> Frame {
        Frame::new(0, body)
    }

    /// The reply status.
    pub fn status(&self) -> crate::Status {
        crate::Status(self.code)
    }

    /// The body on success, the status otherwise.
    pub fn into_result(self) -> Result<Bytes, crate::Status> {
        if self.code == 0 {
            Ok(self.body)
        } else {
            Err(crate::Status(self.code))
        }
    }

    /// Decodes one frame from the front of `buf` without trusting any length
    /// in it beyond `max_body`. Never panics, whatever the bytes.
    pub fn decode(buf: &[u8], max_body: u32) -> Result<Decoded, FrameError> {
        let Some(hdr) = buf.first_chunk::<HEADER_LEN>() else {
            return Ok(Decoded::Incomplete { needed: HEADER_LEN });
        };
        let hdr = Header::decode(*hdr);
        if hdr.len > max_body {
            return Err(FrameError::TooLarge {
                len: hdr.len,
                max: max_body,
            });
        }
        let total = HEADER_LEN + hdr.len as usize;
        if buf.len() < total {
            return Ok(Decoded::Incomplete { needed: total });
        }
        let body = Bytes::copy_from_slice(&buf[HEADER_LEN..total]);
        Ok(Decoded::Complete(Frame::new(hdr.code, body), total))
    }

    /// The frame as bytes on the wire.
    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(HEADER_LEN + self.body.len());
        v.extend_from_slice(&self.header().encode());
        v.extend_from_slice(&self.body);
        v
    }

    fn header(&self) -> Header {
        Header {
            code: self.code,
            len: u32::try_from(self.body.len()).expect("frame body over 4 GiB"),
        }
    }
}

/// What [`split_frame`] found at the front of a read buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum Split {
    /// A whole frame, removed from the buffer (its body shares the buffer's
    /// memory: no copy).
    Frame(Frame),
    /// A header announcing a body over `max_body`: the header was removed,
    /// the body (`len` bytes, maybe not all received) was not.
    TooLarge(Header),
    /// Not a whole frame yet: the buffer must hold at least `needed` bytes.
    Incomplete {
        /// Total bytes needed at the front of the buffer.
        needed: usize,
    },
}

/// Takes the first frame off `buf`, a server's read buffer that may hold
/// several pipelined frames, part of one, or none. Never trusts a length
/// beyond `max_body` and never panics, whatever the bytes.
pub fn split_frame(buf: &mut BytesMut, max_body: u32) -> Split {
    let Some(hdr) = buf.first_chunk::<HEADER_LEN>() else {
        return Split::Incomplete { needed: HEADER_LEN };
    };
    let hdr = Header::decode(*hdr);
    if hdr.len > max_body {
        buf.advance(HEADER_LEN);
        return Split::TooLarge(hdr);
    }
    let total = HEADER_LEN + hdr.len as usize;
    if buf.len() < total {
        return Split::Incomplete { needed: total };
    }
    let mut body = buf.split_to(total).freeze();
    body.advance(HEADER_LEN);
    Split::Frame(Frame { code: hdr.code, body })
}

/// Appends `f` as it goes on the wire to `out` (replies collected for one
/// write).
pub fn encode_into(f: &Frame, out: &mut Vec<u8>) -> io::Result<()> {
    out.extend_from_slice(&header_for(f.code, &f.body)?);
    out.extend_from_slice(&f.body);
    Ok(())
}

/// Reads the header, or `None` on a clean end of stream before its first byte.
pub async fn read_header<R: AsyncRead + Unpin>(r: &mut R) -> Result<Option<Header>, FrameError> {
    let mut hdr = [0u8; HEADER_LEN];
    let mut got = 0;
    while got < HEADER_LEN {
        let n = r.read(&mut hdr[got..]).await?;
        if n == 0 {
            return if got == 0 {
                Ok(None)
            } else {
                Err(FrameError::ShortHeader { got })
            };
        }
        got += n;
    }
    Ok(Some(Header::decode(hdr)))
}

/// Reads the body announced by `hdr`, refusing one over `max_body`.
pub async fn read_body<R: AsyncRead + Unpin>(
    r: &mut R,
    hdr: Header,
    max_body: u32,
) -> Result<Frame, FrameError> {
    if hdr.len > max_body {
        return Err(FrameError::TooLarge {
            len: hdr.len,
            max: max_body,
        });
    }
    let mut body = vec![0u8; hdr.len as usize];
    let mut got = 0;
    while got < body.len() {
        let n = r.read(&mut body[got..]).await?;
        if n == 0 {
            return Err(FrameError::ShortBody { got, len: hdr.len });
        }
        got += n;
    }
    Ok(Frame::new(hdr.code, body))
}

/// Reads one whole frame; `None` on a clean end of stream.
pub async fn read_frame<R: AsyncRead + Unpin>(r: &mut R, max_body: u32) -> Result<Option<Frame>, FrameError> {
    match read_header(r).await? {
        None => Ok(None),
        Some(h) => read_body(r, h, max_body).await.map(Some),
    }
}

/// Writes one frame and flushes it.
pub async fn write_frame<W: AsyncWrite + Unpin>(w: &mut W, f: &Frame) -> io::Result<()> {
    write_parts(w, f.code, &f.body).await
}

/// Writes a frame from its parts (no copy of a large body) and flushes it.
pub async fn write_parts<W: AsyncWrite + Unpin>(w: &mut W, code: u32, body: &[u8]) -> io::Result<()> {
    let hdr = header_for(code, body)?;
    if body.len() <= COALESCE_LIMIT {
        let mut v = Vec::with_capacity(HEADER_LEN + body.len());
        v.extend_from_slice(&hdr);
        v.extend_from_slice(body);
        w.write_all(&v).await?;
    } else {
        w.write_all(&hdr).await?;
        w.write_all(body).await?;
    }
    w.flush().await
}

/// Blocking twin of [`read_frame`].
pub fn read_frame_sync<R: Read>(r: &mut R, max_body: u32) -> Result<Option<Frame>, FrameError> {
    let mut hdr = [0u8; HEADER_LEN];
    let mut got = 0;
    while got < HEADER_LEN {
        let n = match r.read(&mut hdr[got..]) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e.into()),
        };
        if n == 0 {
            return if got == 0 {
                Ok(None)
            } else {
                Err(FrameError::ShortHeader { got })
            };
        }
        got += n;
    }
    let hdr = Header::decode(hdr);
    if hdr.len > max_body {
        return Err(FrameError::TooLarge {
            len: hdr.len,
            max: max_body,
        });
    }
    let mut body = vec![0u8; hdr.len as usize];
    let mut got = 0;
    while got < body.len() {
        let n = match r.read(&mut body[got..]) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e.into()),
        };
        if n == 0 {
            return Err(FrameError::ShortBody { got, len: hdr.len });
        }
        got += n;
    }
    Ok(Some(Frame::new(hdr.code, body)))
}

/// Blocking twin of [`write_parts`].
pub fn write_parts_sync<W: Write>(w: &mut W, code: u32, body: &[u8]) -> io::Result<()> {
    let hdr = header_for(code, body)?;
    if body.len() <= COALESCE_LIMIT {
        let mut v = Vec::with_capacity(HEADER_LEN + body.len());
        v.extend_from_slice(&hdr);
        v.extend_from_slice(body);
        w.write_all(&v)?;
    } else {
        w.write_all(&hdr)?;
        w.write_all(body)?;
    }
    w.flush()
}

fn header_for(code: u32, body: &[u8]) -> io::Result<[u8; HEADER_LEN]> {
    let len = u32::try_from(body.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "frame body over 4 GiB"))?;
    Ok(Header { code, len }.encode())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn header_round_trips_big_endian() {
        let h = Header {
            code: 0x0102_0304,
            len: 5,
        };
        assert_eq!(h.encode(), [1, 2, 3, 4, 0, 0, 0, 5]);
        assert_eq!(Header::decode(h.encode()), h);
    }

    #[test]
    fn rejects_frame_longer_than_limit() {
        let f = Frame::new(1, vec![0u8; 100]).encode();
        assert!(matches!(
            Frame::decode(&f, 99),
            Err(FrameError::TooLarge { len: 100, max: 99 })
        ));
        assert!(matches!(Frame::decode(&f, 100), Ok(Decoded::Complete(_, 108))));
    }

    #[test]
    fn reports_how_many_bytes_are_missing() {
        let f = Frame::new(7, b"hello".to_vec()).encode();
        assert_eq!(
            Frame::decode(&f[..3], 1024).unwrap(),
            Decoded::Incomplete { needed: 8 }
        );
        assert_eq!(
            Frame::decode(&f[..10], 1024).unwrap(),
            Decoded::Incomplete { needed: 13 }
        );
    }

    #[test]
    fn sync_reader_reports_truncation() {
        let f = Frame::new(7, b"hello".to_vec()).encode();
        let mut short = &f[..11];
        assert!(matches!(
            read_frame_sync(&mut short, 1024),
            Err(FrameError::ShortBody { got: 3, len: 5 })
        ));
        let mut short = &f[..4];
        assert!(matches!(
            read_frame_sync(&mut short, 1024),
            Err(FrameError::ShortHeader { got: 4 })
        ));
        let mut empty: &[u8] = &[];
        assert!(read_frame_sync(&mut empty, 1024).unwrap().is_none());
    }

    #[test]
    fn split_takes_pipelined_frames_in_order_and_skips_oversized_headers() {
        let mut wire = Frame::new(1, b"one".to_vec()).encode();
        wire.extend(Frame::new(2, Vec::new()).encode());
        wire.extend(Header { code: 3, len: 100 }.encode());
        wire.extend(Frame::new(4, b"four".to_vec()).encode());
        let mut buf = BytesMut::from(&wire[..wire.len() - 1]);
        assert_eq!(
            split_frame(&mut buf, 10),
            Split::Frame(Frame::new(1, b"one".to_vec()))
        );
        assert_eq!(split_frame(&mut buf, 10), Split::Frame(Frame::new(2, Vec::new())));
        assert_eq!(
            split_frame(&mut buf, 10),
            Split::TooLarge(Header { code: 3, len: 100 })
        );
        assert_eq!(split_frame(&mut buf, 10), Split::Incomplete { needed: 12 });
        buf.extend_from_slice(b"r");
        assert_eq!(
            split_frame(&mut buf, 10),
            Split::Frame(Frame::new(4, b"four".to_vec()))
        );
        assert_eq!(
            split_frame(&mut buf, 10),
            Split::Incomplete { needed: HEADER_LEN }
        );
        let mut out = Vec::new();
        encode_into(&Frame::new(4, b"four".to_vec()), &mut out).unwrap();
        assert_eq!(out, Frame::new(4, b"four".to_vec()).encode());
    }

    proptest! {
        // The server's splitter on random bytes: no panic, and a frame it
        // takes re-encodes to the bytes it consumed.
        #[test]
        fn splitter_survives_random_bytes(buf in proptest::collection::vec(any::<u8>(), 0..256), max in 0u32..512) {
            let mut b = BytesMut::from(&buf[..]);
            let mut used = 0;
            loop {
                let before = b.len();
                match split_frame(&mut b, max) {
                    Split::Frame(f) => {
                        prop_assert_eq!(&f.encode()[..], &buf[used..used + before - b.len()]);
                    }
                    Split::TooLarge(h) => prop_assert!(h.len > max),
                    Split::Incomplete { needed } => {
                        prop_assert!(needed > b.len());
                        break;
                    }
                }
                used += before - b.len();
            }
        }

        // The fuzz target of the frame decoder: random bytes never panic, and
        // whatever decodes re-encodes to the same prefix.
        #[test]
        fn decoder_survives_random_bytes(buf in proptest::collection::vec(any::<u8>(), 0..256), max in 0u32..512) {
            if let Ok(Decoded::Complete(frame, used)) = Frame::decode(&buf, max) {
                prop_assert_eq!(&frame.encode()[..], &buf[..used]);
            }
        }

        // Mutated valid frames: one flipped byte and a random cut.
        #[test]
        fn decoder_survives_mutated_frames(code in any::<u32>(), body in proptest::collection::vec(any::<u8>(), 0..128),
                                           pos in any::<usize>(), xor in 1u8..=255, cut in any::<usize>()) {
            let mut wire = Frame::new(code, body.clone()).encode();
            let p = pos % wire.len();
            wire[p] ^= xor;
            let cut = cut % (wire.len() + 1);
            let res = Frame::decode(&wire[..cut], 256);
            if let Ok(Decoded::Complete(f, used)) = res {
                prop_assert!(used <= cut);
                prop_assert_eq!(f.body.len() + HEADER_LEN, used);
            }
            let mut r = &wire[..cut];
            let _ = read_frame_sync(&mut r, 256);
        }
    }
}
