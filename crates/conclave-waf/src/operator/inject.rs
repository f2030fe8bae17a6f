//! `@detectSQLi` and `@detectXSS` through libinjection (the pure-Rust port `libinjectionrs`; no C
//! to build, no download at build time).

use super::OpContext;
use std::sync::atomic::{AtomicUsize, Ordering};

/// libinjection's SQLi test; on a hit the fingerprint becomes the matched string and `TX:0`
/// when the rule captures (as libmodsecurity does).
pub(super) fn detect_sqli(input: &[u8], ctx: &mut dyn OpContext) -> bool {
    if one_plain_token(input) {
        return false;
    }
    let verdict = cached(Kind::Sqli, input, |input| {
        let result = libinjectionrs::detect_sqli(input);
        if !result.is_injection() {
            return Verdict::Clean;
        }
        let fp = result
            .fingerprint
            .as_ref()
            .map(|f| f.as_str().as_bytes())
            .unwrap_or_default();
        Verdict::hit(fp)
    });
    let long;
    let fp = match verdict {
        Verdict::Clean => return false,
        // Not expected (fingerprints are at most 5 tokens), but exact if it happens: ask again.
        Verdict::Uncacheable => {
            long = libinjectionrs::detect_sqli(input)
                .fingerprint
                .as_ref()
                .map(|f| f.as_str().as_bytes().to_vec())
                .unwrap_or_default();
            &long[..]
        }
        Verdict::Hit { .. } => verdict.fingerprint().unwrap_or_default(),
    };
    ctx.set_matched(fp);
    if ctx.capture_wanted() {
        ctx.set_capture(0, fp);
    }
    true
}

/// Whether `input` is one word (an ASCII letter, then letters, digits and `_`) or one run of
/// digits, a shape for which libinjection's SQLi test is false — so the test need not run
/// (most names and many values of benign requests have it).
///
/// Why this is exact (libinjection as `libinjectionrs` 0.1.1 implements it):
/// - Without `'` or `"` only the "as is" passes run (ANSI, then maybe MySQL); both tokenize
///   the same way here.
/// - A letter starts a word: `CHAR_MAP` sends letters to `parse_word`, or for `b e n q u x`
///   to string parsers that fall back to `parse_word` unless a `'` (or `&'`) follows. The word
///   runs to the first of `parse_word`'s delimiters (space, punctuation, quotes, NUL…), none of
///   which occur, and is split only at `.` or `` ` ``, which do not occur: one token, typed by
///   the keyword table (or a bareword). A run of digits is one number token (`parse_number`:
///   no `0x`/`0b` prefix, `.` or exponent).
/// - The fingerprint of one token is one character; the only one-character fingerprint on
///   the blacklist is `X` ("evil"), which only comments (`/*`, `/*!`) and the `{``` ` case
///   produce, and no keyword has that type. The whitelist step is never reached.
///
/// The tests pin the two facts taken from the library's data (the blacklist's one-character
/// entries, the keyword table's types) and check the whole keyword table and a generated set
/// against `libinjectionrs` itself.
pub(crate) fn one_plain_token(input: &[u8]) -> bool {
    match input.first() {
        Some(c) if c.is_ascii_alphabetic() => input.iter().all(|b| b.is_ascii_alphanumeric() || *b == b'_'),
        Some(c) if c.is_ascii_digit() => input.iter().all(u8::is_ascii_digit),
        _ => false,
    }
}

/// libinjection's XSS test.
pub(super) fn detect_xss(input: &[u8]) -> bool {
    cached(Kind::Xss, input, |input| {
        if libinjectionrs::detect_xss(input).is_injection() {
            Verdict::hit(b"")
        } else {
            Verdict::Clean
        }
    })
    .fingerprint()
    .is_some()
}

/// Which libinjection test a cached verdict belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Sqli,
    Xss,
}

/// The longest SQLi fingerprint libinjection makes (its `LIBINJECTION_SQLI_MAX_TOKENS` is 5;
/// the array holds 8): verdicts with a longer one are not cached, so the bound is never a
/// truncation.
const FP_MAX: usize = 8;

/// libinjection's answer for one value: clean, or an injection with its fingerprint (empty for
/// XSS, which has none).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Clean,
    Hit {
        fp: [u8; FP_MAX],
        len: u8,
    },
    /// A hit whose fingerprint does not fit `FP_MAX`: never cached; the caller recomputes it.
    Uncacheable,
}

impl Verdict {
    fn hit(fp: &[u8]) -> Verdict {
        if fp.len() > FP_MAX {
            return Verdict::Uncacheable;
        }
        let mut b = [0u8; FP_MAX];
        b[..fp.len()].copy_from_slice(fp);
        Verdict::Hit {
            fp: b,
            len: fp.len() as u8,
        }
    }

