//! Tests of the configuration: units, error lines, and value -> TOML -> value.

use super::*;
use std::time::Duration;

#[test]
fn parses_sizes_and_durations() {
    assert_eq!(parse_size("16k").unwrap(), 16384);
    assert_eq!(parse_size("10m").unwrap(), 10 << 20);
    assert_eq!(parse_size("7").unwrap(), 7);
    assert!(parse_size("ten").is_err());
    assert_eq!(parse_duration("60m").unwrap(), Duration::from_secs(3600));
    assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
    assert!(parse_duration("5").is_err());
    assert!(parse_duration("5x").is_err());
}

#[test]
fn names_the_line_of_a_bad_value() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("edge.toml");
    let text = "workers = 1\n\n[[server]]\nlisten = \"127.0.0.1:1\"\nmode = \"cachy\"\n";
    let e = EdgeConfig::parse(&cfg, text).unwrap_err().to_string();
    assert!(e.contains(":5:"), "{e}");
    let text = "workers = 1\n[[server]]\nlisten = \"nowhere\"\nmode = \"cache\"\nproxy_pass = \"http://127.0.0.1:1\"\n[server.tls]\ncertificate = \"x\"\nkey = \"y\"\n";
    let e = EdgeConfig::parse(&cfg, text).unwrap_err().to_string();
    assert!(e.contains(":3:") && e.contains("listen"), "{e}");
    let e = EdgeConfig::parse(&cfg, "workers = 0\n[[server]]\n")
        .unwrap_err()
        .to_string();
    // `[[server]]` (line 2) lacks `listen`: parsing fails there before
    // `workers = 0` (line 1) is validated.
    assert!(e.contains(":2:"), "{e}");
}

#[test]
fn names_the_line_of_a_refused_value_in_a_later_block() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("edge.toml");
    std::fs::write(dir.path().join("c.crt"), "").unwrap();
    let site = |port: u16| {
        format!(
            "[[server]]\nlisten = \"127.0.0.1:{port}\"\nmode = \"cache\"\nproxy_pass = \"http://127.0.0.1:1\"\n\
             [server.tls]\ncertificate = \"c.crt\"\nkeyserver = \"tcp://127.0.0.1:2\"\ncerts = \"certs\"\n"
        )
    };
    let text = format!("{}{}[server.cache]\nkeys_zone = \"Z:1k\"\n", site(1), site(2));
    let e = EdgeConfig::parse(&cfg, &text).unwrap_err().to_string();
    assert!(e.contains(":18:") && e.contains("keys_zone SIZE"), "{e}");
    let text = format!("{}{}", site(1), site(1));
    let e = EdgeConfig::parse(&cfg, &text).unwrap_err().to_string();
    assert!(e.contains(":10:") && e.contains("two servers"), "{e}");
}

/// Every key eval writes, with host storage (paths checked on the host).
fn host_settings(dir: &std::path::Path) -> EdgeSettings {
    std::fs::create_dir_all(dir.join("html")).unwrap();
    std::fs::write(dir.join("server.crt"), "").unwrap();
    std::fs::write(dir.join("server.key"), "").unwrap();
    std::fs::write(dir.join("waf.conf"), "").unwrap();
    let mut standalone = ServerSettings::standalone(
        "127.0.0.1:8443",
        dir.join("html"),
        TlsSettings::key_file(dir.join("server.crt"), "server.key"),
    );
    standalone.server_name = vec!["localhost".into()];
    standalone.waf = Some(WafSettings {
        rules: "waf.conf".into(),
        body_limit: None,
    });
    let mut tls = TlsSettings::key_server(dir.join("server.crt"), "tcp://127.0.0.1:9000", "server", "certs");
    tls.protocols = vec!["TLSv1.3".into()];
    tls.session_resumption = false;
    let cache = CacheSettings {
        path: dir.join("cache0"),
        keys_zone: "ZONE0:16k".into(),
        max_size: ByteSize(10 << 20),
        inactive: Dur(Duration::from_secs(3600)),
        valid: Dur(Duration::from_millis(1500)),
        min_uses: 2,
        use_stale: vec!["error".into(), "timeout".into()],
        purge_allow: vec!["127.0.0.1/32".into()],
        ..CacheSettings::default()
    };
    EdgeSettings {
        workers: 2,
        worker_threads: 1,
        worker_connections: 4096,
        access_log: "access.log".into(),
        shared: SharedSettings {
            kind: format!(
                "smc://{}?secret={}",
                dir.join("smc").display(),
                dir.join("s").display()
            ),
            certs: None,
            secret_file: Some(dir.join("s")),
            ..SharedSettings::default()
        },
        server: vec![
            standalone,
            ServerSettings::cache("127.0.0.1:8444", "http://127.0.0.1:8081", cache, tls),
        ],
        ..EdgeSettings::default()
    }
}

