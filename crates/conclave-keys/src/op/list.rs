//! `LIST_KEYS` (8): which keys the caller may use. Keys granted to other
//! identities are left out, so one tenant does not learn another's names.
//!
//! Request: empty. Reply: `u32 count`, then per key `str name`, `u16 algorithm`.

use crate::algorithm::KeyAlgorithm;
use crate::grants::KeyGrants;
use crate::store::KeyStore;
use conclave_rpc::{BodyReader, BodyWriter, Identity, Status};

/// One key in a listing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyEntry {
    /// Key name.
    pub name: String,
    /// Type and size.
    pub algorithm: KeyAlgorithm,
}

/// Server side.
pub fn handle(
    store: &KeyStore,
    grants: &KeyGrants,
    caller: &Identity,
    body: &[u8],
) -> Result<Vec<u8>, Status> {
    BodyReader::new(body).finish()?;
    let visible: Vec<_> = store
        .iter()
        .filter(|k| grants.allows(caller, k.name.as_str()))
        .collect();
    let mut w = BodyWriter::new();
    w.u32(visible.len() as u32);
    for k in visible {
        w.str(k.name.as_str()).u16(k.algorithm.code());
    }
    Ok(w.finish())
}

/// Client side: decodes the reply.
pub fn decode_reply(body: &[u8]) -> Result<Vec<KeyEntry>, Status> {
    let mut r = BodyReader::new(body);
    let n = r.u32()? as usize;
    // Each entry takes at least 6 bytes; never trust the count for allocation.
    let mut v = Vec::with_capacity(n.min(r.remaining() / 6));
    for _ in 0..n {
        let name = r.name(crate::name::MAX_NAME)?.to_string();
        let algorithm = KeyAlgorithm::from_code(r.u16()?).ok_or(Status::EPROTO)?;
        v.push(KeyEntry { name, algorithm });
    }
    r.finish()?;
    Ok(v)
}
