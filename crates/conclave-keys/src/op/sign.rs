//! `SIGN` (6): sign one TLS handshake message.
//!
//! Request: `str name`, `u16 scheme` (TLS SignatureScheme code point),
//! `u32 length` + message bytes (at most [`MAX_MESSAGE`]). The server hashes
//! and pads as the scheme says; the client never chooses a padding and never
//! sends a digest, so there is no raw-RSA and no decryption path.
//! Reply: `blob signature`.
//! Errors, checked in this order: `EPROTO` malformed body, `EINVAL` invalid
//! name, `ENAMETOOLONG`, `E2BIG` message too long; `EACCES` key not granted
//! to the caller (whether or not it exists, so a refusal does not reveal
//! other tenants' key names); `ENOENT` unknown key; `ENOTSUP` scheme not
//! valid for the key's type; `EPERM` message is not TLS handshake content
//! (handshake-only mode, the default; [`crate::shape`]); `EAGAIN` the
//! caller's identity is over its signing rate, or the signing queue is full.

use super::{read_name, MAX_MESSAGE};
use crate::server::{Caller, KeyServer};
use crate::shape;
use conclave_rpc::{BodyReader, BodyWriter, Status};
use rustls::SignatureScheme;
use tracing::debug;

/// Largest signature accepted in a reply (RSA-4096 is 512 bytes).
const MAX_SIGNATURE: usize = 1024;

/// A decoded request.
#[derive(Debug)]
pub struct SignRequest<'a> {
    /// Key name (already checked to be a plain name).
    pub name: &'a str,
    /// TLS signature scheme.
    pub scheme: SignatureScheme,
    /// The message to sign (not a digest).
    pub message: &'a [u8],
}

impl<'a> SignRequest<'a> {
    /// Decodes and checks a request body.
    pub fn decode(body: &'a [u8]) -> Result<SignRequest<'a>, Status> {
        let mut r = BodyReader::new(body);
        let name = read_name(&mut r)?;
        let scheme = SignatureScheme::from(r.u16()?);
        let len = r.u32()? as usize;
        if len > MAX_MESSAGE {
            return Err(Status::E2BIG);
        }
        let message = r.bytes(len)?;
        r.finish()?;
        Ok(SignRequest {
            name,
            scheme,
            message,
        })
    }

    /// Encodes a request body (the client does not check limits: the server
    /// is the authority and its refusal names the problem).
    pub fn encode(name: &str, scheme: SignatureScheme, message: &[u8]) -> Vec<u8> {
        let mut w = BodyWriter::with_capacity(16 + name.len() + message.len());
        w.str(name).u16(u16::from(scheme)).blob(message);
        w.finish()
    }
}

/// Server side.
pub async fn handle(server: &KeyServer, caller: &Caller, body: &[u8]) -> Result<Vec<u8>, Status> {
    let req = SignRequest::decode(body)?;
    if !server.grants().allows(caller.identity(), req.name) {
        return Err(Status::EACCES);
    }
    let key = server.store().get(req.name).ok_or(Status::ENOENT)?;
    if !key.algorithm.supports(req.scheme) {
        return Err(Status::ENOTSUP);
    }
    if server.handshake_only() {
        if let Err(why) = shape::classify(req.message) {
            debug!(identity = %caller.identity(), key = req.name, "refused to sign: {why}");
            return Err(Status::EPERM);
        }
    }
    // Only signatures count against the rate: refusals above cost nothing.
    if !caller.limit().try_sign() {
        return Err(Status::EAGAIN);
    }
    let sig = server
        .pool()
        .sign(key.key.clone(), req.scheme, req.message.to_vec())
        .await?;
    let mut w = BodyWriter::with_capacity(sig.len() + 4);
    w.blob(&sig);
    Ok(w.finish())
}

/// Client side: decodes the reply.
pub fn decode_reply(body: &[u8]) -> Result<Vec<u8>, Status> {
    let mut r = BodyReader::new(body);
    let sig = r.blob(MAX_SIGNATURE)?.to_vec();
    r.finish()?;
    Ok(sig)
}
