//! The key server's protocol, one file per operation: each holds the
//! request and reply encoding (used by the client) and the server-side
//! handler. Opcodes keep the original's numbering where an operation
//! survives (`SIGN` = 6, the slot of `RSA_SIGN`); the original's other
//! opcodes (0-5, 7: load-by-path, keygen, raw private encrypt/decrypt, public
//! operations, verify) are answered `ENOSYS` on purpose: they were oracles or
//! crashes, and TLS needs none of them.

pub mod get_key;
pub mod list;
pub mod sign;
pub mod ticket_keys;

use crate::name::{KeyName, MAX_NAME};
use conclave_rpc::{BodyReader, Status};

/// Sign a TLS handshake message with a named key under a TLS scheme.
pub const SIGN: u32 = 6;
/// List the names and algorithms of the loaded keys.
pub const LIST_KEYS: u32 = 8;
/// The public key (SPKI DER), algorithm and schemes of one key.
pub const GET_KEY: u32 = 9;
/// The fleet's TLS ticket keys of the caller's tenant (previous, current
/// and next epoch), see [`ticket_keys`].
pub const TICKET_KEYS: u32 = 10;

/// Opcodes of the original nsm that are deliberately not served.
pub const RETIRED: [u32; 7] = [0, 1, 2, 3, 4, 5, 7];

/// Largest message a client may ask to sign. TLS 1.3 signs about 130 bytes
/// and TLS 1.2 about 170 (more with large FFDHE groups); a cap keeps a
/// client from making the server hash megabytes per request.
pub const MAX_MESSAGE: usize = 2048;

/// Largest request body the server reads (name + scheme + message, with room).
pub const MAX_BODY: u32 = 4096;

/// Reads a key name field: `ENAMETOOLONG` over 64 bytes, `EPROTO` if
/// truncated, `EINVAL` if it is not a plain name (path-like names included).
pub(crate) fn read_name<'a>(r: &mut BodyReader<'a>) -> Result<&'a str, Status> {
    let name = r.name(MAX_NAME)?;
    KeyName::new(name).map_err(|_| Status::EINVAL)?;
    Ok(name)
}

#[cfg(test)]
mod tests {
    use super::sign::SignRequest;
    use super::*;
    use proptest::prelude::*;
    use rustls::SignatureScheme;

    #[test]
    fn sign_request_round_trips_and_names_each_problem() {
        let body = SignRequest::encode("server", SignatureScheme::RSA_PSS_SHA256, b"msg");
        let r = SignRequest::decode(&body).unwrap();
        assert_eq!(
            (r.name, r.scheme, r.message),
            ("server", SignatureScheme::RSA_PSS_SHA256, &b"msg"[..])
        );
        let long = SignRequest::encode("server", SignatureScheme::RSA_PSS_SHA256, &[0; MAX_MESSAGE + 1]);
        assert_eq!(SignRequest::decode(&long).unwrap_err(), Status::E2BIG);
        let path = SignRequest::encode("../x", SignatureScheme::RSA_PSS_SHA256, b"m");
        assert_eq!(SignRequest::decode(&path).unwrap_err(), Status::EINVAL);
        let name = SignRequest::encode(&"n".repeat(65), SignatureScheme::RSA_PSS_SHA256, b"m");
        assert_eq!(SignRequest::decode(&name).unwrap_err(), Status::ENAMETOOLONG);
        let mut trailing = body.clone();
        trailing.push(0);
        assert_eq!(SignRequest::decode(&trailing).unwrap_err(), Status::EPROTO);
        assert_eq!(
            SignRequest::decode(&body[..body.len() - 1]).unwrap_err(),
            Status::EPROTO
        );
    }

    proptest! {
        // Fuzz targets of every decoder that reads bytes from another process.
        #[test]
        fn decoders_survive_random_bytes(buf in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = SignRequest::decode(&buf);
            let _ = sign::decode_reply(&buf);
            let _ = list::decode_reply(&buf);
            let _ = get_key::decode_reply(&buf);
            let _ = ticket_keys::decode_reply(&buf);
            let _ = ticket_keys::handle(None, &"edge".parse().unwrap(), &buf);
            let store = crate::store::KeyStore::new();
            let grants = crate::grants::KeyGrants::default();
            let edge: conclave_rpc::Identity = "edge".parse().unwrap();
            let _ = list::handle(&store, &grants, &edge, &buf);
            let _ = get_key::handle(&store, &grants, &edge, &buf);
            let _ = crate::shape::classify(&buf);
        }
    }
}