fn round_trips(settings: &EdgeSettings, path: &std::path::Path) -> EdgeConfig {
    let text = settings.to_toml();
    assert_eq!(
        &toml::from_str::<EdgeSettings>(&text).unwrap(),
        settings,
        "{text}"
    );
    let from_text = EdgeConfig::parse(path, &text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert_eq!(from_text, EdgeConfig::from_settings(settings, path).unwrap());
    from_text
}

#[test]
fn settings_round_trip_through_toml() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("edge.toml");
    let cfg = round_trips(&host_settings(dir.path()), &path);
    assert_eq!(cfg.workers, 2);
    assert!(cfg.has_remote_seam());
    assert_eq!(cfg.access_log, Some(dir.path().join("access.log")));
    assert!(matches!(
        cfg.shared,
        SharedConfig::Mem {
            spec: conclave_mem::MemSpec::Smc { .. },
            ..
        }
    ));
    let [s, c] = &cfg.servers[..] else { panic!() };
    assert_eq!(
        s.site,
        SiteConfig::Standalone {
            root: dir.path().join("html")
        }
    );
    assert_eq!(s.tls.key, KeyConfig::File(dir.path().join("server.key")));
    assert_eq!(s.waf, Some(dir.path().join("waf.conf")));
    let SiteConfig::Cache { proxy, cache } = &c.site else {
        panic!()
    };
    assert_eq!(proxy.upstream.name, "127.0.0.1:8081");
    assert_eq!(proxy.upstream.servers[0].address, "127.0.0.1:8081");
    assert_eq!(c.client_max_body_size, 1 << 20);
    assert_eq!(
        (cache.zone_name.as_str(), cache.zone_size, cache.min_uses),
        ("ZONE0", 16 << 10, 2)
    );
    assert_eq!(cache.valid, Some(Duration::from_millis(1500)));
    assert!(cache.use_stale.error && cache.use_stale.timeout && !cache.use_stale.updating);
    assert_eq!(cache.purge_allow, vec!["127.0.0.1/32".parse().unwrap()]);
    assert_eq!(cache.key, crate::cache::key::CacheKey::default());
    assert_eq!(cache.lock_timeout, Duration::from_secs(5));
    assert!(c.tls.tls13 && !c.tls.tls12 && !c.tls.session_resumption);
    assert_eq!(
        c.tls.key,
        KeyConfig::KeyServer {
            endpoint: "tcp://127.0.0.1:9000".parse().unwrap(),
            key_name: "server".into(),
            certs: dir.path().join("certs"),
            fallbacks: Vec::new(),
        }
    );
}

#[test]
fn nextfs_settings_round_trip_with_paths_in_the_image() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("edge.toml");
    let mut s = host_settings(dir.path());
    s.storage = StorageSettings::Nextfs {
        server: "tcp://127.0.0.1:9200".into(),
        certs: "certs".into(),
    };
    s.shared = SharedSettings {
        kind: "smdish+tcp://127.0.0.1:9100".into(),
        certs: Some("certs".into()),
        secret_file: None,
        ..SharedSettings::default()
    };
    s.server[0].root = Some("/html".into());
    s.server[1].cache.as_mut().unwrap().path = "/cache0".into();
    let cfg = round_trips(&s, &path);
    assert_eq!(
        cfg.storage,
        StorageConfig::Nextfs {
            server: conclave_rpc::Endpoint::Tcp("127.0.0.1:9200".into()),
            certs: dir.path().join("certs"),
        }
    );
    assert_eq!(
        cfg.servers[0].site,
        SiteConfig::Standalone { root: "/html".into() }
    );
    // Defaults written out read back the same.
    let sites = host_settings(dir.path()).server;
    round_trips(
        &EdgeSettings {
            server: sites,
            ..EdgeSettings::default()
        },
        &path,
    );
}

