//! `conclave origin`: the seed's origin, a plain-HTTP static server that marks
//! every response `Cache-Control: public, no-transform` so edges cache it.

use crate::access_log::AccessLog;
use crate::server::{accept_loop, Limits, Listener};
use crate::site::{Backend, Site};
use crate::storage::HostStorage;
use crate::worker::{finish, stop_signal};
use crate::EdgeError;
use http::header::{HeaderName, HeaderValue};
use hyper_util::server::graceful::GracefulShutdown;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;

/// Settings of an origin server: the arguments of `conclave origin`, shared
/// by its command line and by programs that start one (`conclave eval`).
#[derive(clap::Args, Debug, Clone, PartialEq, Eq)]
pub struct OriginSettings {
    /// Directory to serve.
    #[arg(long)]
    pub root: PathBuf,
    /// Plain-HTTP address to listen on.
    #[arg(long, default_value = "127.0.0.1:8081")]
    pub listen: SocketAddr,
    /// Append one line per request to this file.
    #[arg(long)]
    pub access_log: Option<PathBuf>,
    /// Tokio threads.
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
}

impl OriginSettings {
    /// An origin serving `root` on `listen`, with the defaults of the rest.
    pub fn new(root: impl Into<PathBuf>, listen: SocketAddr) -> OriginSettings {
        OriginSettings {
            root: root.into(),
            listen,
            access_log: None,
            threads: 1,
        }
    }

    /// The argument list after the binary, `["origin", "--root", ..]`, that
    /// `conclave` parses back into these settings.
    pub fn to_args(&self) -> Vec<String> {
        let mut a = vec![
            "origin".to_string(),
            "--root".into(),
            self.root.display().to_string(),
            "--listen".into(),
            self.listen.to_string(),
        ];
        if let Some(p) = &self.access_log {
            a.extend(["--access-log".into(), p.display().to_string()]);
        }
        a.extend(["--threads".into(), self.threads.to_string()]);
        a
    }
}

/// Serves until SIGTERM/SIGINT.
pub fn run_origin(cfg: &OriginSettings) -> Result<(), EdgeError> {
    let rt =
        crate::worker::runtime(cfg.threads, false).map_err(|e| EdgeError::io("building the runtime", e))?;
    rt.block_on(async {
        let (_stopper, stop) = stop_signal(false)?;
        let storage = HostStorage::new(&cfg.root, false)
            .map_err(|e| EdgeError::io(format!("root {}", cfg.root.display()), e))?;
        if !cfg.root.is_dir() {
            return Err(EdgeError::Setup(format!(
                "root {} is not a directory",
                cfg.root.display()
            )));
        }
        let access_log = match &cfg.access_log {
            Some(p) => Some(Arc::new(
                AccessLog::open(p, crate::config::AccessLogFormat::Main)
                    .map_err(|e| EdgeError::io(format!("access log {}", p.display()), e))?,
            )),
            None => None,
        };
        let site = Arc::new(Site {
            backend: Backend::Static(Arc::new(storage)),
            max_uri_length: 8192,
            add_headers: vec![(
                HeaderName::from_static("cache-control"),
                HeaderValue::from_static("public, no-transform"),
            )],
            access_log,
            name: Arc::from(cfg.listen.to_string()),
            waf: None,
            waf_body_limit: 0,
            body_timeout: Duration::from_secs(60),
            max_body: crate::site::MAX_BODY,
            compress: Default::default(),
            always_headers: Vec::new(),
            server_tokens: false,
        });
        let tcp = tokio::net::TcpListener::bind(cfg.listen)
            .await
            .map_err(|e| EdgeError::io(format!("listen {}", cfg.listen), e))?;
        tracing::info!("origin serving {} on http://{}", cfg.root.display(), cfg.listen);
        let limits = Arc::new(Limits::basic(
            Duration::from_secs(60),
            Duration::from_secs(65),
            32 << 10,
        ));
        let graceful = Arc::new(GracefulShutdown::new());
        let l = Listener { tcp, tls: None, site };
        accept_loop(l, limits, Arc::new(Semaphore::new(8192)), graceful.clone(), stop).await;
        finish(graceful, Duration::from_secs(10)).await;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(subcommand)]
        command: Command,
    }

    #[derive(clap::Subcommand)]
    enum Command {
        Origin(OriginSettings),
    }

    fn parse(args: Vec<String>) -> OriginSettings {
        let Command::Origin(o) = Cli::try_parse_from(std::iter::once("conclave".to_string()).chain(args))
            .unwrap()
            .command;
        o
    }

    #[test]
    fn to_args_parses_back_to_the_same_settings() {
        let mut o = OriginSettings::new("/srv/html", "127.0.0.1:9081".parse().unwrap());
        assert_eq!(parse(o.to_args()), o);
        o.access_log = Some("/tmp/origin access.log".into());
        o.threads = 4;
        assert_eq!(parse(o.to_args()), o);
        let d = parse(vec!["origin".into(), "--root".into(), "html".into()]);
        assert_eq!(d, OriginSettings::new("html", "127.0.0.1:8081".parse().unwrap()));
    }
}
