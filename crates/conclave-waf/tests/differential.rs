//! Differential tests: conclave-waf and Debian's libmodsecurity3 must give the same decision,
//! status and rule id for the same rule files and requests.
//! Run with `cargo test -p conclave-waf --features modsecurity` (needs libmodsecurity-dev).
#![cfg(feature = "modsecurity")]

use std::path::{Path, PathBuf};

use conclave_waf::modsec::ModSecurity;
use conclave_waf::{rulegen, Decision, RequestView, Waf};

/// An owned request for the corpus.
struct Req {
    method: &'static str,
    uri: String,
    headers: Vec<(String, Vec<u8>)>,
}

fn get(uri: impl Into<String>) -> Req {
    Req {
        method: "GET",
        uri: uri.into(),
        headers: vec![("Host".into(), b"localhost".to_vec())],
    }
}

/// `r`'s headers as a [`RequestView`] borrows them.
fn headers_of(r: &Req) -> Vec<(&str, &[u8])> {
    r.headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_slice()))
        .collect()
}

/// Compares every request; returns a description of each disagreement.
fn compare(main: &Path, reqs: &[Req]) -> Vec<String> {
    let ours = Waf::load(main).unwrap_or_else(|e| panic!("conclave-waf cannot load {}: {e}", main.display()));
    let theirs = ModSecurity::load(main)
        .unwrap_or_else(|e| panic!("libmodsecurity cannot load {}: {e}", main.display()));
    let mut bad = Vec::new();
    for r in reqs {
        let headers = headers_of(r);
        let view = RequestView {
            method: r.method,
            uri: &r.uri,
            headers: &headers,
        };
        let got = ours.check(&view);
        let want = theirs.check(&view).expect("libmodsecurity transaction");
        let same = match got {
            Decision::Allow => !want.disruptive,
            Decision::Deny { status, rule_id, .. } => {
                want.disruptive && want.status == status && want.rule_id == Some(rule_id)
            }
        };
        if !same {
            bad.push(format!(
                "{} {} {:?}: conclave {:?}, libmodsecurity {:?}",
                r.method, r.uri, r.headers, got, want
            ));
        }
    }
    bad
}

fn assert_same(main: &Path, reqs: &[Req]) {
    let bad = compare(main, reqs);
    assert!(
        bad.is_empty(),
        "{}: {} of {} requests differ:\n{}",
        main.display(),
        bad.len(),
        reqs.len(),
        bad.iter().take(30).cloned().collect::<Vec<_>>().join("\n")
    );
}

fn percent_all(s: &[u8], upper: bool) -> String {
    s.iter()
        .map(|c| {
            if upper {
                format!("%{c:02X}")
            } else {
                format!("%{c:02x}")
            }
        })
        .collect()
}

fn swap_case(s: &[u8]) -> String {
    s.iter()
        .map(|&c| if c.is_ascii_lowercase() { c.to_ascii_uppercase() } else { c.to_ascii_lowercase() } as char)
        .collect()
}

/// Requests around the listed strings: plain, embedded, encoded, case variants, other names.
fn seed_requests(strings: &[[u8; 6]], seed: u64) -> Vec<Req> {
    let mut out = vec![
        get("/"),
        get("/index.html"),
        get("/?testparam="),
        get("/?testparam"),
        get("/?"),
    ];
    // libmodsecurity tests 10k rules one by one per request: fewer picks keep the test short.
    let picks = if strings.len() >= 10_000 {
        40
    } else {
        120.min(strings.len())
    };
    for k in 0..picks {
        let raw = &strings[k * strings.len() / picks];
        let s = std::str::from_utf8(raw).unwrap();
        out.push(get(format!("/?testparam={s}")));
        out.push(get(format!("/index.html?other=1&testparam=xx{s}yy")));
        out.push(get(format!("/?testparam={}", percent_all(raw, true))));
        out.push(get(format!("/?testparam={}", percent_all(raw, false))));
        out.push(get(format!("/?testparam={}%{:02X}{}", &s[..2], raw[2], &s[3..])));
        out.push(get(format!("/?testparam={}", swap_case(raw))));
        out.push(get(format!("/?testparam={}", s.to_ascii_lowercase())));
        out.push(get(format!("/?other={s}")));
        out.push(get(format!("/?TestParam={s}")));
        out.push(get(format!("/?test%70aram={s}")));
        out.push(get(format!("/?testparam=zzz&testparam={s}")));
        out.push(get(format!("/?testparam={}+{}", &s[..3], &s[3..])));
        out.push(get(format!("/?testparam={}%2B{}", &s[..3], &s[3..])));
        out.push(get(format!("/{s}?testparam=q")));
        out.push(get(format!("/?testparam&{s}")));
        out.push(get(format!("/?testparam={s}&")));
        out.push(get(format!("/?testparam=a=b{s}")));
        let mut h = get("/?testparam=none");
        h.headers.push(("testparam".into(), raw.to_vec()));
        out.push(h);
    }
    // Random values, mostly not listed.
    for (i, r) in rulegen::seed_strings(100, seed ^ 0x5eed).iter().enumerate() {
        let s = std::str::from_utf8(r).unwrap();
        out.push(get(format!("/?testparam={s}{}", i % 7)));
    }
    out
}