    fn fingerprint(&self) -> Option<&[u8]> {
        match self {
            Verdict::Clean => None,
            Verdict::Hit { fp, len } => Some(&fp[..*len as usize]),
            Verdict::Uncacheable => Some(b""),
        }
    }
}

/// Values longer than this are tested every time: long values rarely repeat (bodies, tokens),
/// and the bound keeps a thread's cache under `entries × VALUE_MAX` bytes (4 MiB at the
/// default).
const VALUE_MAX: usize = 1024;

/// Ways per set: a value can sit in any of the `WAYS` slots of its set.
const WAYS: usize = 4;

/// Default entries per thread (the edge's `waf_verdict_cache`).
pub const DEFAULT_VERDICT_CACHE: usize = 4096;

/// Most entries per thread a process may ask for.
pub const MAX_VERDICT_CACHE: usize = 1 << 20;

/// Entries per thread, as set by [`set_verdict_cache_entries`]: a power of two of at least
/// `WAYS`, or 0 for no cache.
static ENTRIES: AtomicUsize = AtomicUsize::new(DEFAULT_VERDICT_CACHE);

/// Sets how many verdicts each thread keeps (`0`: none), for threads whose cache is made after
/// this call (a thread makes its cache on its first check); a count is rounded up to a power
/// of two of at least 4 and capped at [`MAX_VERDICT_CACHE`]. A property of the process (memory
/// per worker thread), not of the rules, so the edge sets it once at start from its typed
/// setting `waf_verdict_cache` (docs/edge.md) before any check.
pub fn set_verdict_cache_entries(n: usize) {
    ENTRIES.store(round_entries(n), Ordering::Relaxed);
}

fn round_entries(n: usize) -> usize {
    match n {
        0 => 0,
        n => n.clamp(WAYS, MAX_VERDICT_CACHE).next_power_of_two(),
    }
}

fn configured_entries() -> usize {
    ENTRIES.load(Ordering::Relaxed)
}

/// One cached verdict. `key` keeps its capacity when the slot is reused, so a warm cache does
/// not allocate.
#[derive(Default)]
struct Slot {
    kind: Option<Kind>,
    key: Vec<u8>,
    verdict: Option<Verdict>,
    /// Clock bit: set on a hit, cleared as the hand passes.
    referenced: bool,
}

/// A per-thread, bounded, set-associative cache of libinjection verdicts keyed by the exact
/// transformed value. The hash only picks the set; a hit requires the stored bytes to equal the
/// value in full, so a hash collision costs a miss, never a wrong verdict (which could be a
/// bypass). Eviction is a clock (second chance) within the set.
///
/// Why: libinjection costs ~9 µs per CRS PL1 request, mostly on `User-Agent`, and real traffic
/// repeats `User-Agent`, `Referer`, `Accept-Language` and cookie values across requests; a
/// repeated value's verdict is the same, libinjection being a pure function of the bytes.
struct VerdictCache {
    slots: Vec<Slot>,
    /// Clock hand per set.
    hands: Vec<u8>,
}

impl VerdictCache {
    fn new(entries: usize) -> VerdictCache {
        VerdictCache {
            slots: (0..entries).map(|_| Slot::default()).collect(),
            hands: vec![0; entries / WAYS],
        }
    }

    fn set_of(&self, kind: Kind, value: &[u8]) -> usize {
        use std::hash::Hasher;
        let mut h = crate::hash::FxHasher::default();
        h.write_u8(kind as u8);
        h.write(value);
        h.write_usize(value.len());
        // Fx's low bits are weak: fold the high half in.
        let x = h.finish();
        ((x ^ (x >> 32)) as usize) & (self.hands.len() - 1)
    }

    /// The cached verdict for `value`, or `test(value)`, remembered.
    fn verdict(&mut self, kind: Kind, value: &[u8], test: impl FnOnce(&[u8]) -> Verdict) -> Verdict {
        let set = self.set_of(kind, value);
        if let Some(v) = self.get(set, kind, value) {
            return v;
        }
        let v = test(value);
        if v != Verdict::Uncacheable {
            self.put(set, kind, value, v);
        }
        v
    }

    fn get(&mut self, set: usize, kind: Kind, value: &[u8]) -> Option<Verdict> {
        let ways = &mut self.slots[set * WAYS..(set + 1) * WAYS];
        let slot = ways.iter_mut().find(|s| s.kind == Some(kind) && s.key == value)?;
        slot.referenced = true;
        slot.verdict
    }

