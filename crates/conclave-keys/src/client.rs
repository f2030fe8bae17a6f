//! A blocking, pooled client of the key server. Blocking because rustls'
//! `Signer::sign` is synchronous; pooled so concurrent handshakes each get a
//! connection and a restarted key server costs one reconnect.
//!
//! Signatures may instead go over a few shared, pipelined connections
//! ([`KeyClient::with_sign_lanes`], [`conclave_rpc::Pipeline`]): concurrent
//! `SIGN` requests are written together and replies matched by order. The
//! edge signs this way: the key server answers every request a connection
//! has buffered before it reads again and writes their replies in one write,
//! so a burst of handshakes costs one wake-up on each side instead of one
//! per signature (measured: ~25–45 µs less edge CPU and ~10 µs less
//! key-server CPU per keyless handshake, docs/benchmarks.md, issue 20).
//! Against a key server that answered one request per wake-up it cost the
//! edge ~20 µs more than a connection per thread, which is why the pool
//! stays for every other call.
//!
//! Handshakes that sign on the runtime thread (`crate::fiber`) await their
//! signature instead, over [`conclave_rpc::AsyncPipeline`] connections of
//! their own ([`KeyClient::sign_async`]), opened when first used.

use crate::algorithm::KeyAlgorithm;
use crate::error::KeysError;
use crate::name::KeyName;
use crate::op::{self, get_key, list, sign::SignRequest};
use conclave_rpc::{AsyncPipeline, ClientOptions, Credentials, Endpoint, Pipeline, Pool};
use rustls::SignatureScheme;
use std::time::Duration;

pub use crate::op::list::KeyEntry;

/// What the key server says about one key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyInfo {
    /// Key name.
    pub name: String,
    /// Type and size.
    pub algorithm: KeyAlgorithm,
    /// Public key, SubjectPublicKeyInfo DER.
    pub spki: Vec<u8>,
    /// Schemes the key signs with, preferred first.
    pub schemes: Vec<SignatureScheme>,
}

/// Pipelined connections to sign over, per process, when `processes`
/// processes (edge workers) of this host sign: the key server signs one
/// connection's requests one after another on one of its cores, so all the
/// processes together need about one connection per core to keep every core
/// signing, and no more: fewer connections make bigger bursts, each costing
/// one wake-up (measured on 2 cores: one lane per worker spent ~8 µs less
/// edge CPU per handshake than two, at the same throughput).
pub fn sign_lanes(processes: usize) -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    cores.div_ceil(processes.max(1)).max(1)
}

/// A client of one key server.
pub struct KeyClient {
    pool: Pool,
    /// `Some`: signatures go over these pipelined connections, not the pool.
    signing: Option<Pipeline>,
    /// Where awaited signatures go (`sign_async`): as many lanes as
    /// `signing` has, one without it.
    awaited: AsyncPipeline,
}

impl KeyClient {
    /// Timeouts for the keyless path: a handshake should fail in seconds,
    /// not wait a minute, when the key server is down or stuck.
    pub fn default_options(creds: &Credentials) -> Result<ClientOptions, KeysError> {
        let mut opts = ClientOptions::mtls(creds, conclave_rpc::Role::KeyServer)?;
        opts.connect_timeout = Duration::from_secs(2);
        opts.io_timeout = Duration::from_secs(5);
        opts.max_body = 64 * 1024;
        // Each handshake in flight holds a connection; keep enough idle ones
        // that a burst (ab -c 128) does not pay a new mTLS handshake per
        // signature. The key server accepts 1024 connections.
        opts.max_idle = 256;
        Ok(opts)
    }

    /// A client with explicit options (no connection is made yet).
    pub fn new(endpoint: Endpoint, opts: ClientOptions) -> KeyClient {
        KeyClient {
            awaited: AsyncPipeline::new(endpoint.clone(), opts.clone(), 1),
            pool: Pool::new(endpoint, opts),
            signing: None,
        }
    }

    /// [`KeyClient::new`] signing over `lanes` shared, pipelined connections
    /// (at least one; see the module doc for when that pays).
    pub fn with_sign_lanes(endpoint: Endpoint, opts: ClientOptions, lanes: usize) -> KeyClient {
        KeyClient {
            signing: Some(Pipeline::new(endpoint.clone(), opts.clone(), lanes)),
            awaited: AsyncPipeline::new(endpoint.clone(), opts.clone(), lanes),
            pool: Pool::new(endpoint, opts),
        }
    }

