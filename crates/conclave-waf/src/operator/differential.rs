//! Every transformation and operator checked against libmodsecurity 3.0.9 itself: one small rule
//! per case, the value delivered as a fully percent-encoded query argument (so libmodsecurity's
//! `ARGS` holds exactly the bytes we test), and one transaction per case.
//!
//! Transformations: the rule `SecRule ARGS:aN "!@rx ^<our output as \xHH>\z" "t:none,t:T,deny"`
//! denies exactly when libmodsecurity's output differs from ours. Operators: the rule
//! `SecRule ARGS:aN "@op arg" "deny"` denies exactly when libmodsecurity's operator matches.

use crate::rng::SplitMix64;
use std::borrow::Cow;
use std::fmt::Write as _;
use std::path::Path;

use crate::modsec::ModSecurity;
use crate::operator::test_ctx::Ctx;
use crate::operator::Operator;
use crate::transform::Transform;
use crate::RequestView;

/// Pieces random values are made of: the bytes and tokens the decoders treat specially.
const PIECES: &[&[u8]] = &[
    b"%",
    b"%u",
    b"%U",
    b"+",
    b"4",
    b"1",
    b"0",
    b"a",
    b"F",
    b"f",
    b"e",
    b"x",
    b"X",
    b"&",
    b"#",
    b";",
    b"\\",
    b"/",
    b"*",
    b"-",
    b"<",
    b"!",
    b">",
    b".",
    b"..",
    b"'",
    b"\"",
    b"^",
    b",",
    b" ",
    b"\t",
    b"\n",
    b"\r",
    b"\x0b",
    b"\0",
    b"\xa0",
    b"\xc2",
    b"\xc3\xa9",
    b"\xe2\x82\xac",
    b"\xf0\x9f\x98\x80",
    b"\x80",
    b"\xff",
    b"\xc0\xaf",
    b"\xed\xa0\x80",
    b"=",
    b"amp",
    b"lt",
    b"quot",
    b"nbsp",
    b"u",
    b"0x",
    b"ff",
    b"41",
    b"7",
    b"9",
    b"Z",
    b"z",
    b"(",
    b"/*",
    b"*/",
    b"<!--",
    b"-->",
    b"--",
    b"QUJD",
    b"QQ==",
    b"select",
    b"../",
    b"./",
    b"//",
    b"c:",
    b"\\..\\",
    b"&#",
    b"&#x",
    b"\\u",
    b"\\x",
];

fn random_value(rng: &mut SplitMix64) -> Vec<u8> {
    let n = rng.below(12);
    let mut v = Vec::new();
    for _ in 0..n {
        v.extend_from_slice(PIECES[rng.below(PIECES.len())]);
    }
    v
}

fn percent_all(v: &[u8]) -> String {
    let mut s = String::with_capacity(v.len() * 3);
    for b in v {
        let _ = write!(s, "%{b:02X}");
    }
    s
}

fn rx_exact(v: &[u8]) -> String {
    let mut s = String::from("^");
    for b in v {
        let _ = write!(s, "\\x{b:02x}");
    }
    s.push_str("\\z");
    s
}

/// Loads `rules` into libmodsecurity; for each case `(arg name, value)` returns whether the
/// request `GET /?name=value` was denied, and by which rule.
fn run_modsec(rules: &str, cases: &[(String, Vec<u8>)]) -> Vec<Option<u64>> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rules.conf");
    std::fs::write(&path, format!("SecRuleEngine On\n{rules}")).unwrap();
    let ms = ModSecurity::load(&path).unwrap_or_else(|e| panic!("libmodsecurity rejects rules: {e}"));
    cases
        .iter()
        .map(|(name, v)| {
            let uri = format!("/?{name}={}", percent_all(v));
            let headers = [("Host", &b"localhost"[..])];
            let req = RequestView {
                method: "GET",
                uri: &uri,
                headers: &headers,
            };
            let d = ms.check(&req).expect("transaction");
            d.disruptive.then(|| d.rule_id.unwrap_or(0))
        })
        .collect()
}

