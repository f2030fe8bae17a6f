//! The OWASP Core Rule Set as Debian packages it (`apt-get install modsecurity-crs`), unmodified,
//! with Debian's recommended `modsecurity.conf`, at paranoia levels 1 to 4: it loads (in well under a
//! second), blocks SQL injection and XSS in the query and in a JSON body, and lets benign requests
//! through. Skipped (with a message) when the package is not installed.

use std::path::{Path, PathBuf};
use std::time::Instant;

use conclave_waf::{Decision, Inspection, RequestContext, RequestView, Waf};

const CRS_SETUP: &str = "/etc/modsecurity/crs/crs-setup.conf";
const CRS_RULES: &str = "/usr/share/modsecurity-crs/rules";

fn crs_installed() -> bool {
    let ok = Path::new(CRS_SETUP).exists() && Path::new(CRS_RULES).is_dir();
    if !ok {
        eprintln!("skipped: modsecurity-crs is not installed (apt-get install modsecurity-crs)");
    }
    ok
}

/// Writes a main configuration as the CRS documentation sets it up: the recommended
/// modsecurity.conf, the engine on, crs-setup.conf, the paranoia level in a local SecAction, the
/// rules.
fn main_conf(dir: &Path, pl: u8) -> PathBuf {
    let recommended = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/crs/modsecurity.conf");
    let text = format!(
        "Include {}\nSecRuleEngine On\nInclude {CRS_SETUP}\n\
         SecAction \"id:900000,phase:1,nolog,pass,t:none,setvar:tx.paranoia_level={pl}\"\n\
         IncludeOptional /etc/modsecurity/crs/REQUEST-900-EXCLUSION-RULES-BEFORE-CRS.conf\n\
         Include {CRS_RULES}/*.conf\n\
         IncludeOptional /etc/modsecurity/crs/RESPONSE-999-EXCLUSION-RULES-AFTER-CRS.conf\n",
        recommended.display()
    );
    let p = dir.join(format!("main-pl{pl}.conf"));
    std::fs::write(&p, text).unwrap();
    p
}

fn load(pl: u8) -> Option<Waf> {
    if !crs_installed() {
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let t = Instant::now();
    let waf = Waf::load(main_conf(dir.path(), pl)).unwrap_or_else(|e| panic!("CRS PL{pl}: {e}"));
    eprintln!(
        "CRS PL{pl}: {} rules loaded in {:?}; notes: {:?}",
        waf.rule_count(),
        t.elapsed(),
        waf.notes()
    );
    Some(waf)
}

const HEADERS: &[(&str, &[u8])] = &[
    ("Host", b"www.example.com"),
    (
        "User-Agent",
        b"Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
    ),
    ("Accept", b"text/html,application/xhtml+xml"),
    ("Accept-Language", b"en-US,en;q=0.5"),
    ("Accept-Encoding", b"gzip, deflate"),
];

fn get(waf: &Waf, uri: &str) -> Inspection {
    waf.inspect(
        &RequestView {
            method: "GET",
            uri,
            headers: HEADERS,
        },
        &RequestContext::default(),
    )
}

fn post_json(waf: &Waf, body: &str) -> Inspection {
    let len = body.len().to_string();
    let mut h: Vec<(&str, &[u8])> = HEADERS.to_vec();
    h.push(("Content-Type", b"application/json"));
    h.push(("Content-Length", len.as_bytes()));
    waf.inspect(
        &RequestView {
            method: "POST",
            uri: "/api/items",
            headers: &h,
        },
        &RequestContext {
            body: body.as_bytes(),
            ..RequestContext::default()
        },
    )
}

#[test]
fn crs_loads_at_every_paranoia_level_in_under_a_second() {
    for pl in 1..=4 {
        let Some(waf) = load(pl) else { return };
        assert!(waf.is_interpreted());
        assert!(waf.rule_count() > 400, "{}", waf.rule_count());
        let t = Instant::now();
        let _ = load(pl);
        assert!(
            t.elapsed().as_secs_f64() < 1.0,
            "PL{pl} load took {:?}",
            t.elapsed()
        );
    }
}

#[test]
fn crs_blocks_sqli_and_xss_and_passes_benign_requests() {
    for pl in 1..=4 {
        let Some(waf) = load(pl) else { return };
        let sqli = get(&waf, "/?id=1%27%20OR%20%271%27%3D%271");
        assert_eq!(
            sqli.deny.as_ref().map(|d| (d.0, d.1)),
            Some((403, 949110)),
            "PL{pl} {sqli:?}"
        );
        assert!(sqli.matched.contains(&942100), "PL{pl} {:?}", sqli.matched);
        assert!(sqli.tx_int("anomaly_score") >= 5, "{:?}", sqli.tx);
        let xss = get(&waf, "/?q=%3Cscript%3Ealert(1)%3C%2Fscript%3E");
        assert_eq!(
            xss.deny.as_ref().map(|d| (d.0, d.1)),
            Some((403, 949110)),
            "PL{pl} {xss:?}"
        );
        assert!(xss.matched.contains(&941100), "PL{pl} {:?}", xss.matched);
        let benign = get(&waf, "/products/view?id=42&sort=price&page=2");
        assert_eq!(benign.deny, None, "PL{pl} {benign:?}");
        if pl == 1 {
            assert_eq!(benign.tx_int("anomaly_score"), 0, "{:?}", benign.matched);
            let ok = post_json(&waf, r#"{"name":"Widget","qty":3,"tags":["a","b"]}"#);
            assert_eq!(ok.deny, None, "PL{pl} {ok:?}");
        }
        let json = post_json(&waf, r#"{"user":{"id":"1' OR '1'='1"}}"#);
        assert_eq!(
            json.deny.as_ref().map(|d| (d.0, d.1)),
            Some((403, 949110)),
            "PL{pl} {json:?}"
        );
    }
}

#[test]
fn crs_check_denies_with_status_and_rule() {
    let Some(waf) = load(1) else { return };
    let req = RequestView {
        method: "GET",
        uri: "/?id=1%27%20OR%20%271%27%3D%271",
        headers: HEADERS,
    };
    match waf.check(&req) {
        Decision::Deny { status, rule_id, msg } => {
            assert_eq!((status, rule_id), (403, 949110));
            assert_eq!(
                msg,
                Some("Inbound Anomaly Score Exceeded (Total Score: %{TX.ANOMALY_SCORE})")
            );
        }
        d => panic!("{d:?}"),
    }
}