/// The issue-16 timers and limits: NGINX's defaults, limits off, and a
/// refused value named with its line.
#[test]
fn stall_timeouts_and_limits_have_documented_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("edge.toml");
    std::fs::write(dir.path().join("c.key"), "").unwrap();
    std::fs::write(dir.path().join("c.crt"), "").unwrap();
    let site = "[[server]]\nlisten = \"127.0.0.1:1\"\nmode = \"standalone\"\nroot = \".\"\n\
                [server.tls]\ncertificate = \"c.crt\"\nkey = \"c.key\"\n";
    let c = EdgeConfig::parse(&cfg, site).unwrap();
    assert_eq!(c.client_body_timeout, Duration::from_secs(60));
    assert_eq!(c.send_timeout, Duration::from_secs(60));
    assert_eq!(c.http2_idle_timeout, Duration::from_secs(180));
    assert_eq!(c.http2_max_concurrent_streams, 128);
    assert_eq!(c.limit_conn, None);
    assert_eq!(c.limit_req, None);
    assert_eq!(c.keyserver_timeout, Duration::from_secs(5));
    assert_eq!(c.storage_timeout, Duration::from_secs(10));
    assert_eq!(c.keyless_handshake, crate::config::KeylessHandshake::Coroutine);
    let c = EdgeConfig::parse(&cfg, &format!("keyless_handshake = \"threads\"\n{site}")).unwrap();
    assert_eq!(c.keyless_handshake, crate::config::KeylessHandshake::Threads);
    assert!(EdgeConfig::parse(&cfg, &format!("keyless_handshake = \"inline\"\n{site}")).is_err());
    assert_eq!(c.waf_verdict_cache, 4096);
    let c = EdgeConfig::parse(&cfg, &format!("waf_verdict_cache = 0\n{site}")).unwrap();
    assert_eq!(c.waf_verdict_cache, 0);
    let e = EdgeConfig::parse(&cfg, &format!("waf_verdict_cache = 2000000\n{site}"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("waf_verdict_cache must be at most 1048576"), "{e}");
    let text = format!("limit_conn = 8\nlimit_req_rate = 100\nlimit_req_burst = 50\n{site}");
    let c = EdgeConfig::parse(&cfg, &text).unwrap();
    assert_eq!(c.limit_conn, Some(8));
    assert_eq!(c.limit_req, Some(ReqLimit { rate: 100, burst: 50 }));
    let e = EdgeConfig::parse(&cfg, &format!("workers = 1\nsend_timeout = \"0s\"\n{site}"))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains(":2:") && e.contains("send_timeout must be more than 0s"),
        "{e}"
    );
    let e = EdgeConfig::parse(&cfg, &format!("limit_req_burst = 5\n{site}"))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains(":1:") && e.contains("limit_req_burst needs limit_req_rate"),
        "{e}"
    );
    let e = EdgeConfig::parse(&cfg, &format!("http2_max_concurrent_streams = 0\n{site}"))
        .unwrap_err()
        .to_string();
    assert!(e.contains(":1:") && e.contains("at least 1"), "{e}");
}