fn transform_cases(seed: u64) -> Vec<Vec<u8>> {
    let mut values: Vec<Vec<u8>> = [
        &b""[..],
        b"abc",
        b"a%41+b%4%zz%",
        b"%u0041%uFF01%u12%41+",
        b"&lt;a&#65;&#x42;&amp&nbsp;&foo;&",
        b"&#x;&#;&#x41414141414141414141;&#999;",
        b"\\x41\\u0042\\uff01\\101\\n\\q\\",
        b"\\41 b\\000042c\\\nd\\",
        b"\\x41\\101\\n\\q\\x4\\777",
        b"C:\\\"Pro^gram\" ,;  /c ( X)",
        b"a/*x*/b/*y",
        b"a/*x*/b--c#d<!--e-->",
        b"a/*x*/bc-- d",
        b"/a/b/../c/./d//e",
        b"/../../etc/passwd",
        b"../../etc/passwd",
        b"a/b/",
        b"/a/b/..",
        b"c:\\a\\..\\b",
        b"QUJD",
        b"QUI=",
        b"QUI",
        b"QU!JD",
        b"QU JD",
        b"41424",
        b"x 0x414243 y",
        b"0x41",
        b"a\xc3\xa9\xe2\x82\xac\xc3",
        b"\xc0\x80\xed\xa0\x80\xf4\x90\x80\x80",
        b" \ta b\n",
        b"a\0b",
    ]
    .iter()
    .map(|v| v.to_vec())
    .collect();
    let mut rng = SplitMix64(seed);
    for _ in 0..400 {
        values.push(random_value(&mut rng));
    }
    values
}

/// Documented exception (docs/waf.md): libmodsecurity 3.0.9's `t:base64DecodeExt` gives other
/// bytes for some values whose count of base64 characters is 5, 9, 13, ... (one character past a
/// group); the CRS does not use `t:base64DecodeExt`.
fn base64_ext_exception(v: &[u8]) -> bool {
    let n = v
        .iter()
        .filter(|&&c| c.is_ascii_alphanumeric() || c == b'+' || c == b'/')
        .count();
    n % 4 == 1
}

fn check_transform(name: &str, seed: u64) -> Vec<String> {
    let t = Transform::parse(name).unwrap();
    let values = transform_cases(seed);
    let mut rules = String::new();
    let mut cases = Vec::new();
    let mut ours = Vec::new();
    for (k, v) in values.iter().enumerate() {
        if t == Transform::Base64DecodeExt && base64_ext_exception(v) {
            continue;
        }
        let out = t.apply(Cow::Borrowed(v)).into_owned();
        let id = k + 1;
        let _ = writeln!(
            rules,
            "SecRule ARGS:a{id} \"!@rx {}\" \"id:{id},phase:1,deny,t:none,t:{name}\"",
            rx_exact(&out)
        );
        cases.push((format!("a{id}"), v.clone()));
        ours.push((v, out));
    }
    let got = run_modsec(&rules, &cases);
    let mut bad = Vec::new();
    for (k, g) in got.iter().enumerate() {
        if g.is_some() {
            bad.push(format!(
                "t:{name} {:?}: conclave {:?}",
                String::from_utf8_lossy(ours[k].0),
                String::from_utf8_lossy(&ours[k].1)
            ));
        }
    }
    bad
}

const TRANSFORMS: &[&str] = &[
    "urlDecode",
    "urlDecodeUni",
    "htmlEntityDecode",
    "jsDecode",
    "cssDecode",
    "cmdLine",
    "compressWhitespace",
    "removeWhitespace",
    "removeNulls",
    "replaceNulls",
    "replaceComments",
    "removeCommentsChar",
    "removeComments",
    "normalisePath",
    "normalisePathWin",
    "base64Decode",
    "base64DecodeExt",
    "hexDecode",
    "hexEncode",
    "utf8toUnicode",
    "length",
    "sha1",
    "md5",
    "lowercase",
    "uppercase",
    "trim",
    "trimLeft",
    "trimRight",
    "escapeSeqDecode",
    "sqlHexDecode",
];

#[test]
fn every_transformation_matches_libmodsecurity() {
    let mut bad = Vec::new();
    for (i, name) in TRANSFORMS.iter().enumerate() {
        bad.extend(check_transform(name, 7 + i as u64));
    }
    assert!(bad.is_empty(), "{} differences:\n{}", bad.len(), bad.join("\n"));
}

