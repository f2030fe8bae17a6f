//! Memory files shared between processes: a named lock with an optional
//! fixed-size segment, after the Phoenix memory servers.
//!
//! `lock()` pulls the canonical copy of the segment into a private buffer;
//! unlocking publishes it. A memory file lives while some client has it open
//! and goes away when the last one closes or disconnects; a crashed client
//! releases its locks. Four kinds sit behind one [`MemoryStore`] trait,
//! selected by a [`MemSpec`] string:
//!
//! * `local` — in-process (a mutex); the baseline and the edge's single-worker kind;
//! * `smdish+unix:///sock` / `smdish+tcp://h:p` — the server keeps the segments
//!   and the lock, waiters queue in the server (no polling);
//! * `smuf+unix:///sock?dir=/host/dir` — the segment travels through a host file
//!   sealed with AES-256-GCM; the server owns the lock, the keys and the version;
//! * `smc:///host/dir?secret=/file` — no server: host files sealed under a key
//!   derived from the conclave's secret file, locked with `flock`.
//!
//! This crate owns the wire protocol of the memory servers ([`proto`]), the
//! server ([`server::MemServer`]), the blocking and async clients, the
//! `conclave memserver` process ([`run`], settings [`MemServerSettings`]) and
//! the `conclave mem` client commands ([`cli`]). It knows nothing of HTTP. See `docs/mem.md` for the threat model of each kind.
#![forbid(unsafe_code)]

pub mod async_client;
pub mod cli;
pub mod client;
pub mod error;
pub mod grant;
pub mod local;
pub mod name;
mod process;
pub mod proto;
mod remote;
pub mod segment_seal;
pub mod server;
pub mod settings;
pub mod smc;
pub mod spec;

pub use async_client::{AsyncLockGuard, AsyncMemoryFile, AsyncMemoryStore};
pub use client::{
    connect, connect_bounded, CallLimits, LockGuard, MemOptions, MemoryFile, MemoryStore, Segment,
};
pub use error::MemError;
pub use grant::{MemGrant, MemGrants};
pub use process::{run, MemServerError};
pub use server::{MemLimits, MemServer, ServerKind};
pub use settings::{MemServerKind, MemServerSettings};
pub use spec::MemSpec;

/// Largest segment a memory file may have (16 MiB): bounds what one client
/// can make a server allocate, and the RPC body limit.
pub const MAX_SEGMENT: usize = 16 * 1024 * 1024;

/// Longest memory-file name, in bytes (the original smdish limit).
pub const MAX_NAME: usize = 255;
