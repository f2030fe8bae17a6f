//! Loading rule files: the supported subset, errors that name file, line and directive, skipping
//! unsupported rules on request, includes, and the decisions on simple requests.

use std::path::{Path, PathBuf};

use conclave_waf::{rulegen, Decision, Engine, LoadOptions, RequestView, Waf, WafError};

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    if let Some(d) = p.parent() {
        std::fs::create_dir_all(d).unwrap();
    }
    std::fs::write(&p, text).unwrap();
    p
}

fn get<'a>(uri: &'a str, headers: &'a [(&'a str, &'a [u8])]) -> RequestView<'a> {
    RequestView {
        method: "GET",
        uri,
        headers,
    }
}

fn deny_of(d: Decision<'_>) -> Option<(u16, u64)> {
    match d {
        Decision::Allow => None,
        Decision::Deny { status, rule_id, .. } => Some((status, rule_id)),
    }
}

#[test]
fn unsupported_operator_names_file_line_and_directive() {
    let dir = tempfile::tempdir().unwrap();
    let main = write(
        dir.path(),
        "main.conf",
        "SecRuleEngine On\n\n# comment\nSecRule ARGS \"@inspectFile /bin/true\" \"id:1,deny\"\n",
    );
    let err = Waf::load(&main).err().expect("must fail");
    assert!(matches!(err, WafError::Unsupported { line: 4, .. }), "{err}");
    let text = err.to_string();
    assert!(
        text.contains("main.conf:4: SecRule: unsupported: operator `@inspectFile`"),
        "{text}"
    );
}

#[test]
fn unsupported_rules_are_skipped_and_listed_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let main = write(
        dir.path(),
        "main.conf",
        concat!(
            "SecRuleEngine On\n",
            "SecRule ARGS \"@contains evil\" \"id:1,deny,status:403\"\n",
            "SecRule NO_SUCH_VAR \"@contains x\" \"id:2,deny,chain\"\n",
            "  SecRule ARGS \"@contains y\" \"id:3\"\n",
            "SecRule ARGS \"@contains a\" \"id:4,deny,chain\"\n",
            "  SecRule ARGS \"@contains b\" \"exec:/bin/true\"\n",
            "SecHashEngine On\n",
            "SecRule ARGS \"@contains worse\" \"id:6,deny,status:406\"\n",
        ),
    );
    assert!(Waf::load(&main).is_err());
    let waf = Waf::load_with(
        &main,
        &LoadOptions {
            ignore_unsupported: true,
        },
    )
    .unwrap();
    let skipped: Vec<String> = waf.skipped().iter().map(|e| e.to_string()).collect();
    assert_eq!(skipped.len(), 3, "{skipped:?}");
    assert!(
        skipped[0].contains(":3: SecRule: unsupported: variable `NO_SUCH_VAR`"),
        "{skipped:?}"
    );
    assert!(
        skipped[1].contains(":6: SecRule: unsupported: action `exec`"),
        "{skipped:?}"
    );
    assert!(
        skipped[2].contains(":7: SecHashEngine: unsupported: directive"),
        "{skipped:?}"
    );
    assert_eq!(waf.rule_count(), 2);
    assert_eq!(deny_of(waf.check(&get("/?q=evil", &[]))), Some((403, 1)));
    assert_eq!(deny_of(waf.check(&get("/?q=ab", &[]))), None);
    assert_eq!(deny_of(waf.check(&get("/?q=worse", &[]))), Some((406, 6)));
}

#[test]
fn rule_sets_beyond_the_set_matcher_run_in_the_interpreter() {
    let dir = tempfile::tempdir().unwrap();
    let main = write(
        dir.path(),
        "main.conf",
        concat!(
            "SecRuleEngine On\n",
            "SecDefaultAction \"phase:1,log,pass\"\n",
            "SecAction \"id:1,phase:1,pass,nolog,setvar:tx.limit=5\"\n",
            "SecRule REQUEST_COOKIES \"@contains x\" \"id:2,block,chain\"\n",
            "  SecRule ARGS \"@contains y\" \"setvar:'tx.score=+%{tx.limit}'\"\n",
            "SecRule ARGS:/^q/ \"@rx (evil)\" \"id:3,pass,capture,setvar:tx.score=+1,setvar:tx.what=%{TX.1}\"\n",
            "SecRule &ARGS \"@gt 3\" \"id:4,pass,skipAfter:END\"\n",
            "SecRule TX:SCORE \"@ge %{tx.limit}\" \"id:5,deny,status:406\"\n",
            "SecMarker END\n",
        ),
    );
    let waf = Waf::load(&main).unwrap();
    assert!(waf.is_interpreted());
    let cookie: &[(&str, &[u8])] = &[("Cookie", b"a=x")];
    assert_eq!(deny_of(waf.check(&get("/?q=y", cookie))), Some((406, 5)));
    assert_eq!(deny_of(waf.check(&get("/?q=y", &[]))), None);
    assert_eq!(deny_of(waf.check(&get("/?qq=evil", &[]))), None, "score 1 of 5");
    // Four arguments skip the scoring rule.
    assert_eq!(deny_of(waf.check(&get("/?q=y&b&c&d", cookie))), None);
    let ctx = conclave_waf::RequestContext::default();
    let i = waf.inspect(&get("/?qa=evil", &[]), &ctx);
    assert_eq!(i.matched, vec![1, 3]);
    assert_eq!(i.tx_int("score"), 1);
    assert!(
        i.tx.contains(&("what".to_string(), "evil".to_string())),
        "{:?}",
        i.tx
    );
}

