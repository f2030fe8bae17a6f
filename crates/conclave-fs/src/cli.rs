//! `conclave fs`: a small client for poking at a running file server (ls,
//! stat, cat, put, get, mkdir, rm, mv), its arguments and what it prints.

use crate::{proto, FsClient};
use conclave_rpc::{ClientOptions, Credentials, Endpoint, Role, TlsError};
use std::io::{self, Read, Write};
use std::path::PathBuf;

/// Arguments of `conclave fs`.
#[derive(clap::Args, Debug, Clone)]
pub struct FsClientArgs {
    /// The file server: unix:///path or tcp://HOST:PORT.
    #[arg(long)]
    pub server: Endpoint,
    /// Directory written by `conclave certs`.
    #[arg(long)]
    pub certs: PathBuf,
    /// Identity to present (`client` or `edge`).
    #[arg(long, default_value_t = Role::Client)]
    pub identity: Role,
    #[command(subcommand)]
    pub op: FsOp,
}

/// What to do.
#[derive(clap::Subcommand, Debug, Clone)]
pub enum FsOp {
    /// List a directory.
    Ls {
        /// Directory.
        #[arg(default_value = "/")]
        path: String,
    },
    /// Show a file's attributes.
    Stat {
        /// File.
        path: String,
    },
    /// Print a file to stdout.
    Cat {
        /// File.
        path: String,
    },
    /// Copy a local file (or stdin with `-`) to the server.
    Put {
        /// Local file or `-`.
        local: PathBuf,
        /// Path on the server.
        remote: String,
    },
    /// Copy a file from the server to a local file.
    Get {
        /// Path on the server.
        remote: String,
        /// Local file.
        local: PathBuf,
    },
    /// Make a directory (and its parents with -p).
    Mkdir {
        /// Directory.
        path: String,
        /// Create missing parents.
        #[arg(short)]
        p: bool,
    },
    /// Remove a file (or an empty directory with -d).
    Rm {
        /// Path.
        path: String,
        /// Remove an empty directory.
        #[arg(short)]
        d: bool,
    },
    /// Rename.
    Mv {
        /// From.
        from: String,
        /// To.
        to: String,
    },
}

/// Why a `conclave fs` operation failed.
#[derive(Debug, thiserror::Error)]
pub enum FsCliError {
    /// The client identity did not load.
    #[error("loading the {role} identity")]
    Identity {
        /// The identity asked for.
        role: Role,
        /// Cause.
        #[source]
        source: TlsError,
    },
    /// The TLS configuration could not be built.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The server refused or failed the operation `what` (e.g. `ls /x`).
    #[error("file server {server}: {what}")]
    Op {
        /// The server.
        server: Endpoint,
        /// The operation and its paths.
        what: String,
        /// Cause (an errno from the server, or the connection).
        #[source]
        source: io::Error,
    },
    /// The sync after a change failed.
    #[error("file server {server}")]
    Sync {
        /// The server.
        server: Endpoint,
        /// Cause.
        #[source]
        source: io::Error,
    },
    /// A local file could not be read or written (`what`: "reading /x").
    #[error("{what}")]
    Local {
        /// The local operation and path.
        what: String,
        /// Cause.
        #[source]
        source: io::Error,
    },
    /// Standard input or output failed.
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// Runs one operation; listings and file contents go to `out`.
pub fn run(a: &FsClientArgs, out: &mut dyn Write) -> Result<(), FsCliError> {
    let creds = Credentials::from_dir(&a.certs, a.identity).map_err(|source| FsCliError::Identity {
        role: a.identity,
        source,
    })?;
    let client = FsClient::new(a.server.clone(), ClientOptions::mtls(&creds, Role::FileServer)?);
    let op = |what: String| {
        let server = a.server.clone();
        move |source| FsCliError::Op { server, what, source }
    };
    let sync = || {
        client.sync().map_err(|source| FsCliError::Sync {
            server: a.server.clone(),
            source,
        })
    };
    match &a.op {
        FsOp::Ls { path } => {
            let mut v = client.read_dir(path).map_err(op(format!("ls {path}")))?;
            v.sort_by(|x, y| x.name.cmp(&y.name));
            for e in v {
                let kind = match e.file_type {
                    proto::ftype::DIR => "d",
                    proto::ftype::SYMLINK => "l",
                    _ => "-",
                };
                let _ = writeln!(out, "{kind} {}", e.name);
            }
        }
        FsOp::Stat { path } => {
            let m = client
                .symlink_metadata(path)
                .map_err(op(format!("stat {path}")))?;
            let _ = writeln!(
                out,
                "ino {} mode {:o} uid {} gid {} size {} links {} mtime {} ctime {}",
                m.ino(),
                m.mode(),
                m.uid(),
                m.gid(),
                m.len(),
                m.nlink(),
                m.mtime(),
                m.ctime()
            );
        }
        FsOp::Cat { path } => {
            let data = client.read(path).map_err(op(format!("cat {path}")))?;
            if let Err(e) = out.write_all(&data).and_then(|_| out.flush()) {
                if e.kind() != io::ErrorKind::BrokenPipe {
                    return Err(e.into());
                }
            }
        }
        FsOp::Put { local, remote } => {
            let mut data = Vec::new();
            if local.as_os_str() == "-" {
                io::stdin().read_to_end(&mut data)?;
            } else {
                data = std::fs::read(local).map_err(|source| FsCliError::Local {
                    what: format!("reading {}", local.display()),
                    source,
                })?;
            }
            client.write(remote, &data).map_err(op(format!("put {remote}")))?;
            sync()?;
        }
        FsOp::Get { remote, local } => {
            let data = client.read(remote).map_err(op(format!("get {remote}")))?;
            std::fs::write(local, data).map_err(|source| FsCliError::Local {
                what: format!("writing {}", local.display()),
                source,
            })?;
        }
        FsOp::Mkdir { path, p } => {
            if *p {
                client.create_dir_all(path)
            } else {
                client.create_dir(path)
            }
            .map_err(op(format!("mkdir {path}")))?;
            sync()?;
        }
        FsOp::Rm { path, d } => {
            if *d {
                client.remove_dir(path)
            } else {
                client.remove_file(path)
            }
            .map_err(op(format!("rm {path}")))?;
            sync()?;
        }
        FsOp::Mv { from, to } => {
            client.rename(from, to).map_err(op(format!("mv {from} {to}")))?;
            sync()?;
        }
    }
    Ok(())
}
