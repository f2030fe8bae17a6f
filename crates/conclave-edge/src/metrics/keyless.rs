//! Timing the key server's signatures: a wrapper around a keyless
//! [`SigningKey`] that records each `sign` call, so the key-server crate
//! needs no hook of its own.

use super::{backend_call, Backend};
use rustls::sign::{CertifiedKey, Signer, SigningKey};
use rustls::{SignatureAlgorithm, SignatureScheme};
use std::sync::Arc;

/// `ck` with its key's signatures timed and counted as key-server calls.
pub fn observe(ck: Arc<CertifiedKey>) -> Arc<CertifiedKey> {
    let mut timed = CertifiedKey::new(ck.cert.clone(), Arc::new(TimedKey(ck.key.clone())));
    timed.ocsp.clone_from(&ck.ocsp);
    Arc::new(timed)
}

#[derive(Debug)]
struct TimedKey(Arc<dyn SigningKey>);

impl SigningKey for TimedKey {
    fn choose_scheme(&self, offered: &[SignatureScheme]) -> Option<Box<dyn Signer>> {
        self.0
            .choose_scheme(offered)
            .map(|s| Box::new(TimedSigner(s)) as Box<dyn Signer>)
    }

    fn public_key(&self) -> Option<rustls::pki_types::SubjectPublicKeyInfoDer<'_>> {
        self.0.public_key()
    }

    fn algorithm(&self) -> SignatureAlgorithm {
        self.0.algorithm()
    }
}

#[derive(Debug)]
struct TimedSigner(Box<dyn Signer>);

impl Signer for TimedSigner {
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, rustls::Error> {
        let t = std::time::Instant::now();
        let r = self.0.sign(message);
        backend_call(Backend::KeyServer, "sign", t.elapsed(), r.is_ok());
        r
    }

    fn scheme(&self) -> SignatureScheme {
        self.0.scheme()
    }
}