#[test]
fn syntax_errors_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("SecRule ARGS \"@contains x\" \"deny\"\n", "the rule has no id"),
        (
            "SecRule ARGS \"@contains x\" \"id:1\"\nSecRule ARGS \"@contains y\" \"id:1\"\n",
            "rule id 1 is duplicated",
        ),
        ("SecRule ARGS \"@contains x\n", "unterminated double quote"),
        ("SecRuleEngine Maybe\n", "expects On, Off or DetectionOnly"),
        ("SecRule ARGS \"@contains x\" \"id:1,chain\"\n", "no rule follows"),
        ("SecRule ARGS \"@contains x\" \"id:1,status:abc\"\n", "bad status"),
        ("Include missing.conf\n", "cannot read rule file"),
    ];
    for (i, (text, want)) in cases.iter().enumerate() {
        let main = write(dir.path(), &format!("case{i}.conf"), text);
        let err = Waf::load(&main)
            .err()
            .unwrap_or_else(|| panic!("case {i} must fail"));
        assert!(err.to_string().contains(want), "case {i}: {err}");
        assert!(
            err.to_string().contains(&format!("case{i}.conf")) || text.starts_with("Include"),
            "{err}"
        );
    }
}

#[test]
fn includes_are_relative_to_the_including_file_and_globbed() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "conf/rules/b.conf",
        "SecRule ARGS \"@contains bbb\" \"id:2,deny,status:402\"\n",
    );
    write(
        dir.path(),
        "conf/rules/a.conf",
        "SecRule ARGS \"@contains aaa\" \"id:1,deny,status:401\"\n",
    );
    write(dir.path(), "conf/rules/skip.txt", "not a rule file\n");
    write(dir.path(), "conf/inner.conf", "Include rules/*.conf\n");
    let main = write(
        dir.path(),
        "conf/main.conf",
        "SecRuleEngine On\nInclude inner.conf\n",
    );
    let waf = Waf::load(&main).unwrap();
    assert_eq!(waf.rule_count(), 2);
    assert_eq!(deny_of(waf.check(&get("/?x=aaabbb", &[]))), Some((401, 1)));
    assert_eq!(deny_of(waf.check(&get("/?x=bbb", &[]))), Some((402, 2)));
}

#[test]
fn engine_modes_gate_the_decision() {
    let dir = tempfile::tempdir().unwrap();
    let rule = "SecRule ARGS \"@contains evil\" \"id:9,deny,status:403,msg:'evil arg'\"\n";
    for (engine, want_check) in [("On", true), ("DetectionOnly", false), ("Off", false)] {
        let main = write(
            dir.path(),
            &format!("{engine}.conf"),
            &format!("SecRuleEngine {engine}\n{rule}"),
        );
        let waf = Waf::load(&main).unwrap();
        let req = get("/?a=evil", &[]);
        assert_eq!(waf.check(&req) != Decision::Allow, want_check, "{engine}");
        if engine == "DetectionOnly" {
            assert_eq!(waf.engine(), Engine::DetectionOnly);
            assert_eq!(
                waf.detect(&req),
                Decision::Deny {
                    status: 403,
                    rule_id: 9,
                    msg: Some("evil arg")
                }
            );
        }
    }
}

#[test]
fn seed_rule_set_denies_listed_strings_only() {
    let dir = tempfile::tempdir().unwrap();
    let main = dir.path().join("main.conf");
    rulegen::write_seed_rule_set(&main, 500, 9).unwrap();
    let waf = Waf::load(&main).unwrap();
    assert_eq!(waf.rule_count(), 500);
    let strings = rulegen::seed_strings(500, 9);
    let h: &[(&str, &[u8])] = &[("Host", b"localhost")];
    for (i, s) in strings.iter().enumerate().step_by(37) {
        let s = std::str::from_utf8(s).unwrap();
        let uri = format!("/1k.txt?testparam=xx{s}");
        let (status, id) = deny_of(waf.check(&get(&uri, h))).expect("listed string is denied");
        assert_eq!(status, 403);
        // The first rule with this string wins (a later duplicate never does).
        assert!(id <= i as u64 + 1);
        let other = format!("/1k.txt?other={s}");
        assert_eq!(waf.check(&get(&other, h)), Decision::Allow);
    }
    assert_eq!(waf.check(&get("/1k.txt", h)), Decision::Allow);
}

