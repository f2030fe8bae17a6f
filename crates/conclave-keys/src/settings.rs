//! The typed command lines of `conclave keyserver` and the hidden `conclave
//! keyless-probe`: parsed by clap in the binary and written back by
//! `to_args` for whoever starts them (`conclave eval`, `conclave up`, tests),
//! so no caller spells a flag itself.

use crate::grants::KeyGrant;
use crate::rate::DEFAULT_MAX_SIGNS_PER_SEC;
use crate::KeyName;
use conclave_rpc::identity::IdentityPattern;
use conclave_rpc::{ConnectionMode, Endpoint, ServerLimits, ServerOptions};
use conclave_units::Dur;
use std::net::SocketAddr;
use std::path::PathBuf;

/// Where a key server listens unless told otherwise.
pub const DEFAULT_LISTEN: &str = "tcp://127.0.0.1:9000";
/// Signing requests that may wait for a thread unless told otherwise.
pub const DEFAULT_QUEUE: usize = 4096;
/// How the key server serves its connections unless told otherwise: a
/// thread each. Its clients are few and long-lived (edge workers × lanes,
/// NGINX workers), and without the reactor on the request path a signature
/// costs less server CPU (docs/benchmarks-keys.md, "Connection modes").
pub const DEFAULT_CONNECTIONS: ConnectionMode = ConnectionMode::Threads;

/// Everything `conclave keyserver` needs.
#[derive(clap::Args, Debug, Clone, PartialEq, Eq)]
pub struct KeyServerSettings {
    /// Directory of PEM private keys; `NAME.key` is served as key `NAME`.
    #[arg(long)]
    pub keys: PathBuf,
    /// Where to listen: tcp://HOST:PORT (port 0 picks one) or unix:///path.
    #[arg(long, default_value = DEFAULT_LISTEN)]
    pub listen: Endpoint,
    /// Directory written by `conclave certs` (root.crt, keyserver.crt, keyserver.key).
    #[arg(long)]
    pub certs: PathBuf,
    /// Hand each signature to a pool of signing threads with a bounded
    /// queue (EAGAIN when full) instead of signing on the runtime thread
    /// that read the request (the default: the hand-off measured ~20-50 µs
    /// of CPU per signature, docs/benchmarks-keys.md).
    #[arg(long)]
    pub sign_pool: bool,
    /// Signing threads of `--sign-pool` (0 = one per core).
    #[arg(long, default_value_t = 0, requires = "sign_pool")]
    pub threads: usize,
    /// Signing requests that may wait for a `--sign-pool` thread; more get EAGAIN.
    #[arg(long, default_value_t = DEFAULT_QUEUE, requires = "sign_pool")]
    pub queue: usize,
    /// Accepted for older command lines: signing inline is the default.
    #[arg(long, hide = true, conflicts_with = "sign_pool")]
    pub sign_inline: bool,
    /// Who may use which key, IDENTITY:KEYNAME (repeatable): `edge@acme:acme`,
    /// `edge@*:shared`, `edge:*`. None given = `edge:*` (the `edge` of tenant
    /// `default` uses every key). Others see and sign nothing (EACCES).
    #[arg(long = "grant", value_name = "IDENTITY:KEYNAME")]
    pub grants: Vec<KeyGrant>,
    /// Sign any message a granted caller sends, not only TLS 1.3
    /// CertificateVerify and TLS 1.2 ECDHE ServerKeyExchange content
    /// (refused with EPERM by default).
    #[arg(long)]
    pub sign_any_input: bool,
    /// Signatures per second per identity (role + tenant, all its
    /// connections together); more get EAGAIN. 0 = no limit.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_MAX_SIGNS_PER_SEC)]
    pub max_signs_per_sec: u32,
    /// The RPC server loop's connection limits (docs/protocol.md).
    #[command(flatten)]
    pub rpc: ServerLimits,
    /// How admitted connections are served: `threads` (a thread each,
    /// blocking on its socket: less CPU per signature for few, long-lived
    /// clients) or `reactor` (tasks on the runtime: for very many clients).
    #[arg(long, value_enum, default_value_t = DEFAULT_CONNECTIONS)]
    pub connections: ConnectionMode,
    /// The fleet's TLS ticket-key secret (mode 0600, at least 32 random
    /// bytes): edges with `[shared] ticket_source = "keyserver"` fetch
    /// per-epoch keys derived from it (TICKET_KEYS). Key servers given the
    /// same file hand out the same keys. Absent: TICKET_KEYS is ENOTSUP.
    #[arg(long, value_name = "FILE")]
    pub ticket_keys: Option<PathBuf>,
    /// How long one ticket-key epoch lasts (at least 1s).
    #[arg(long, value_name = "DURATION", default_value_t = Dur(crate::op::ticket_keys::DEFAULT_ROTATION))]
    pub ticket_rotation: Dur,
    /// Who may fetch its own tenant's ticket keys, IDENTITY (repeatable):
    /// `edge@*`, `edge@acme`. None given = `edge@*`. Never another tenant's.
    #[arg(long = "ticket-grant", value_name = "IDENTITY")]
    pub ticket_grants: Vec<IdentityPattern>,
}

