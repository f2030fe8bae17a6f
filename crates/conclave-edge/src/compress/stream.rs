//! On-the-fly encoders: a response body in, the same body gzip-, brotli- or
//! zstd-encoded out, one chunk at a time (nothing is read whole).

use super::Coding;
use crate::entity::Body;
use async_compression::tokio::bufread::{BrotliEncoder, GzipEncoder, ZstdEncoder};
use async_compression::Level;
use bytes::Bytes;
use futures_util::TryStreamExt;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use std::io;
use tokio_util::io::{ReaderStream, StreamReader};

/// Largest piece of encoded output handed to the connection at once.
const CHUNK: usize = 16 << 10;

/// `body` encoded with `coding` at `level` as it streams. Trailers are
/// dropped (an encoded body's trailers would describe other bytes); an error
/// of the source ends the encoded body with that error, so the client sees a
/// broken transfer, never a short body that looks whole.
pub fn encode<B>(body: B, coding: Coding, level: i32) -> Body
where
    B: hyper::body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let source = StreamReader::new(Box::pin(body.into_data_stream().map_err(io::Error::other)));
    let level = Level::Precise(level);
    match coding {
        Coding::Gzip => frames(GzipEncoder::with_quality(source, level)),
        Coding::Brotli => frames(BrotliEncoder::with_quality(source, level)),
        Coding::Zstd => frames(ZstdEncoder::with_quality(source, level)),
    }
}

fn frames<R: tokio::io::AsyncRead + Send + 'static>(encoder: R) -> Body {
    let chunks = ReaderStream::with_capacity(encoder, CHUNK).map_ok(Frame::data);
    StreamBody::new(chunks).boxed_unsync()
}
