//! Config files for stock Debian nginx, equivalent to the seed's (reference
//! §1.4 origin, §2 cache edge): the same directives, with every path inside
//! the deployment's state directory so nothing touches /etc or /var.

use std::fmt::Write;
use std::path::{Path, PathBuf};

/// Where Debian keeps nginx.
pub fn binary() -> Option<PathBuf> {
    ["/usr/sbin/nginx", "/usr/bin/nginx"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

fn running_as_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// The main-context lines every generated config shares: foreground master,
/// pid and temp paths under `dir`. Root masters run workers as root so they
/// can read a private temp directory.
fn preamble(dir: &Path, workers: u32, o: &mut String) {
    let d = dir.display();
    if running_as_root() {
        o.push_str("user root;\n");
    }
    let _ = writeln!(o, "daemon off;\nmaster_process on;\nworker_processes {workers};");
    let _ = writeln!(
        o,
        "worker_rlimit_nofile 8192;\npid {d}/nginx.pid;\nerror_log {d}/error.log crit;"
    );
}

fn temp_paths(dir: &Path, o: &mut String) {
    let d = dir.display();
    for t in ["client_body", "proxy", "fastcgi", "uwsgi", "scgi"] {
        let _ = writeln!(o, "    {t}_temp_path {d}/tmp_{t};");
    }
}

/// The seed's origin: plain HTTP, 1 worker, `Cache-Control: public, no-transform`.
pub fn origin_conf(dir: &Path, listen: &str, root: &Path) -> String {
    let mut o = String::new();
    preamble(dir, 1, &mut o);
    o.push_str("events { worker_connections 1024; }\nhttp {\n    access_log off;\n");
    temp_paths(dir, &mut o);
    let _ = writeln!(
        o,
        "    sendfile on;\n    keepalive_timeout 65;\n    default_type application/octet-stream;"
    );
    let _ = writeln!(
        o,
        "    server {{\n        listen {listen};\n        root {};",
        root.display()
    );
    o.push_str("        add_header Cache-Control \"public, no-transform\";\n    }\n}\n");
    o
}

/// One site of a cache edge.
pub struct CacheSite {
    /// `host:port` to listen on (TLS).
    pub listen: String,
    /// Cache directory.
    pub cache_dir: PathBuf,
    /// keys_zone name.
    pub zone: String,
}

/// How a cache edge gets its TLS key: the site key file beside the
/// certificate in `site_dir`, or (keyless, issue 19) a key reference the
/// conclave OpenSSL provider decodes, loaded by `extra_main_conf`.
#[derive(Clone, Debug, Default)]
pub struct EdgeTls {
    /// Directory holding the site certificate (and, when not keyless, its key).
    pub site_dir: PathBuf,
    /// `ssl_certificate_key` instead of `site_dir/server.key` (keyless).
    pub ssl_certificate_key: Option<String>,
    /// Lines for the main context (keyless: `env OPENSSL_CONF;`).
    pub extra_main_conf: String,
}

impl EdgeTls {
    /// The site key file in `site_dir`.
    pub fn local(site_dir: &Path) -> EdgeTls {
        EdgeTls {
            site_dir: site_dir.to_path_buf(),
            ..EdgeTls::default()
        }
    }
}

/// The seed's Linux cache edge (`linux-cache-nomodsec-release_nonsm`), one
/// `server` block per site (share-nginx when several).
pub fn cache_edge_conf(dir: &Path, workers: u32, sites: &[CacheSite], tls: &EdgeTls, origin: &str) -> String {
    let mut o = String::new();
    preamble(dir, workers, &mut o);
    o.push_str(&tls.extra_main_conf);
    o.push_str("events { worker_connections 4096; }\nhttp {\n    access_log off;\n");
    temp_paths(dir, &mut o);
    o.push_str("    sendfile on;\n    tcp_nopush on;\n    tcp_nodelay on;\n    keepalive_timeout 65;\n");
    o.push_str("    default_type application/octet-stream;\n");
    for s in sites {
        let _ = writeln!(
            o,
            "    proxy_cache_path {} levels=1:2 keys_zone={}:16k max_size=10m inactive=60m use_temp_path=off;",
            s.cache_dir.display(),
            s.zone
        );
    }
    for s in sites {
        let _ = writeln!(
            o,
            "    server {{\n        listen {} ssl;\n        server_name localhost \"\";",
            s.listen
        );
        // The edge's own run directory, holding the site certificate and key.
        use conclave_rpc::pki::CertsLayout;
        let cert = tls.site_dir.join(CertsLayout::SITE_CERT);
        let key = match &tls.ssl_certificate_key {
            Some(k) => k.clone(),
            None => tls.site_dir.join(CertsLayout::SITE_KEY).display().to_string(),
        };
        let _ = writeln!(o, "        ssl_certificate {};", cert.display());
        let _ = writeln!(o, "        ssl_certificate_key {key};");
        // TLS 1.3 too (nginx 1.22 leaves it off by default), so `--tls 1.3` cells can run.
        o.push_str("        ssl_protocols TLSv1.2 TLSv1.3;\n");
        o.push_str("        ssl_ciphers HIGH:!aNULL:!MD5;\n        ssl_prefer_server_ciphers on;\n");
        let _ = writeln!(o, "        location / {{\n            proxy_cache {};", s.zone);
        o.push_str("            proxy_cache_min_uses 1;\n            proxy_cache_valid 200 60m;\n");
        let _ = writeln!(o, "            proxy_pass http://{origin};\n        }}\n    }}");
    }
    o.push_str("}\n");
    o
}

/// The command line that runs a generated config in the foreground.
pub fn argv(bin: &Path, dir: &Path, conf: &Path) -> Vec<String> {
    vec![
        bin.display().to_string(),
        "-p".into(),
        dir.display().to_string(),
        "-c".into(),
        conf.display().to_string(),
        "-e".into(),
        dir.join("error.log").display().to_string(),
    ]
}

/// `nginx -v` (printed on stderr), e.g. `nginx/1.22.1`.
pub fn version(bin: &Path) -> Option<String> {
    let out = std::process::Command::new(bin).arg("-v").output().ok()?;
    let text = String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    text.split_whitespace()
        .find(|w| w.starts_with("nginx/"))
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_edge_has_the_seed_directives() {
        let sites = [
            CacheSite {
                listen: "127.0.0.1:8440".into(),
                cache_dir: "/s/cache0".into(),
                zone: "ZONE0".into(),
            },
            CacheSite {
                listen: "127.0.0.1:8441".into(),
                cache_dir: "/s/cache1".into(),
                zone: "ZONE1".into(),
            },
        ];
        let c = cache_edge_conf(
            Path::new("/s"),
            4,
            &sites,
            &EdgeTls::local(Path::new("/c")),
            "127.0.0.1:8081",
        );
        for want in [
            "worker_processes 4;",
            "keys_zone=ZONE0:16k max_size=10m inactive=60m use_temp_path=off",
            "keys_zone=ZONE1:16k",
            "listen 127.0.0.1:8441 ssl;",
            "ssl_certificate_key /c/server.key;",
            "proxy_cache_valid 200 60m;",
            "proxy_pass http://127.0.0.1:8081;",
            "daemon off;",
        ] {
            assert!(c.contains(want), "missing {want:?} in\n{c}");
        }
        let keyless = EdgeTls {
            site_dir: "/c".into(),
            ssl_certificate_key: Some("/c/site.keyref".into()),
            extra_main_conf: "env OPENSSL_CONF;\n".into(),
        };
        let k = cache_edge_conf(Path::new("/s"), 1, &sites[..1], &keyless, "127.0.0.1:8081");
        assert!(
            k.contains("\nenv OPENSSL_CONF;\n") && k.contains("ssl_certificate_key /c/site.keyref;"),
            "{k}"
        );
        assert!(!k.contains("server.key"), "{k}");
        let o = origin_conf(Path::new("/s"), "127.0.0.1:8081", Path::new("/h"));
        assert!(o.contains("add_header Cache-Control \"public, no-transform\";") && o.contains("root /h;"));
    }
}
