//! `GET_KEY` (9): the public half of one key, so the edge can check that its
//! certificate matches and offer only schemes the key can sign with.
//!
//! Request: `str name`. Reply: `u16 algorithm`, `blob spki` (DER),
//! `u16 count`, `count × u16` TLS signature schemes (preferred first).
//! Errors: `EACCES` key not granted to the caller (checked before its
//! existence), `ENOENT` unknown name, `EINVAL` invalid name, `ENAMETOOLONG`.

use super::read_name;
use crate::algorithm::KeyAlgorithm;
use crate::grants::KeyGrants;
use crate::store::KeyStore;
use conclave_rpc::{BodyReader, BodyWriter, Identity, Status};
use rustls::SignatureScheme;

/// Largest SPKI accepted in a reply (RSA-4096 is about 550 bytes).
const MAX_SPKI: usize = 4096;

/// A decoded reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublicKeyReply {
    /// Type and size.
    pub algorithm: KeyAlgorithm,
    /// SubjectPublicKeyInfo DER.
    pub spki: Vec<u8>,
    /// Schemes the key signs with, preferred first.
    pub schemes: Vec<SignatureScheme>,
}

/// Client side: the request body.
pub fn encode_request(name: &str) -> Vec<u8> {
    let mut w = BodyWriter::new();
    w.str(name);
    w.finish()
}

/// Server side.
pub fn handle(
    store: &KeyStore,
    grants: &KeyGrants,
    caller: &Identity,
    body: &[u8],
) -> Result<Vec<u8>, Status> {
    let mut r = BodyReader::new(body);
    let name = read_name(&mut r)?;
    r.finish()?;
    if !grants.allows(caller, name) {
        return Err(Status::EACCES);
    }
    let key = store.get(name).ok_or(Status::ENOENT)?;
    let mut w = BodyWriter::new();
    w.u16(key.algorithm.code()).blob(&key.spki);
    let schemes = key.algorithm.schemes();
    w.u16(schemes.len() as u16);
    for s in schemes {
        w.u16(u16::from(*s));
    }
    Ok(w.finish())
}

/// Client side: decodes the reply.
pub fn decode_reply(body: &[u8]) -> Result<PublicKeyReply, Status> {
    let mut r = BodyReader::new(body);
    let algorithm = KeyAlgorithm::from_code(r.u16()?).ok_or(Status::EPROTO)?;
    let spki = r.blob(MAX_SPKI)?.to_vec();
    let n = r.u16()? as usize;
    let mut schemes = Vec::with_capacity(n.min(16));
    for _ in 0..n {
        schemes.push(SignatureScheme::from(r.u16()?));
    }
    r.finish()?;
    Ok(PublicKeyReply {
        algorithm,
        spki,
        schemes,
    })
}