/// A cache site's proxying keys from `extra` lines (after `proxy_pass`) and
/// `tail` (top-level tables after the site), or the error message.
fn proxy_of(proxy_pass: &str, extra: &str, tail: &str) -> Result<(crate::config::ProxyConfig, u64), String> {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("c.pem"), "x").unwrap();
    std::fs::write(dir.path().join("k.pem"), "x").unwrap();
    let path = dir.path().join("edge.toml");
    let text = format!(
        "[[server]]\nlisten = \"127.0.0.1:8443\"\nmode = \"cache\"\nproxy_pass = \"{proxy_pass}\"\n{extra}\n\
         [server.tls]\ncertificate = \"c.pem\"\nkey = \"k.pem\"\n{tail}"
    );
    let cfg = EdgeConfig::parse(&path, &text).map_err(|e| e.to_string())?;
    let s = &cfg.servers[0];
    match &s.site {
        SiteConfig::Cache { proxy, .. } => Ok(((**proxy).clone(), s.client_max_body_size)),
        _ => unreachable!(),
    }
}

#[test]
fn proxy_pass_takes_host_port_urls_and_upstream_groups() {
    for p in [
        "127.0.0.1:8081",
        "http://127.0.0.1:8081",
        "http://127.0.0.1:8081/",
    ] {
        let (c, max) = proxy_of(p, "", "").unwrap();
        assert_eq!(c.upstream.name, "127.0.0.1:8081", "{p}");
        assert_eq!(c.upstream.tls, None);
        assert_eq!(
            c.upstream.servers,
            vec![crate::config::UpstreamServerConfig {
                address: "127.0.0.1:8081".into(),
                max_fails: 1,
                fail_timeout: Duration::from_secs(10),
            }]
        );
        assert_eq!(c.upstream.connect_timeout, Duration::from_secs(60));
        assert_eq!(c.upstream.read_timeout, Duration::from_secs(60));
        assert_eq!(c.upstream.send_timeout, Duration::from_secs(60));
        assert_eq!(max, 1 << 20);
    }
    let (c, max) = proxy_of(
        "http://backend",
        "proxy_read_timeout = \"1s\"\nclient_max_body_size = \"2m\"\nproxy_set_header = { Host = \"origin.example\", X-Drop = \"\" }",
        "[[upstream]]\nname = \"backend\"\n[[upstream.server]]\naddress = \"127.0.0.1:1\"\n\
         [[upstream.server]]\naddress = \"127.0.0.1:2\"\nmax_fails = 3\nfail_timeout = \"30s\"\n",
    )
    .unwrap();
    assert_eq!(c.upstream.name, "backend");
    assert_eq!(c.upstream.servers.len(), 2);
    assert_eq!(c.upstream.servers[1].max_fails, 3);
    assert_eq!(c.upstream.servers[1].fail_timeout, Duration::from_secs(30));
    assert_eq!(c.upstream.read_timeout, Duration::from_secs(1));
    assert_eq!(max, 2 << 20);
    assert_eq!(
        c.set_headers,
        vec![
            (
                http::header::HOST,
                http::HeaderValue::from_static("origin.example")
            ),
            (
                http::HeaderName::from_static("x-drop"),
                http::HeaderValue::from_static("")
            ),
        ]
    );
}

#[test]
fn proxy_pass_refusals_name_the_problem() {
    let e = proxy_of("http://nowhere", "", "").unwrap_err();
    assert!(e.contains(":4: proxy_pass \"http://nowhere\" must be"), "{e}");
    let e = proxy_of("https://127.0.0.1:8443", "", "").unwrap_err();
    assert!(e.contains("needs proxy_ssl_trusted_certificate"), "{e}");
    let e = proxy_of("http://127.0.0.1:1", "proxy_ssl_name = \"a\"", "").unwrap_err();
    assert!(
        e.contains(":5: proxy_ssl_name needs an https:// proxy_pass"),
        "{e}"
    );
    let e = proxy_of("http://b", "", "[[upstream]]\nname = \"b\"\nserver = []\n").unwrap_err();
    assert!(e.contains("upstream \"b\" has no [[upstream.server]]"), "{e}");
    let e = proxy_of("127.0.0.1:1", "proxy_connect_timeout = \"0s\"", "").unwrap_err();
    assert!(e.contains("proxy_connect_timeout must be above 0"), "{e}");
    let (c, _) = proxy_of(
        "https://127.0.0.1:8443",
        "proxy_ssl_trusted_certificate = \"c.pem\"\nproxy_ssl_name = \"origin.test\"",
        "",
    )
    .unwrap();
    let t = c.upstream.tls.unwrap();
    assert_eq!(t.server_name, "origin.test");
    assert!(t.verify);
    let (c, _) = proxy_of("https://[::1]:8443", "proxy_ssl_verify = false", "").unwrap();
    assert_eq!(c.upstream.tls.unwrap().server_name, "::1");
}