    fn put(&mut self, set: usize, kind: Kind, value: &[u8], verdict: Verdict) {
        let hand = &mut self.hands[set];
        let ways = &mut self.slots[set * WAYS..(set + 1) * WAYS];
        // Second chance: at most one full turn clearing bits, then the hand's slot is free.
        let mut i = *hand as usize;
        for _ in 0..WAYS {
            if !ways[i].referenced {
                break;
            }
            ways[i].referenced = false;
            i = (i + 1) % WAYS;
        }
        *hand = ((i + 1) % WAYS) as u8;
        let slot = &mut ways[i];
        slot.kind = Some(kind);
        slot.key.clear();
        slot.key.extend_from_slice(value);
        slot.verdict = Some(verdict);
        slot.referenced = false;
    }
}

thread_local! {
    static CACHE: std::cell::RefCell<Option<VerdictCache>> = const { std::cell::RefCell::new(None) };
}

/// `test(value)`, through this thread's verdict cache when it is enabled and `value` is short
/// enough.
fn cached(kind: Kind, value: &[u8], test: impl FnOnce(&[u8]) -> Verdict) -> Verdict {
    let entries = configured_entries();
    if entries == 0 || value.len() > VALUE_MAX {
        return test(value);
    }
    CACHE.with(|c| {
        let Ok(mut c) = c.try_borrow_mut() else {
            return test(value);
        };
        c.get_or_insert_with(|| VerdictCache::new(entries))
            .verdict(kind, value, test)
    })
}

#[cfg(test)]
mod tests {
    use super::super::test_ctx::{eval, Ctx};
    use super::*;

    #[test]
    fn sqli_fingerprint_is_captured() {
        let mut ctx = Ctx {
            capture: true,
            ..Ctx::default()
        };
        assert!(detect_sqli(b"1' OR '1'='1", &mut ctx));
        assert_eq!(ctx.captures.len(), 1);
        assert_eq!(ctx.captures[0].0, 0);
        assert_eq!(ctx.matched.as_deref(), Some(&ctx.captures[0].1[..]));
        assert!(!eval("detectSQLi", "", b"hello world"));
    }

    /// The library facts the guard relies on: of all one-character fingerprints only `X` is
    /// blacklisted, and no keyword is typed `X` or is a fingerprint entry starting with a letter.
    #[test]
    fn only_the_evil_fingerprint_is_blacklisted_alone() {
        let alone: Vec<char> = (0x20u8..0x7f)
            .map(char::from)
            .filter(|c| libinjectionrs::sqli::blacklist::is_blacklisted(&c.to_string()))
            .collect();
        assert_eq!(alone, vec!['X', 'x']);
        for k in libinjectionrs::sqli::sqli_data::SQL_KEYWORDS {
            assert_ne!(k.token_type, b'X', "{}", k.word);
            if k.token_type == b'F' {
                assert!(k.word.starts_with('0'), "{}", k.word);
            }
        }
    }

    /// Every keyword of libinjection's table and 200,000 generated words and numbers: the guard's
    /// shapes are never SQLi, and shapes just outside it are not taken by the guard.
    #[test]
    fn plain_tokens_are_never_sqli() {
        let mut inputs: Vec<Vec<u8>> = Vec::new();
        for k in libinjectionrs::sqli::sqli_data::SQL_KEYWORDS {
            let w = k.word.as_bytes();
            inputs.push(w.to_vec());
            inputs.push(w.to_ascii_lowercase());
            let mut cap = w.to_ascii_lowercase();
            cap[0] = cap[0].to_ascii_uppercase();
            inputs.push(cap);
        }
        let mut rng = crate::rng::SplitMix64(22);
        let word = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_";
        for _ in 0..100_000 {
            let n = 1 + rng.below(40);
            let mut v = vec![rng.pick(&word[..52])];
            v.extend((1..n).map(|_| rng.pick(word)));
            inputs.push(v);
            let n = 1 + rng.below(25);
            inputs.push((0..n).map(|_| rng.pick(b"0123456789")).collect());
        }
        let mut guarded = 0;
        for v in &inputs {
            if one_plain_token(v) {
                guarded += 1;
                assert!(
                    !libinjectionrs::detect_sqli(v).is_injection(),
                    "{}",
                    String::from_utf8_lossy(v)
                );
            }
        }
        assert!(guarded > 200_000, "{guarded}");
        for v in [
            &b"1 or 1"[..],
            b"1'",
            b"a b",
            b"0x1f",
            b"1e5",
            b"a.b",
            b"-1",
            b"_a",
            b"",
        ] {
            assert!(!one_plain_token(v), "{}", String::from_utf8_lossy(v));
        }
    }

