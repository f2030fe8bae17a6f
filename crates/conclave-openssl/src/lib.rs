//! `libconclave_openssl.so`: an OpenSSL 3 provider that lets unmodified
//! OpenSSL programs (Debian's NGINX, `openssl s_server`) use a TLS key held
//! by the conclave key server. The program reads a key reference file
//! (`conclave keyref`, [`conclave_keys::keyref`]) where it would read a
//! private key; the provider's decoder turns it into a key whose signatures
//! are made by the key server over the same mutual-TLS RPC as the edge's
//! `RemoteSigningKey`.
//!
//! Why a provider and not an ENGINE: libssl hands a provider's one-shot
//! `digest_sign` the whole message it signs (the TLS 1.3 CertificateVerify
//! content, the TLS 1.2 ServerKeyExchange parameters), so the key server
//! keeps checking that it signs only TLS handshake content. An ENGINE's
//! RSA/EC methods get digests, which the key server would have to sign
//! blind. The provider implements no `sign` over a digest at all.
//!
//! Owns: the provider ABI ([`ffi`], the only module with `unsafe`), the
//! remote key and its per-process key-server client ([`key`]), the mapping
//! from OpenSSL's digest and padding parameters to TLS signature schemes
//! ([`scheme`]) and the error reasons ([`error`]). Does not own the key
//! reference format (conclave-keys) nor any crypto: OpenSSL's default
//! provider does everything but our keys' signatures.
#![deny(unsafe_code)]

pub mod error;
mod ffi;
pub mod key;
pub mod scheme;