impl KeyServerSettings {
    /// Settings serving the keys of `keys` on `listen` with the identities in
    /// `certs`; one signing thread per core, the default queue.
    pub fn new(keys: PathBuf, listen: Endpoint, certs: PathBuf) -> Self {
        KeyServerSettings {
            keys,
            listen,
            certs,
            sign_pool: false,
            threads: 0,
            queue: DEFAULT_QUEUE,
            sign_inline: false,
            grants: Vec::new(),
            sign_any_input: false,
            max_signs_per_sec: DEFAULT_MAX_SIGNS_PER_SEC,
            rpc: ServerLimits::default(),
            connections: DEFAULT_CONNECTIONS,
            ticket_keys: None,
            ticket_rotation: Dur(crate::op::ticket_keys::DEFAULT_ROTATION),
            ticket_grants: Vec::new(),
        }
    }

    /// The service options these settings ask for.
    pub fn options(&self) -> crate::KeyServerOptions {
        crate::KeyServerOptions {
            threads: self.threads,
            queue: self.queue,
            inline: !self.sign_pool,
            grants: crate::KeyGrants::new(self.grants.clone()),
            handshake_only: !self.sign_any_input,
            max_signs_per_sec: self.max_signs_per_sec,
            tickets: None,
        }
    }

    /// The RPC server's options: the key server's body limit with these
    /// connection limits and connection mode.
    pub fn server_options(&self) -> ServerOptions {
        ServerOptions {
            connections: self.connections,
            ..self.rpc.apply(crate::KeyServer::server_options())
        }
    }

    /// The ticket-key source `--ticket-keys` names (reads the secret file), if any.
    pub fn ticket_source(
        &self,
    ) -> Result<Option<crate::op::ticket_keys::TicketKeySource>, crate::op::ticket_keys::TicketSecretError>
    {
        use crate::op::ticket_keys::{TicketGrants, TicketKeySource};
        self.ticket_keys
            .as_deref()
            .map(|p| {
                TicketKeySource::from_file(
                    p,
                    self.ticket_rotation.0,
                    TicketGrants::new(self.ticket_grants.clone()),
                )
            })
            .transpose()
    }

    /// The argv tail `["keyserver", "--keys", ...]` that parses back to
    /// `self` (signing flags at their defaults are left out).
    pub fn to_args(&self) -> Vec<String> {
        let mut argv: Vec<String> = vec![
            "keyserver".into(),
            "--keys".into(),
            self.keys.display().to_string(),
            "--certs".into(),
            self.certs.display().to_string(),
            "--listen".into(),
            self.listen.to_string(),
        ];
        if self.sign_pool {
            argv.push("--sign-pool".into());
        }
        if self.threads != 0 {
            argv.extend(["--threads".into(), self.threads.to_string()]);
        }
        if self.queue != DEFAULT_QUEUE {
            argv.extend(["--queue".into(), self.queue.to_string()]);
        }
        if self.sign_inline {
            argv.push("--sign-inline".into());
        }
        for g in &self.grants {
            argv.extend(["--grant".into(), g.to_string()]);
        }
        if self.sign_any_input {
            argv.push("--sign-any-input".into());
        }
        if self.max_signs_per_sec != DEFAULT_MAX_SIGNS_PER_SEC {
            argv.extend(["--max-signs-per-sec".into(), self.max_signs_per_sec.to_string()]);
        }
        argv.extend(self.rpc.to_args());
        if self.connections != DEFAULT_CONNECTIONS {
            argv.extend(["--connections".into(), self.connections.to_string()]);
        }
        if let Some(p) = &self.ticket_keys {
            argv.extend(["--ticket-keys".into(), p.display().to_string()]);
        }
        if self.ticket_rotation.0 != crate::op::ticket_keys::DEFAULT_ROTATION {
            argv.extend(["--ticket-rotation".into(), self.ticket_rotation.to_string()]);
        }
        for g in &self.ticket_grants {
            argv.extend(["--ticket-grant".into(), g.to_string()]);
        }
        argv
    }
}

/// Everything the hidden `conclave keyless-probe` needs: an HTTPS responder
/// holding only a certificate, signing through a key server.
#[derive(clap::Args, Debug, Clone, PartialEq, Eq)]
pub struct KeylessProbeSettings {
    /// The site's certificate chain (PEM, leaf first). No key file is read.
    #[arg(long)]
    pub cert: PathBuf,
    /// The key server holding the site's key.
    #[arg(long)]
    pub keyserver: Endpoint,
    /// The key's name on the key server.
    #[arg(long, default_value = "server")]
    pub key_name: KeyName,
    /// Directory with root.crt, edge.crt and edge.key (the mTLS identity).
    #[arg(long)]
    pub certs: PathBuf,
    /// HTTPS address to listen on (port 0 picks one).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: SocketAddr,
}