#[test]
fn ticket_secret_file_is_for_memory_stores_and_relative_to_the_config() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("edge.toml");
    std::fs::create_dir_all(dir.path().join("html")).unwrap();
    std::fs::write(dir.path().join("c.crt"), "").unwrap();
    std::fs::write(dir.path().join("c.key"), "").unwrap();
    let site = "[[server]]\nlisten = \"127.0.0.1:1\"\nmode = \"standalone\"\nroot = \"html\"\n\
                [server.tls]\ncertificate = \"c.crt\"\nkey = \"c.key\"\n";
    let text = format!(
        "[shared]\nkind = \"smdish+tcp://127.0.0.1:9\"\ncerts = \"certs\"\nticket_secret_file = \"t.secret\"\n{site}"
    );
    let c = EdgeConfig::parse(&cfg, &text).unwrap();
    let SharedConfig::Mem {
        ticket_secret_file, ..
    } = c.shared
    else {
        panic!("a memory store")
    };
    assert_eq!(ticket_secret_file, Some(dir.path().join("t.secret")));
    let text = format!("[shared]\nkind = \"local\"\nticket_secret_file = \"t.secret\"\n{site}");
    let e = EdgeConfig::parse(&cfg, &text).unwrap_err().to_string();
    assert!(
        e.contains(":3:") && e.contains("ticket_secret_file seals the ticket keys kept in a memory store"),
        "{e}"
    );
}

/// A standalone site on `listen` with the TOML lines `extra` in `[[server]]`
/// and `tls` in `[server.tls]`, certificates and keys as empty files.
fn tls_site(dir: &std::path::Path, listen: &str, extra: &str, tls: &str) -> String {
    std::fs::create_dir_all(dir.join("html")).unwrap();
    for f in ["a.crt", "a.key", "b.crt", "b.key", "a.ocsp"] {
        std::fs::write(dir.join(f), "").unwrap();
    }
    format!(
        "[[server]]\nlisten = \"{listen}\"\nmode = \"standalone\"\nroot = \"html\"\n{extra}\n\
         [server.tls]\ncertificate = \"a.crt\"\nkey = \"a.key\"\n{tls}\n"
    )
}

#[test]
fn sites_share_an_address_when_server_name_tells_them_apart() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("edge.toml");
    let d = dir.path();
    let a = tls_site(d, "127.0.0.1:1", "server_name = [\"a.example\"]", "");
    let b = tls_site(
        d,
        "127.0.0.1:1",
        "server_name = [\"*.B.example\"]\ndefault_server = true",
        "",
    );
    let ok = EdgeConfig::parse(&cfg, &format!("{a}{b}")).unwrap();
    assert_eq!(ok.servers[1].server_name, vec!["*.b.example".to_string()]);
    assert!(!ok.servers[0].default_server && ok.servers[1].default_server);
    let same = tls_site(d, "127.0.0.1:1", "server_name = [\"A.example\"]", "");
    let e = EdgeConfig::parse(&cfg, &format!("{a}{same}"))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains(":14:") && e.contains("with server_name \"A.example\""),
        "{e}"
    );
    let unnamed = tls_site(d, "127.0.0.1:1", "", "");
    let e = EdgeConfig::parse(&cfg, &format!("{a}{unnamed}"))
        .unwrap_err()
        .to_string();
    assert!(e.contains(":11:") && e.contains("need `server_name`"), "{e}");
    // One site without names may be the catch-all default.
    let catch_all = tls_site(d, "127.0.0.1:1", "default_server = true", "");
    let ok = EdgeConfig::parse(&cfg, &format!("{a}{catch_all}")).unwrap();
    assert!(ok.servers[1].server_name.is_empty() && ok.servers[1].default_server);
    let e = EdgeConfig::parse(&cfg, &format!("{unnamed}{b}"))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains(":15:") && e.contains("the one without server_name is"),
        "{e}"
    );
    let c = tls_site(
        d,
        "127.0.0.1:1",
        "server_name = [\"c.example\"]\ndefault_server = true",
        "",
    );
    let e = EdgeConfig::parse(&cfg, &format!("{a}{b}{c}"))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains(":25:") && e.contains("two servers on 127.0.0.1:1 are default_server"),
        "{e}"
    );
    let bad = tls_site(d, "127.0.0.1:1", "server_name = [\"a..example\"]", "");
    let e = EdgeConfig::parse(&cfg, &bad).unwrap_err().to_string();
    assert!(e.contains(":5:") && e.contains("not a host name"), "{e}");
}

