//! The transport every conclave service shares.
//!
//! Owns the wire format of the original Phoenix servers (an 8-byte header:
//! `u32` big-endian code, `u32` big-endian body length, then the body), the
//! status codes carried in replies, the `tcp://` and `unix://` endpoints,
//! mutual TLS with rustls, a server loop with limits (that no peer can use to
//! stall or exhaust it) and graceful shutdown,
//! and blocking and async clients with connection pooling. It also issues the
//! conclave's certificates (`pki`). It knows nothing of what the services mean.
#![forbid(unsafe_code)]

mod admission;
pub mod async_pipeline;
pub mod block_in_place;
pub mod client;
mod conn_thread;
mod connection_mode;
pub mod endpoint;
pub mod frame;
pub mod identity;
pub mod limits;
pub mod pipeline;
pub mod pki;
pub mod refusals;
mod requests;
pub mod role;
pub mod server;
pub mod shutdown;
mod socket;
pub mod status;
pub mod stream;
pub mod tls;
pub mod wire;

pub use async_pipeline::AsyncPipeline;
pub use block_in_place::run_blocking;
pub use client::{AsyncConnection, AsyncPool, ClientOptions, Connection, Pool, RpcError};
pub use conn_thread::THREAD_NAME as CONNECTION_THREAD_NAME;
pub use connection_mode::ConnectionMode;
pub use endpoint::Endpoint;
pub use frame::{Frame, FrameError, Header, HEADER_LEN};
pub use identity::{Identity, Tenant};
pub use limits::ServerLimits;
pub use pipeline::Pipeline;
pub use role::Role;
pub use server::{PeerInfo, Server, ServerOptions, Service, DEFAULT_WRITE_TIMEOUT};
pub use shutdown::Shutdown;
pub use status::Status;
pub use tls::{Credentials, TlsError};
pub use wire::{BodyReader, BodyWriter};
