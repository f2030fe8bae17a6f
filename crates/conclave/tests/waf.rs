//! `conclave waf-rules`: writes the seed's rule sets, reproducibly, and they load.
#![cfg(feature = "waf")]

mod common;

fn waf_rules(args: &[&str]) -> std::process::Output {
    common::conclave()
        .arg("waf-rules")
        .args(args)
        .output()
        .expect("run conclave")
}

#[test]
fn waf_rules_writes_reproducible_seed_rule_sets() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a/main.conf");
    let b = dir.path().join("b/main.conf");
    for (out, seed) in [(&a, "7"), (&b, "7")] {
        let o = waf_rules(&["100", "--seed", seed, "--out", out.to_str().unwrap(), "--check"]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        assert!(String::from_utf8_lossy(&o.stdout).contains("loaded 100 rules"));
    }
    let main = std::fs::read_to_string(&a).unwrap();
    assert_eq!(main, "SecRuleEngine On\nInclude main-rules.conf\n");
    let rules_a = std::fs::read_to_string(dir.path().join("a/main-rules.conf")).unwrap();
    let rules_b = std::fs::read_to_string(dir.path().join("b/main-rules.conf")).unwrap();
    assert_eq!(rules_a, rules_b, "same seed, same rules");
    let lines: Vec<&str> = rules_a.lines().collect();
    assert_eq!(lines.len(), 100);
    let first = lines[0];
    assert!(
        first.starts_with("SecRule ARGS:testparam \"@contains "),
        "{first}"
    );
    assert!(first.ends_with("\" \"id:1,deny,status:403\""), "{first}");
    let word = &first["SecRule ARGS:testparam \"@contains ".len()..][..6];
    assert!(word.bytes().all(|c| c.is_ascii_alphabetic()), "{word}");

    let c = dir.path().join("c/main.conf");
    let o = waf_rules(&["100", "--seed", "8", "--out", c.to_str().unwrap()]);
    assert!(o.status.success());
    assert_ne!(
        std::fs::read_to_string(dir.path().join("c/main-rules.conf")).unwrap(),
        rules_a
    );
}

#[test]
fn waf_rules_rejects_a_bad_count() {
    let o = waf_rules(&["many", "--out", "/tmp/never-written.conf"]);
    assert!(!o.status.success());
}