#[test]
fn header_and_method_variables() {
    let dir = tempfile::tempdir().unwrap();
    let main = write(
        dir.path(),
        "main.conf",
        concat!(
            "SecRuleEngine On\n",
            "SecRule REQUEST_HEADERS:User-Agent \"@pm sqlmap nikto\" \"id:1,phase:1,deny,status:403\"\n",
            "SecRule REQUEST_METHOD \"!@within GET HEAD\" \"id:2,deny,status:405\"\n",
        ),
    );
    let waf = Waf::load(&main).unwrap();
    let ua: &[(&str, &[u8])] = &[("user-agent", b"Mozilla SQLMap/1")];
    assert_eq!(deny_of(waf.check(&get("/", ua))), Some((403, 1)));
    assert_eq!(
        deny_of(waf.check(&RequestView {
            method: "PUT",
            uri: "/",
            headers: &[]
        })),
        Some((405, 2))
    );
    assert_eq!(waf.check(&get("/", &[("User-Agent", b"curl")])), Decision::Allow);
}

/// Brute force: the first rule whose string occurs in `v`.
fn first_listed_in(strings: &[[u8; 6]], v: &[u8]) -> Option<u64> {
    strings
        .iter()
        .position(|s| v.windows(6).any(|w| w == s))
        .map(|i| i as u64 + 1)
}

#[test]
fn large_literal_sets_agree_with_brute_force() {
    // 60,000 distinct literals switch `@contains` from the automaton to the window hash.
    let n = 60_000;
    let dir = tempfile::tempdir().unwrap();
    let main = dir.path().join("main.conf");
    rulegen::write_seed_rule_set(&main, n, 11).unwrap();
    let waf = Waf::load(&main).unwrap();
    let strings = rulegen::seed_strings(n, 11);
    let noise = rulegen::seed_strings(200, 12);
    for k in 0..100 {
        let s = std::str::from_utf8(&strings[(k * 601) % n]).unwrap();
        let z = std::str::from_utf8(&noise[k]).unwrap();
        let z2 = std::str::from_utf8(&noise[k + 100]).unwrap();
        for value in [
            s.to_string(),
            format!("{z}{s}{z2}"),
            format!("{z}{z2}"),
            format!("{}{}", &s[..3], &z[..3]),
        ] {
            let uri = format!("/?testparam={value}");
            let want = first_listed_in(&strings, value.as_bytes()).map(|id| (403, id));
            assert_eq!(deny_of(waf.check(&get(&uri, &[]))), want, "{value}");
        }
    }
}

/// A tiny deterministic generator for the garbage tests.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }

    fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
        from[(self.next() as usize) % from.len()]
    }
}

#[test]
fn garbage_rule_files_and_requests_never_panic() {
    let dir = tempfile::tempdir().unwrap();
    let parts = [
        "SecRule",
        "SecRuleEngine",
        "On",
        "ARGS",
        "ARGS:",
        "!ARGS:x",
        "|",
        "\"",
        "\\",
        "\"@rx (",
        "\"@contains",
        "\"@pm",
        "@within",
        "id:",
        "id:1",
        "id:2",
        ",",
        "chain",
        "phase:3",
        "t:urlDecode",
        "status:",
        "'",
        " ",
        "\n",
        "\\\n",
        "#",
        "Include",
        "*",
        "%{x}",
        "REQUEST_HEADERS:a",
        "deny",
        "\"id:3,deny\"",
        "&ARGS",
        "é",
    ];
    let mut rng = Lcg(5);
    let uris = [
        "/", "/?", "/?&&", "/?%", "/?a=%4", "/?%zz=+", "http://x", "http:", "//", "/%", "x?y=z", "?",
    ];
    for i in 0..300 {
        let text: String = (0..rng.next() % 40)
            .map(|_| rng.pick(&parts))
            .collect::<Vec<_>>()
            .join(" ");
        let main = write(
            dir.path(),
            &format!("g{i}.conf"),
            &format!("SecRuleEngine On\n{text}\n"),
        );
        for opts in [
            LoadOptions::default(),
            LoadOptions {
                ignore_unsupported: true,
            },
        ] {
            if let Ok(waf) = Waf::load_with(&main, &opts) {
                for u in uris {
                    let _ = waf.check(&get(u, &[("a", b"\xff\x00")]));
                }
            }
        }
    }
}
