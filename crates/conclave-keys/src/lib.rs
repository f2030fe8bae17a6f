//! The key server (`nsm`) of a conclave and the keyless side of TLS.
//!
//! Owns the key store (PEM private keys loaded from one directory, named by
//! file stem), the signing pool (all cores, bounded queue), the RPC service
//! with one file per operation (`op/`), a blocking pooled client
//! ([`KeyClient`]) and [`RemoteSigningKey`], a `rustls::sign::SigningKey`
//! whose signatures are made by the key server, so the edge process holds only
//! the certificate. [`run`] and [`run_probe`] are the `conclave keyserver` and
//! `conclave keyless-probe` processes; [`fiber`] runs the signing step of
//! keyless handshakes as a coroutine on the edge's runtime thread, awaiting
//! the signature ([`HandshakeThreads`] give it threads instead) ([`KeyServerSettings`],
//! [`KeylessProbeSettings`]). It knows nothing of files served or shared memory.
//!
//! What differs from the original nsm: no raw RSA, no decryption, no padding
//! chosen by the client (only TLS signature schemes), keys named by an
//! allow-listed name instead of a host path, exact-match lookup, mutual TLS
//! with keys granted per identity (role + tenant, [`grants`]), only TLS
//! handshake content signed by default ([`shape`]), a per-identity rate
//! limit ([`rate`]), and signing on every core.
#![forbid(unsafe_code)]

pub mod algorithm;
pub mod client;
pub mod error;
pub mod failover;
pub mod fiber;
pub mod grants;
pub mod handshake;
pub mod keyref;
pub mod name;
pub mod op;
pub mod pool;
pub mod probe;
mod process;
pub mod rate;
pub mod remote;
pub mod server;
pub mod settings;
pub mod shape;
pub mod store;

pub use algorithm::KeyAlgorithm;
pub use client::{KeyClient, KeyInfo};
pub use error::KeysError;
pub use failover::KeyServers;
pub use grants::{KeyGrant, KeyGrants};
pub use handshake::HandshakeThreads;
pub use name::KeyName;
pub use process::{run, run_probe, KeyServerError};
pub use remote::{certified_key, RemoteSigningKey};
pub use server::{KeyServer, KeyServerOptions};
pub use settings::{KeyServerSettings, KeylessProbeSettings};
pub use store::KeyStore;

/// The rustls the public API speaks (`CertifiedKey`, `SignatureScheme`), so
/// callers use the same version.
pub use rustls;

/// The role that asks for signatures (the default grant's, and the one the
/// probe presents).
pub const CLIENT_ROLE: conclave_rpc::Role = conclave_rpc::Role::Edge;