    /// `%XX` and `+` decoded (enough to expose the corpus's attack payloads).
    fn percent_decoded(v: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(v.len());
        let mut i = 0;
        while i < v.len() {
            let hex = |b: u8| (b as char).to_digit(16);
            match v[i] {
                b'%' if i + 2 < v.len() => {
                    if let (Some(h), Some(l)) = (hex(v[i + 1]), hex(v[i + 2])) {
                        out.push((h * 16 + l) as u8);
                        i += 3;
                        continue;
                    }
                    out.push(b'%');
                }
                b'+' => out.push(b' '),
                b => out.push(b),
            }
            i += 1;
        }
        out
    }

    fn sqli_verdict(v: &[u8]) -> Verdict {
        let r = libinjectionrs::detect_sqli(v);
        if !r.is_injection() {
            return Verdict::Clean;
        }
        Verdict::hit(
            r.fingerprint
                .as_ref()
                .map(|f| f.as_str().as_bytes())
                .unwrap_or_default(),
        )
    }

    fn xss_verdict(v: &[u8]) -> Verdict {
        if libinjectionrs::detect_xss(v).is_injection() {
            Verdict::hit(b"")
        } else {
            Verdict::Clean
        }
    }

    /// Through a small cache (so sets fill, evict and collide constantly), every answer equals
    /// libinjection's own, for both tests on the same values (the kind is part of the key), and
    /// repeats are served from the cache.
    #[test]
    fn cached_verdicts_equal_libinjection() {
        let mut values: Vec<Vec<u8>> = Vec::new();
        for c in crate::corpus::generate(2000, 22) {
            values.extend(c.headers.iter().map(|(_, v)| v.clone()));
            values.push(percent_decoded(c.uri.as_bytes()));
            values.push(c.uri.into_bytes());
        }
        values.extend([
            b"1' OR '1'='1".to_vec(),
            b"<script>alert(1)</script>".to_vec(),
            b"1 union select 1,2".to_vec(),
            Vec::new(),
        ]);
        assert!(values.len() > 2000, "{}", values.len());
        let mut cache = VerdictCache::new(16);
        let (mut hits, mut tested, mut injections) = (0, 0, 0);
        for round in 0..3 {
            for v in values.iter().chain(values.iter().rev().take(8)) {
                let mut ran = false;
                let s = cache.verdict(Kind::Sqli, v, |v| {
                    ran = true;
                    sqli_verdict(v)
                });
                assert_eq!(s, sqli_verdict(v), "{}", String::from_utf8_lossy(v));
                let x = cache.verdict(Kind::Xss, v, xss_verdict);
                assert_eq!(x, xss_verdict(v), "{}", String::from_utf8_lossy(v));
                if round == 0 {
                    injections += usize::from(s != Verdict::Clean) + usize::from(x != Verdict::Clean);
                }
                if ran {
                    tested += 1;
                } else {
                    hits += 1;
                }
            }
        }
        assert_eq!((values.len(), injections), (14478, 145));
        assert_eq!((hits, tested), (12497, 30961));
        // A value and the same value one byte longer never share an entry.
        let mut cache = VerdictCache::new(4);
        assert_eq!(
            cache.verdict(Kind::Sqli, b"1' or 1=1", sqli_verdict),
            sqli_verdict(b"1' or 1=1")
        );
        let mut ran = false;
        cache.verdict(Kind::Sqli, b"1' or 1=1 ", |v| {
            ran = true;
            sqli_verdict(v)
        });
        assert!(ran);
    }

    #[test]
    fn cache_size_setting() {
        assert_eq!(round_entries(0), 0);
        assert_eq!(round_entries(1000), 1024);
        assert_eq!(round_entries(1), 4);
        assert_eq!(round_entries(65536), 65536);
        assert_eq!(round_entries(usize::MAX), MAX_VERDICT_CACHE);
    }

    /// The cache keeps at most `entries` values, each at most `VALUE_MAX` bytes.
    #[test]
    fn cache_is_bounded() {
        let mut cache = VerdictCache::new(8);
        for i in 0..1000u32 {
            let v = format!("value {i}");
            cache.verdict(Kind::Xss, v.as_bytes(), xss_verdict);
        }
        assert_eq!(cache.slots.len(), 8);
        assert_eq!(cache.slots.iter().filter(|s| s.kind.is_some()).count(), 8);
    }

    #[test]
    fn xss_vectors_match() {
        assert!(eval("detectXSS", "", b"<script>alert(1)</script>"));
        assert!(!eval("detectXSS", "", b"hello world"));
    }
}