    /// A client presenting `creds` (normally the `edge` identity) and
    /// expecting a `keyserver` certificate.
    pub fn with_credentials(endpoint: Endpoint, creds: &Credentials) -> Result<KeyClient, KeysError> {
        Ok(Self::new(endpoint, Self::default_options(creds)?))
    }

    /// The key server this client reaches.
    pub fn endpoint(&self) -> &Endpoint {
        self.pool.endpoint()
    }

    fn call(&self, op_name: &'static str, code: u32, body: &[u8]) -> Result<Vec<u8>, KeysError> {
        Self::result(op_name, self.pool.call(code, body)?)
    }

    fn result(op_name: &'static str, reply: conclave_rpc::Frame) -> Result<Vec<u8>, KeysError> {
        match reply.into_result() {
            Ok(b) => Ok(b.to_vec()),
            Err(status) => Err(KeysError::Refused { op: op_name, status }),
        }
    }

    /// Signatures awaiting their reply on the pipelined connections right
    /// now (0 without them).
    pub fn signs_in_flight(&self) -> usize {
        self.signing.as_ref().map_or(0, Pipeline::in_flight) + self.awaited.in_flight()
    }

    /// The keys the server holds.
    pub fn list(&self) -> Result<Vec<KeyEntry>, KeysError> {
        let body = self.call("LIST_KEYS", op::LIST_KEYS, &[])?;
        list::decode_reply(&body).map_err(|_| KeysError::Malformed { op: "LIST_KEYS" })
    }

    /// The public key, algorithm and schemes of key `name`.
    pub fn key_info(&self, name: &str) -> Result<KeyInfo, KeysError> {
        KeyName::new(name)?;
        let body = self.call("GET_KEY", op::GET_KEY, &get_key::encode_request(name))?;
        Self::key_info_of(name, &body)
    }

    /// A GET_KEY reply's body as the [`KeyInfo`] of `name`.
    fn key_info_of(name: &str, body: &[u8]) -> Result<KeyInfo, KeysError> {
        let r = get_key::decode_reply(body).map_err(|_| KeysError::Malformed { op: "GET_KEY" })?;
        Ok(KeyInfo {
            name: name.to_string(),
            algorithm: r.algorithm,
            spki: r.spki,
            schemes: r.schemes,
        })
    }

    /// Signs `message` with key `name` under `scheme`.
    pub fn sign(&self, name: &str, scheme: SignatureScheme, message: &[u8]) -> Result<Vec<u8>, KeysError> {
        let req = SignRequest::encode(name, scheme, message);
        let reply = match &self.signing {
            Some(p) => p.call(op::SIGN, &req)?,
            None => self.pool.call(op::SIGN, &req)?,
        };
        Self::signature_of(reply)
    }

    /// A SIGN reply as the signature, or the key server's refusal.
    fn signature_of(reply: conclave_rpc::Frame) -> Result<Vec<u8>, KeysError> {
        let body = Self::result("SIGN", reply)?;
        op::sign::decode_reply(&body).map_err(|_| KeysError::Malformed { op: "SIGN" })
    }

    /// [`KeyClient::sign`], awaited on the async pipelined connections
    /// (inside a tokio runtime): no thread waits for the key server.
    pub async fn sign_async(
        &self,
        name: &str,
        scheme: SignatureScheme,
        message: &[u8],
    ) -> Result<Vec<u8>, KeysError> {
        let req = SignRequest::encode(name, scheme, message);
        Self::signature_of(self.awaited.call(op::SIGN, &req).await?)
    }

    /// [`KeyClient::key_info`], awaited like [`KeyClient::sign_async`].
    pub async fn key_info_async(&self, name: &str) -> Result<KeyInfo, KeysError> {
        KeyName::new(name)?;
        let reply = self
            .awaited
            .call(op::GET_KEY, &get_key::encode_request(name))
            .await?;
        Self::key_info_of(name, &Self::result("GET_KEY", reply)?)
    }

    /// The fleet ticket keys of `tenant` (`""`: the caller's own), see
    /// [`op::ticket_keys`].
    pub fn ticket_keys(&self, tenant: &str) -> Result<op::ticket_keys::EpochKeys, KeysError> {
        let body = self.call(
            "TICKET_KEYS",
            op::TICKET_KEYS,
            &op::ticket_keys::encode_request(tenant),
        )?;
        op::ticket_keys::decode_reply(&body).map_err(|_| KeysError::Malformed { op: "TICKET_KEYS" })
    }
}