fn check_seed_set(n: usize) {
    let dir = tempfile::tempdir().unwrap();
    let main = dir.path().join("main.conf");
    let seed = 42 + n as u64;
    rulegen::write_seed_rule_set(&main, n, seed).unwrap();
    let strings = rulegen::seed_strings(n, seed);
    assert_same(&main, &seed_requests(&strings, seed));
}

#[test]
fn seed_set_1_rule_matches_libmodsecurity() {
    check_seed_set(1);
}

#[test]
fn seed_set_10_rules_matches_libmodsecurity() {
    check_seed_set(10);
}

#[test]
fn seed_set_100_rules_matches_libmodsecurity() {
    check_seed_set(100);
}

#[test]
fn seed_set_1000_rules_matches_libmodsecurity() {
    check_seed_set(1000);
}

#[test]
fn seed_set_10000_rules_matches_libmodsecurity() {
    check_seed_set(10_000);
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/rules")
        .join(name)
}

const NAMES: &[&str] = &[
    "a",
    "b",
    "c",
    "d",
    "e",
    "f",
    "g",
    "h",
    "i",
    "j",
    "k",
    "l",
    "m",
    "n",
    "o",
    "p",
    "q",
    "r",
    "s",
    "x",
    "y",
    "order",
    "first",
    "debug",
    "DEBUG",
    "sel",
    "A",
    "testparam",
];

const VALUES: &[&str] = &[
    "",
    "evil",
    "EVIL",
    "xeVILx",
    "evilx",
    "EvIlX",
    "exact",
    "exactx",
    "ex",
    "prefix",
    "pre",
    "xfix",
    "fix",
    "alpha",
    "BETA",
    "gam",
    "al",
    "123-x",
    "12-x",
    "foo",
    "foo,bar",
    "o,b",
    "safe",
    "unsafe",
    "ok",
    "abc",
    "ABC",
    "b",
    "one",
    "TWO",
    "three",
    "x1",
    "1y",
    "yy",
    "ab",
    "%3Cx%3E",
    "<x>",
    "%3cx%3e",
    "%253Cx%253E",
    "a+b",
    "a%20b",
    "a%2Bb",
    "drop",
    "DROP",
    "attack!",
    "p",
    "pq",
    "r",
    "rs",
    "1",
    "12",
    "s",
    "ss",
    "bad",
    "az",
    "abz",
    "aZz",
    "q",
    "Q",
    "regex",
    "bare",
    "%41bc",
    "A%42C",
    "%",
    "%zz",
    "%4",
    "x+y",
    "x%20y",
    "x y",
    "evi%6c",
    "ev%2569l",
    "sel",
    "debug",
];