#[test]
fn ciphers_and_curves_take_rustls_names_and_name_an_unknown_one() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("edge.toml");
    let d = dir.path();
    let site = tls_site(
        d,
        "127.0.0.1:1",
        "",
        "ciphers = [\"TLS13_AES_256_GCM_SHA384\", \"tls_ecdhe_ecdsa_with_aes_128_gcm_sha256\"]\n\
         curves = [\"secp384r1\", \"X25519\"]",
    );
    let ok = EdgeConfig::parse(&cfg, &site).unwrap();
    assert_eq!(
        ok.servers[0].tls.ciphers,
        vec![
            rustls::CipherSuite::TLS13_AES_256_GCM_SHA384,
            rustls::CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
        ]
    );
    assert_eq!(
        ok.servers[0].tls.curves,
        vec![rustls::NamedGroup::secp384r1, rustls::NamedGroup::X25519]
    );
    let site = tls_site(d, "127.0.0.1:1", "", "ciphers = [\"RC4-MD5\"]");
    let e = EdgeConfig::parse(&cfg, &site).unwrap_err().to_string();
    assert!(
        e.contains(":9:")
            && e.contains("unknown cipher suite \"RC4-MD5\"")
            && e.contains("TLS13_AES_128_GCM_SHA256"),
        "{e}"
    );
    let site = tls_site(d, "127.0.0.1:1", "", "ciphers = [\"TLS13_AES_128_GCM_SHA256\"]");
    let e = EdgeConfig::parse(&cfg, &site).unwrap_err().to_string();
    assert!(e.contains("no TLSv1.2 suite"), "{e}");
    let site = tls_site(d, "127.0.0.1:1", "", "curves = [\"prime256v1\"]");
    let e = EdgeConfig::parse(&cfg, &site).unwrap_err().to_string();
    assert!(
        e.contains(":9:") && e.contains("unknown group \"prime256v1\""),
        "{e}"
    );
}

