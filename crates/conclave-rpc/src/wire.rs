//! Encoding of fields inside a body: big-endian integers, and `str`/`blob`
//! values as a `u32` BE length followed by the bytes (no NUL), as in the
//! original protocol. A reader never trusts a length: every short or
//! oversized field is `EPROTO` (or `ENAMETOOLONG` for names).

use crate::Status;

/// Builds a body field by field.
#[derive(Default, Debug, Clone)]
pub struct BodyWriter {
    buf: Vec<u8>,
}

impl BodyWriter {
    /// An empty body.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty body with room for `n` bytes.
    pub fn with_capacity(n: usize) -> Self {
        BodyWriter {
            buf: Vec::with_capacity(n),
        }
    }

    /// Appends one byte.
    pub fn u8(&mut self, v: u8) -> &mut Self {
        self.buf.push(v);
        self
    }

    /// Appends a big-endian `u16`.
    pub fn u16(&mut self, v: u16) -> &mut Self {
        self.buf.extend_from_slice(&v.to_be_bytes());
        self
    }

    /// Appends a big-endian `u32`.
    pub fn u32(&mut self, v: u32) -> &mut Self {
        self.buf.extend_from_slice(&v.to_be_bytes());
        self
    }

    /// Appends a big-endian `i32`.
    pub fn i32(&mut self, v: i32) -> &mut Self {
        self.buf.extend_from_slice(&v.to_be_bytes());
        self
    }

    /// Appends a big-endian `u64`.
    pub fn u64(&mut self, v: u64) -> &mut Self {
        self.buf.extend_from_slice(&v.to_be_bytes());
        self
    }

    /// Appends a big-endian `i64`.
    pub fn i64(&mut self, v: i64) -> &mut Self {
        self.buf.extend_from_slice(&v.to_be_bytes());
        self
    }

    /// Appends a length-prefixed byte string.
    pub fn blob(&mut self, v: &[u8]) -> &mut Self {
        self.u32(v.len() as u32);
        self.buf.extend_from_slice(v);
        self
    }

    /// Appends a length-prefixed UTF-8 string.
    pub fn str(&mut self, v: &str) -> &mut Self {
        self.blob(v.as_bytes())
    }

    /// Appends raw bytes with no length (the rest of the body).
    pub fn raw(&mut self, v: &[u8]) -> &mut Self {
        self.buf.extend_from_slice(v);
        self
    }

    /// The finished body.
    pub fn finish(self) -> Vec<u8> {
        self.buf
    }

    /// Bytes written so far.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// True when nothing was written.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }
}

/// Reads a body field by field.
#[derive(Debug, Clone)]
pub struct BodyReader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> BodyReader<'a> {
    /// A reader over a whole body.
    pub fn new(buf: &'a [u8]) -> Self {
        BodyReader { buf, pos: 0 }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], Status> {
        let end = self.pos.checked_add(n).ok_or(Status::EPROTO)?;
        let s = self.buf.get(self.pos..end).ok_or(Status::EPROTO)?;
        self.pos = end;
        Ok(s)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], Status> {
        let s = self.take(N)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    /// One byte.
    pub fn u8(&mut self) -> Result<u8, Status> {
        Ok(self.array::<1>()?[0])
    }

    /// A big-endian `u16`.
    pub fn u16(&mut self) -> Result<u16, Status> {
        Ok(u16::from_be_bytes(self.array()?))
    }

    /// A big-endian `u32`.
    pub fn u32(&mut self) -> Result<u32, Status> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    /// A big-endian `i32`.
    pub fn i32(&mut self) -> Result<i32, Status> {
        Ok(i32::from_be_bytes(self.array()?))
    }

    /// A big-endian `u64`.
    pub fn u64(&mut self) -> Result<u64, Status> {
        Ok(u64::from_be_bytes(self.array()?))
    }

    /// A big-endian `i64`.
    pub fn i64(&mut self) -> Result<i64, Status> {
        Ok(i64::from_be_bytes(self.array()?))
    }

    /// A length-prefixed byte string of at most `max` bytes (`EPROTO` if longer).
    pub fn blob(&mut self, max: usize) -> Result<&'a [u8], Status> {
        let n = self.u32()? as usize;
        if n > max {
            return Err(Status::EPROTO);
        }
        self.take(n)
    }

    /// A length-prefixed name or path of at most `max` bytes: `ENAMETOOLONG`
    /// if longer, `EPROTO` if truncated or not UTF-8.
    pub fn name(&mut self, max: usize) -> Result<&'a str, Status> {
        let n = self.u32()? as usize;
        if n > max {
            // Skip it if it is there, so the error names the real problem.
            return Err(if self.remaining() >= n {
                Status::ENAMETOOLONG
            } else {
                Status::EPROTO
            });
        }
        std::str::from_utf8(self.take(n)?).map_err(|_| Status::EPROTO)
    }

    /// Exactly `n` raw bytes.
    pub fn bytes(&mut self, n: usize) -> Result<&'a [u8], Status> {
        self.take(n)
    }

    /// Everything not yet read.
    pub fn rest(&mut self) -> &'a [u8] {
        let s = &self.buf[self.pos..];
        self.pos = self.buf.len();
        s
    }

    /// Bytes not yet read.
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// Succeeds only if the whole body was read; trailing bytes are `EPROTO`.
    pub fn finish(&self) -> Result<(), Status> {
        if self.pos == self.buf.len() {
            Ok(())
        } else {
            Err(Status::EPROTO)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_round_trip() {
        let mut w = BodyWriter::new();
        w.u8(1)
            .u16(2)
            .u32(3)
            .i32(-4)
            .u64(5)
            .i64(-6)
            .str("path")
            .blob(b"\0\x01");
        let body = w.finish();
        let mut r = BodyReader::new(&body);
        assert_eq!(r.u8().unwrap(), 1);
        assert_eq!(r.u16().unwrap(), 2);
        assert_eq!(r.u32().unwrap(), 3);
        assert_eq!(r.i32().unwrap(), -4);
        assert_eq!(r.u64().unwrap(), 5);
        assert_eq!(r.i64().unwrap(), -6);
        assert_eq!(r.name(255).unwrap(), "path");
        assert_eq!(r.blob(10).unwrap(), b"\0\x01");
        r.finish().unwrap();
    }

    #[test]
    fn truncated_field_is_eproto() {
        let mut w = BodyWriter::new();
        w.str("abcdef");
        let body = w.finish();
        let mut r = BodyReader::new(&body[..7]);
        assert_eq!(r.name(255), Err(Status::EPROTO));
        let mut r = BodyReader::new(&body[..2]);
        assert_eq!(r.u32(), Err(Status::EPROTO));
    }

    #[test]
    fn long_name_is_enametoolong_and_trailing_bytes_eproto() {
        let mut w = BodyWriter::new();
        w.str(&"x".repeat(300));
        let body = w.finish();
        assert_eq!(BodyReader::new(&body).name(255), Err(Status::ENAMETOOLONG));
        let mut w = BodyWriter::new();
        w.u32(1).u8(0);
        let body = w.finish();
        let mut r = BodyReader::new(&body);
        r.u32().unwrap();
        assert_eq!(r.finish(), Err(Status::EPROTO));
    }

    #[test]
    fn huge_length_prefix_does_not_allocate_or_panic() {
        let body = [0xff, 0xff, 0xff, 0xff, 1, 2];
        assert_eq!(BodyReader::new(&body).blob(usize::MAX), Err(Status::EPROTO));
    }
}