impl KeylessProbeSettings {
    /// The argv tail `["keyless-probe", "--cert", ...]` that parses back to `self`.
    pub fn to_args(&self) -> Vec<String> {
        vec![
            "keyless-probe".into(),
            "--cert".into(),
            self.cert.display().to_string(),
            "--keyserver".into(),
            self.keyserver.to_string(),
            "--key-name".into(),
            self.key_name.to_string(),
            "--certs".into(),
            self.certs.display().to_string(),
            "--listen".into(),
            self.listen.to_string(),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    enum Cli {
        Keyserver(KeyServerSettings),
        KeylessProbe(KeylessProbeSettings),
    }

    fn reparse(argv: Vec<String>) -> Cli {
        Cli::try_parse_from(std::iter::once("conclave".to_string()).chain(argv)).unwrap()
    }

    #[test]
    fn key_server_settings_round_trip_through_their_argv() {
        let mut s = KeyServerSettings::new(
            "/s/keys".into(),
            "tcp://127.0.0.1:9000".parse().unwrap(),
            "/s/certs".into(),
        );
        assert_eq!(
            s.to_args(),
            [
                "keyserver",
                "--keys",
                "/s/keys",
                "--certs",
                "/s/certs",
                "--listen",
                "tcp://127.0.0.1:9000"
            ]
        );
        for change in [
            |s: &mut KeyServerSettings| s.sign_pool = true,
            |s: &mut KeyServerSettings| {
                s.sign_pool = true;
                s.threads = 3
            },
            |s: &mut KeyServerSettings| {
                s.sign_pool = true;
                s.queue = 7
            },
            |s: &mut KeyServerSettings| s.sign_inline = true,
            |s: &mut KeyServerSettings| s.rpc.max_connections = 64,
            |s: &mut KeyServerSettings| s.connections = ConnectionMode::Reactor,
            |s: &mut KeyServerSettings| {
                s.grants = vec![
                    "edge@a:site-a".parse().unwrap(),
                    "edge@*:shared".parse().unwrap(),
                    "edge:*".parse().unwrap(),
                ]
            },
            |s: &mut KeyServerSettings| s.sign_any_input = true,
            |s: &mut KeyServerSettings| s.max_signs_per_sec = 0,
            |s: &mut KeyServerSettings| s.max_signs_per_sec = 5,
            |s: &mut KeyServerSettings| s.ticket_keys = Some("/s/tickets.secret".into()),
            |s: &mut KeyServerSettings| s.ticket_rotation = Dur(std::time::Duration::from_secs(3)),
            |s: &mut KeyServerSettings| {
                s.ticket_grants = vec!["edge@acme".parse().unwrap(), "edge@*".parse().unwrap()]
            },
        ] {
            let mut t = s.clone();
            change(&mut t);
            let Cli::Keyserver(back) = reparse(t.to_args()) else {
                panic!()
            };
            assert_eq!(back, t);
        }
        let Cli::Keyserver(back) = reparse(s.to_args()) else {
            panic!()
        };
        assert_eq!(back, s, "defaults parse back");
        assert!(back.options().handshake_only, "handshake-only is the default");
        assert!(back.options().inline, "signing inline is the default");
        assert_eq!(back.server_options().connections, ConnectionMode::Threads);
        assert_eq!(
            back.server_options().max_body,
            crate::KeyServer::server_options().max_body
        );
        assert_eq!(back.options().grants, crate::KeyGrants::default());
        s.listen = "unix:///s/k.sock".parse().unwrap();
        let Cli::Keyserver(back) = reparse(s.to_args()) else {
            panic!()
        };
        assert_eq!(back, s);
    }

    #[test]
    fn pool_flags_need_the_pool() {
        let base = ["conclave", "keyserver", "--keys", "/k", "--certs", "/c"];
        for extra in [
            &["--threads", "2"][..],
            &["--queue", "9"],
            &["--sign-pool", "--sign-inline"],
        ] {
            let argv = base.iter().chain(extra);
            assert!(Cli::try_parse_from(argv).is_err(), "{extra:?} parsed");
        }
        let argv = base.iter().chain(&["--sign-pool", "--threads", "2"]);
        let Ok(Cli::Keyserver(s)) = Cli::try_parse_from(argv) else {
            panic!("--sign-pool --threads 2 refused")
        };
        assert!(!s.options().inline);
        assert_eq!(s.options().threads, 2);
    }

    #[test]
    fn keyless_probe_settings_round_trip_through_their_argv() {
        let s = KeylessProbeSettings {
            cert: "/s/server.crt".into(),
            keyserver: "tcp://127.0.0.1:9000".parse().unwrap(),
            key_name: KeyName::new("site-1").unwrap(),
            certs: "/s/certs".into(),
            listen: "127.0.0.1:8443".parse().unwrap(),
        };
        let Cli::KeylessProbe(back) = reparse(s.to_args()) else {
            panic!()
        };
        assert_eq!(back, s);
    }
}
