//! `conclave fs`: a small client for poking at a running file server.

use anyhow::Context;
use conclave_fs::FsClient;
use conclave_rpc::Role;
use conclave_rpc::{ClientOptions, Credentials, Endpoint};
use std::io::{Read, Write};
use std::path::PathBuf;

/// Arguments.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The file server: unix:///path or tcp://HOST:PORT.
    #[arg(long)]
    pub server: Endpoint,
    /// Directory written by `conclave certs`.
    #[arg(long)]
    pub certs: PathBuf,
    /// Identity to present (`client` or `edge`).
    #[arg(long, default_value = "client")]
    pub identity: conclave_rpc::Role,
    #[command(subcommand)]
    pub op: Op,
}

/// What to do.
#[derive(clap::Subcommand, Debug)]
pub enum Op {
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

/// Runs one operation.
pub fn run(a: Args) -> anyhow::Result<()> {
    let creds = Credentials::from_dir(&a.certs, a.identity)
        .with_context(|| format!("loading the {} identity", a.identity))?;
    let client = FsClient::new(a.server.clone(), ClientOptions::mtls(&creds, Role::FileServer)?);
    let ctx = || format!("file server {}", a.server);
    match a.op {
        Op::Ls { path } => {
            let mut v = client
                .read_dir(&path)
                .with_context(|| format!("{}: ls {path}", ctx()))?;
            v.sort_by(|x, y| x.name.cmp(&y.name));
            for e in v {
                let kind = match e.file_type {
                    conclave_fs::proto::ftype::DIR => "d",
                    conclave_fs::proto::ftype::SYMLINK => "l",
                    _ => "-",
                };
                super::print_line(format!("{kind} {}", e.name));
            }
        }
        Op::Stat { path } => {
            let m = client
                .symlink_metadata(&path)
                .with_context(|| format!("{}: stat {path}", ctx()))?;
            super::print_line(format!(
                "ino {} mode {:o} uid {} gid {} size {} links {} mtime {} ctime {}",
                m.ino(),
                m.mode(),
                m.uid(),
                m.gid(),
                m.len(),
                m.nlink(),
                m.mtime(),
                m.ctime()
            ));
        }
        Op::Cat { path } => {
            let data = client
                .read(&path)
                .with_context(|| format!("{}: cat {path}", ctx()))?;
            let mut out = std::io::stdout().lock();
            if let Err(e) = out.write_all(&data).and_then(|_| out.flush()) {
                if e.kind() != std::io::ErrorKind::BrokenPipe {
                    return Err(e.into());
                }
            }
        }
        Op::Put { local, remote } => {
            let mut data = Vec::new();
            if local.as_os_str() == "-" {
                std::io::stdin().read_to_end(&mut data)?;
            } else {
                data = std::fs::read(&local).with_context(|| format!("reading {}", local.display()))?;
            }
            client
                .write(&remote, &data)
                .with_context(|| format!("{}: put {remote}", ctx()))?;
            client.sync().with_context(ctx)?;
        }
        Op::Get { remote, local } => {
            let data = client
                .read(&remote)
                .with_context(|| format!("{}: get {remote}", ctx()))?;
            std::fs::write(&local, data).with_context(|| format!("writing {}", local.display()))?;
        }
        Op::Mkdir { path, p } => {
            if p {
                client.create_dir_all(&path)
            } else {
                client.create_dir(&path)
            }
            .with_context(|| format!("{}: mkdir {path}", ctx()))?;
            client.sync().with_context(ctx)?;
        }
        Op::Rm { path, d } => {
            if d {
                client.remove_dir(&path)
            } else {
                client.remove_file(&path)
            }
            .with_context(|| format!("{}: rm {path}", ctx()))?;
            client.sync().with_context(ctx)?;
        }
        Op::Mv { from, to } => {
            client
                .rename(&from, &to)
                .with_context(|| format!("{}: mv {from} {to}", ctx()))?;
            client.sync().with_context(ctx)?;
        }
    }
    Ok(())
}