/// (operator, argument, values) for the operator cases.
fn operator_cases() -> Vec<(&'static str, &'static str, Vec<&'static [u8]>)> {
    let strs: Vec<&'static [u8]> = vec![
        b"",
        b"abc",
        b"ABC",
        b"select",
        b"a select b",
        b"selected",
        b"_select",
        b"select_",
        b"x-select",
        b"GET",
        b"HEAD",
        b"T HE",
        b"5",
        b"-3",
        b"  42x",
        b"x",
        b"99999999999",
        b"0",
    ];
    let bytes: Vec<&'static [u8]> = vec![
        b"",
        b"abc",
        b"a\0b",
        b"caf\xc3\xa9",
        b"a\tb",
        b"a\x0bb",
        b"\x7f",
        b"\xff",
        b"a=b&c",
        b"%41",
        b"a%4",
        b"%zz",
        b"%",
        b"\xc3",
        b"\xc0\xaf",
        b"\xed\xa0\x80",
        b"\xf5\x80\x80\x80",
        b"\xf4\x90\x80\x80",
        b"\xe2\x82\xac",
        b"\xf0\x9f\x98\x80",
    ];
    let ips: Vec<&'static [u8]> = vec![
        b"127.0.0.1",
        b"10.200.3.4",
        b"192.168.1.200",
        b"192.168.1.100",
        b"::1",
        b"2001:db8:1::5",
        b"2001:db9::5",
        b"not-an-ip",
        b"",
        b"11.0.0.1",
    ];
    let sqli: Vec<&'static [u8]> = vec![
        b"1' OR '1'='1",
        b"hello world",
        b"1 union select 1,2,3--",
        b"admin'--",
        b"1; DROP TABLE users",
        b"' or 1=1#",
        b"john.doe@example.com",
        b"SELECT",
        b"1) or (1=1",
        b"-1 OR 2>1",
    ];
    let xss: Vec<&'static [u8]> = vec![
        b"<script>alert(1)</script>",
        b"hello world",
        b"<img src=x onerror=alert(1)>",
        b"javascript:alert(1)",
        b"<b>bold</b>",
        b"a < b > c",
        b"\"><svg/onload=alert(1)>",
        b"<a href=\"x\">",
        b"onmouseover=",
        b"<iframe src=//evil>",
    ];
    vec![
        ("streq", "abc", strs.clone()),
        ("contains", "sel", strs.clone()),
        ("containsWord", "select", strs.clone()),
        ("within", "GET HEAD POST", strs.clone()),
        ("beginsWith", "sel", strs.clone()),
        ("endsWith", "ect", strs.clone()),
        ("strmatch", "lect", strs.clone()),
        ("eq", "5", strs.clone()),
        ("eq", "0", strs.clone()),
        ("gt", "4", strs.clone()),
        ("ge", "5", strs.clone()),
        ("lt", "0", strs.clone()),
        ("le", "-3", strs.clone()),
        ("pm", "sel HEAD abc", strs.clone()),
        ("rx", "(?i)^sel", strs.clone()),
        ("rx", "t$", strs.clone()),
        ("rx", "^$", strs.clone()),
        ("validateByteRange", "1-255", bytes.clone()),
        ("validateByteRange", "9,10,13,32-126", bytes.clone()),
        ("validateByteRange", "32-126,128-255", bytes.clone()),
        ("validateUrlEncoding", "", bytes.clone()),
        ("validateUtf8Encoding", "", bytes.clone()),
        (
            "ipMatch",
            "127.0.0.1,10.0.0.0/8,192.168.1.128/25,::1,2001:db8::/32",
            ips,
        ),
        ("detectSQLi", "", sqli),
        ("detectXSS", "", xss),
        ("unconditionalMatch", "", strs.clone()),
        ("noMatch", "", strs),
    ]
}

#[test]
fn every_operator_matches_libmodsecurity() {
    let mut bad = Vec::new();
    for (op_name, arg, values) in operator_cases() {
        let op = Operator::parse(op_name, arg, Path::new(".")).unwrap();
        let mut rules = String::new();
        let mut cases = Vec::new();
        for (k, v) in values.iter().enumerate() {
            let id = k + 1;
            let _ = writeln!(
                rules,
                "SecRule ARGS:a{id} \"@{op_name} {arg}\" \"id:{id},phase:1,deny\""
            );
            cases.push((format!("a{id}"), v.to_vec()));
        }
        let got = run_modsec(&rules, &cases);
        for (k, v) in values.iter().enumerate() {
            let ours = op.eval(v, &mut Ctx::default());
            if ours != got[k].is_some() {
                bad.push(format!(
                    "@{op_name} {arg:?} on {:?}: conclave {ours}, libmodsecurity {}",
                    String::from_utf8_lossy(v),
                    got[k].is_some()
                ));
            }
        }
    }
    assert!(bad.is_empty(), "{} differences:\n{}", bad.len(), bad.join("\n"));
}