#[test]
fn add_header_and_extra_certificates_are_checked_and_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let path = d.join("edge.toml");
    let bad = tls_site(d, "127.0.0.1:1", "add_header = { \"Bad Name\" = \"x\" }", "");
    let e = EdgeConfig::parse(&path, &bad).unwrap_err().to_string();
    assert!(
        e.contains(":5:") && e.contains("\"Bad Name\" is not a header name"),
        "{e}"
    );
    let missing = tls_site(
        d,
        "127.0.0.1:1",
        "",
        "[[server.tls.certificates]]\ncertificate = \"b.crt\"",
    );
    let e = EdgeConfig::parse(&path, &missing).unwrap_err().to_string();
    assert!(
        e.contains(":9:") && e.contains("needs `key` or `keyserver`"),
        "{e}"
    );

    let mut tls = TlsSettings::key_file(d.join("a.crt"), "a.key");
    tls.ocsp_staple = Some("a.ocsp".into());
    tls.ciphers = vec![
        "TLS13_AES_128_GCM_SHA256".into(),
        "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256".into(),
    ];
    tls.curves = vec!["X25519".into()];
    tls.certs = Some("certs".into());
    tls.certificates = vec![
        CertificateSettings {
            certificate: "b.crt".into(),
            key: Some("b.key".into()),
            keyserver: None,
            key_name: None,
            certs: None,
            ocsp_staple: None,
        },
        CertificateSettings {
            certificate: "b.crt".into(),
            key: None,
            keyserver: Some("tcp://127.0.0.1:9000".into()),
            key_name: Some("ecdsa".into()),
            certs: None,
            ocsp_staple: Some("a.ocsp".into()),
        },
    ];
    let mut site = ServerSettings::standalone("127.0.0.1:8443", d.join("html"), tls);
    site.server_name = vec!["a.example".into()];
    site.add_header = [(
        "Strict-Transport-Security".to_string(),
        "max-age=63072000".to_string(),
    )]
    .into();
    site.server_tokens = false;
    site.default_server = true;
    let settings = EdgeSettings {
        server: vec![site],
        ..EdgeSettings::default()
    };
    let cfg = round_trips(&settings, &path);
    let s = &cfg.servers[0];
    assert!(!s.server_tokens && s.default_server);
    assert_eq!(s.add_headers[0].0, "strict-transport-security");
    assert_eq!(s.add_headers[0].1, "max-age=63072000");
    let all = s.tls.all_certificates();
    assert_eq!(all.len(), 3);
    assert_eq!(all[0].ocsp_staple, Some(d.join("a.ocsp")));
    assert_eq!(all[1].key, KeyConfig::File(d.join("b.key")));
    assert_eq!(
        all[2].key,
        KeyConfig::KeyServer {
            endpoint: "tcp://127.0.0.1:9000".parse().unwrap(),
            key_name: "ecdsa".into(),
            certs: d.join("certs"),
            fallbacks: Vec::new(),
        }
    );
    assert!(cfg.has_remote_seam());
}

/// The issue-17 log and admin keys: defaults, and written out they read back
/// the same (after `[[server]]` tables, as `conclave eval` writes them).
#[test]
fn log_and_admin_keys_round_trip_through_toml() {
    use crate::config::{AccessLogFormat, AdminConfig, AdminSettings, ErrorLog, LogLevel};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("edge.toml");
    let defaults = round_trips(
        &EdgeSettings {
            server: host_settings(dir.path()).server,
            ..EdgeSettings::default()
        },
        &path,
    );
    assert_eq!(defaults.access_log_format, AccessLogFormat::Main);
    assert_eq!(defaults.error_log, ErrorLog::Stderr);
    assert_eq!(defaults.error_log_level, LogLevel::Info);
    assert_eq!(defaults.admin, None);
    let cfg = round_trips(
        &EdgeSettings {
            server: host_settings(dir.path()).server,
            access_log_format: AccessLogFormat::Json,
            error_log: "logs/error.log".into(),
            error_log_level: LogLevel::Debug,
            admin: Some(AdminSettings {
                listen: "127.0.0.1:9145".into(),
                certs: Some("certs/edge".into()),
            }),
            ..EdgeSettings::default()
        },
        &path,
    );
    assert_eq!(cfg.access_log_format, AccessLogFormat::Json);
    assert_eq!(cfg.error_log, ErrorLog::File(dir.path().join("logs/error.log")));
    assert_eq!(cfg.error_log_level, LogLevel::Debug);
    assert_eq!(
        cfg.admin,
        Some(AdminConfig {
            listen: "127.0.0.1:9145".parse().unwrap(),
            certs: Some(dir.path().join("certs/edge")),
        })
    );
    let off = EdgeConfig::parse(
        &path,
        &format!(
            "error_log = \"off\"\n{}",
            EdgeSettings {
                server: host_settings(dir.path()).server,
                ..EdgeSettings::default()
            }
            .to_toml()
            .replace("error_log = \"stderr\"\n", "")
        ),
    )
    .unwrap();
    assert_eq!(off.error_log, ErrorLog::Off);
}

