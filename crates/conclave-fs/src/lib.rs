//! The file server (`nextfs`) and its client.
//!
//! The server puts one ext2 image (`conclave-ext2`) over one protected block
//! device (`conclave-bd`) behind the conclave RPC (`conclave-rpc`): each
//! connection has its own descriptor table, reads share a lock so many
//! clients read at once, and a write holds the file system only for its own
//! duration. The client (`FsClient`, `AsyncFsClient`) is shaped like
//! `std::fs`. [`run`] is the `conclave fileserver` process (its command line
//! is [`FileServerSettings`]) and [`cli`] the `conclave fs` client commands.
//! This crate knows nothing of HTTP.
#![forbid(unsafe_code)]

pub mod client;
pub mod grants;
pub mod proto;
pub mod server;

pub use client::{AsyncFsClient, DirEntry, File, FsClient, Metadata, OpenOptions};
pub use grants::{Access, Grant, Grants};
pub use server::{CommitHook, FileServer, FileServerOptions};

// The `conclave fileserver` process, its command line, and the `conclave fs` client.
pub mod cli;
mod process;
pub mod settings;

pub use process::{run, FileServerError};
pub use settings::FileServerSettings;