/// Requests for the hand-written rule files: every name × value, plus URIs, methods, headers.
fn fixture_requests() -> Vec<Req> {
    let mut out = Vec::new();
    for n in NAMES {
        for v in VALUES {
            out.push(get(format!("/?{n}={v}")));
        }
    }
    for uri in [
        "/",
        "/admin",
        "/ADMIN",
        "/%61dmin",
        "/x/admin/y",
        "/x.bak",
        "/x.BAK",
        "/x.bak?q=1",
        "/x%2Ebak",
        "/x.ba%6B",
        "/index.php",
        "/index.php?x=1",
        "/index.PHP",
        "http://h.example/admin",
        "http://h.example/p.php",
        "/secret",
        "/SeCrEt",
        "/%53ecret",
        "/a%25b",
        "/a b",
        "/a%20b",
        "/a+b",
        "/p%3Fq.bak",
        "/p?q.bak",
        "/?debug",
        "/?Debug=1",
        "/?debug%00=1",
        "/?sel",
        "/?SEL=1",
        "/?q=drop&r=x",
        "/?q=drop",
        "/?x=drop&q=ok",
        "/%",
        "/%zz?%zz=%zz",
        "/~x",
        "/%7Ex",
        "/?~=1",
        "/?%7E=1",
        "/?a=evil&a=good",
        "/?a=good&a=evil",
        "/?p=pq&p=p",
        "/?r=rs",
        "/?r=r&r=rs",
        "/?order=1",
        "/?order=12",
        "/?s=ss",
        "/?s=s&s=ss",
        "/?y=abz",
        "/?y=az",
        "/?y=a&y=z",
        "/?x=bad",
    ] {
        out.push(get(uri));
        for m in ["POST", "DELETE", "HEAD", "PUT", "delete"] {
            let mut r = get(uri);
            r.method = m;
            out.push(r);
        }
    }
    let header_cases: &[(&str, &str)] = &[
        ("User-Agent", "sqlmap/1.0"),
        ("user-agent", "Mozilla SQLMap"),
        ("USER-AGENT", "nikto"),
        ("User-Agent", "curl"),
        ("X-Foo", "attack now"),
        ("x-foo", "no attack"),
        ("X-Bar", "attack"),
        ("Referer", "<script>alert(1)"),
        ("Referer", "%3Cscript"),
        ("X-A", "a%20b"),
        ("X-A", "a+b"),
        ("X-A", "a b"),
        ("x-a", "a%2bb"),
        ("Host", "x"),
        ("Host", "trusted.example"),
        ("Host", "TRUSTED.example"),
        ("Host", "evil.example"),
        ("Cookie", "evil=1"),
    ];
    for (name, value) in header_cases {
        for uri in ["/", "/?y=abz", "/?x=bad", "/?a=1"] {
            for method in ["GET", "POST"] {
                let mut r = get(uri);
                r.method = method;
                if name.eq_ignore_ascii_case("host") {
                    r.headers.clear();
                }
                r.headers.push((name.to_string(), value.as_bytes().to_vec()));
                out.push(r);
            }
        }
    }
    out
}

#[test]
fn hand_written_rule_files_match_libmodsecurity() {
    let reqs = fixture_requests();
    let mut failures = Vec::new();
    for f in [
        "operators.conf",
        "variables.conf",
        "transforms.conf",
        "chains.conf",
        "defaults.conf",
        "defaults1.conf",
        "detection.conf",
        "off.conf",
        "include.conf",
    ] {
        let bad = compare(&fixture(f), &reqs);
        if !bad.is_empty() {
            failures.push(format!(
                "{f}: {} of {} differ:\n  {}",
                bad.len(),
                reqs.len(),
                bad.iter().take(15).cloned().collect::<Vec<_>>().join("\n  ")
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// `TX:/^prefix/` and `TX:/regex/` selections (920450's shape: header names written to `TX`,
/// then `@within` a `%{tx.…}` list), with matches that change the collection being read.
#[test]
fn tx_selections_match_libmodsecurity() {
    let with = |uri: &str, extra: &[&str]| {
        let mut r = get(uri);
        for h in extra {
            r.headers.push(((*h).into(), b"1".to_vec()));
        }
        r
    };
    let reqs = vec![
        with("/", &[]),
        with("/", &["Accept", "User-Agent"]),
        with("/", &["Proxy"]),
        with("/", &["PROXY", "Accept"]),
        with("/", &["Proxy", "X-Bad"]),
        with("/", &["X-Bad-Not"]),
        with("/?a=zz", &[]),
        with("/?a=q", &[]),
        with("/?a=y", &[]),
        with("/?a=zz&a=q", &["Lock-Token"]),
    ];
    assert_same(&fixture("collections.conf"), &reqs);
    // The rules do decide (statuses of the first deny per request).
    let waf = Waf::load(fixture("collections.conf")).expect("load");
    let statuses: Vec<u16> = reqs
        .iter()
        .map(|r| {
            let headers = headers_of(r);
            let view = RequestView {
                method: r.method,
                uri: &r.uri,
                headers: &headers,
            };
            match waf.check(&view) {
                Decision::Allow => 200,
                Decision::Deny { status, .. } => status,
            }
        })
        .collect();
    assert_eq!(statuses, [200, 200, 401, 401, 403, 200, 418, 419, 419, 401]);
}