#[test]
fn keyservers_and_the_fleet_ticket_source_parse_once_and_refuse_mixtures() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("edge.toml");
    std::fs::write(dir.path().join("c.crt"), "").unwrap();
    let site = |tls: &str| {
        format!(
            "[[server]]\nlisten = \"127.0.0.1:1\"\nmode = \"standalone\"\nroot = \".\"\n\
             [server.tls]\ncertificate = \"c.crt\"\ncerts = \"certs\"\n{tls}"
        )
    };
    let two = "keyservers = [\"tcp://127.0.0.1:2\", \"unix:///run/ks.sock\"]\n";
    let c = EdgeConfig::parse(&cfg, &site(two)).unwrap();
    assert_eq!(
        c.servers[0].tls.key,
        KeyConfig::KeyServer {
            endpoint: "tcp://127.0.0.1:2".parse().unwrap(),
            key_name: "server".into(),
            certs: dir.path().join("certs"),
            fallbacks: vec!["unix:///run/ks.sock".parse().unwrap()],
        }
    );
    assert_eq!(
        c.fleet_tickets, None,
        "ticket_source defaults to the edge's own keys"
    );
    for (tls, want) in [
        (
            format!("{two}keyserver = \"tcp://127.0.0.1:3\"\n"),
            "give either `keyserver` or `keyservers`, not both",
        ),
        (
            "keyservers = [\"tcp://127.0.0.1:2\", \"tcp://127.0.0.1:2\"]\n".to_string(),
            "key server tcp://127.0.0.1:2 is listed twice",
        ),
        (
            "keyservers = [\"tcp://127.0.0.1:2\"]\nkey = \"c.crt\"\n".to_string(),
            "give either `key` or `keyservers`, not both",
        ),
    ] {
        let e = EdgeConfig::parse(&cfg, &site(&tls)).unwrap_err().to_string();
        assert!(e.contains(want), "{tls}: {e}");
    }
    let shared = |lines: &str| format!("[shared]\n{lines}\n{}", site(two));
    let c = EdgeConfig::parse(
        &cfg,
        &shared(
            "certs = \"certs\"\nticket_source = \"keyserver\"\n\
             ticket_keyservers = [\"tcp://127.0.0.1:2\", \"tcp://127.0.0.1:3\"]\nticket_refresh = \"10s\"",
        ),
    )
    .unwrap();
    assert_eq!(
        c.fleet_tickets,
        Some(FleetTicketsConfig {
            endpoints: vec![
                "tcp://127.0.0.1:2".parse().unwrap(),
                "tcp://127.0.0.1:3".parse().unwrap()
            ],
            certs: dir.path().join("certs"),
            refresh: Duration::from_secs(10),
            timeout: Duration::from_secs(5),
        })
    );
    assert!(c.has_remote_seam());
    for (lines, want) in [
        (
            "certs = \"certs\"\nticket_source = \"keyserver\"",
            "ticket_source = \"keyserver\" needs [shared] ticket_keyservers",
        ),
        (
            "ticket_source = \"keyserver\"\nticket_keyservers = [\"tcp://127.0.0.1:2\"]",
            "needs [shared] certs",
        ),
        (
            "ticket_keyservers = [\"tcp://127.0.0.1:2\"]",
            "ticket_keyservers needs ticket_source = \"keyserver\"",
        ),
        ("ticket_source = \"memory\"", "unknown variant"),
    ] {
        let e = EdgeConfig::parse(&cfg, &shared(lines)).unwrap_err().to_string();
        assert!(e.contains(want), "{lines}: {e}");
    }
    let mut s: EdgeSettings = toml::from_str(&shared(
        "certs = \"certs\"\nticket_source = \"keyserver\"\nticket_keyservers = [\"tcp://127.0.0.1:2\"]",
    ))
    .unwrap();
    assert_eq!(
        toml::from_str::<EdgeSettings>(&s.to_toml()).unwrap(),
        s,
        "the new keys round-trip"
    );
    s.shared.ticket_source = TicketSource::Edge;
    s.shared.ticket_keyservers.clear();
    assert!(!s.to_toml().contains("ticket_source"), "the default is left out");
}
