//! The cache index as it lies in a shared segment (the `keys_zone`).
//!
//! Layout (little endian): a 16-byte header `"CZI2"`, capacity u32, next version
//! u64; then `capacity` 64-byte slots, open addressing by key hash with linear
//! probing and tombstones. Slot: key hash [16] | state u8 | flags u8 | 2 pad |
//! uses u32 | birth_ms u64 | last_use_ms u64 | size u64 | version u64 |
//! fresh_until_ms u64. `birth_ms` is when the response was age 0 (RFC 9111
//! §4.2.3: response time − initial age), so `Age` = now − birth; freshness is
//! per entry, from the origin's headers (see `freshness`). A segment of an
//! older layout (`CZI1`) is reformatted: the cache starts empty.
//! The whole index lives in the segment so every worker sharing the segment sees
//! the same entries; each operation runs under the segment's lock.

/// Hash of a cache key (SHA-256, truncated).
pub type KeyHash = [u8; 16];

const MAGIC: &[u8; 4] = b"CZI2";
const HEADER: usize = 16;
const SLOT: usize = 64;

const EMPTY: u8 = 0;
const COUNTING: u8 = 1;
const STORED: u8 = 2;
const TOMBSTONE: u8 = 3;

/// Slot flag: the entry is a vary record (the variants live under secondary keys).
const FLAG_VARY: u8 = 1;

/// Policy numbers the index applies.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    /// Unused entries are dropped after this (ms).
    pub inactive_ms: u64,
    /// Max total stored bytes.
    pub max_size: u64,
    /// Uses before storing.
    pub min_uses: u32,
}

/// A stored entry as the index knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stored {
    /// Version (names the stored generation).
    pub version: u64,
    /// Body size.
    pub size: u64,
    /// When the response had age 0 (ms since the epoch).
    pub birth_ms: u64,
    /// When it stops being fresh (ms since the epoch).
    pub fresh_until_ms: u64,
}

/// What to record for a stored response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NewEntry {
    /// Body size (counted against `max_size`).
    pub size: u64,
    /// When the response had age 0 (ms since the epoch).
    pub birth_ms: u64,
    /// When it stops being fresh (ms since the epoch).
    pub fresh_until_ms: u64,
    /// A vary record rather than a response.
    pub vary: bool,
}

/// What a lookup found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup {
    /// Fresh stored entry.
    Hit(Stored),
    /// Stored but no longer fresh: to validate, or to serve stale where allowed.
    Stale(Stored),
    /// A vary record: look the variant up under its secondary key.
    Vary(Stored),
    /// Not stored; `store` says whether `min_uses` is reached.
    Miss {
        /// Store the response when it comes.
        store: bool,
    },
}

#[derive(Debug, Clone, Copy)]
struct Slot {
    key: KeyHash,
    state: u8,
    flags: u8,
    uses: u32,
    birth_ms: u64,
    last_use_ms: u64,
    size: u64,
    version: u64,
    fresh_until_ms: u64,
}

impl Slot {
    fn stored(&self) -> Stored {
        Stored {
            version: self.version,
            size: self.size,
            birth_ms: self.birth_ms,
            fresh_until_ms: self.fresh_until_ms,
        }
    }
}

fn u32_at(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes(b[o..o + 4].try_into().unwrap_or([0; 4]))
}
fn u64_at(b: &[u8], o: usize) -> u64 {
    u64::from_le_bytes(b[o..o + 8].try_into().unwrap_or([0; 8]))
}

/// A hit refreshes an entry's last use only when the stored time is at least
/// this old: nginx keeps cache times in seconds too, and a hit that changes
/// nothing lets a remote memory file be released without publishing (no
/// re-sealing, no new version) — the common case under load.
pub const TOUCH_GRANULARITY_MS: u64 = 1000;

/// A view of the index inside a locked segment.
pub struct Index<'a> {
    seg: &'a mut [u8],
    cap: usize,
    changed: bool,
}

impl<'a> Index<'a> {
    /// Opens the index, formatting the segment if it is blank or not an index.
    pub fn open(seg: &'a mut [u8]) -> Index<'a> {
        let cap = seg.len().saturating_sub(HEADER) / SLOT;
        let ok = seg.len() >= HEADER && &seg[..4] == MAGIC && u32_at(seg, 4) as usize == cap;
        let changed = !ok;
        if !ok {
            seg.fill(0);
            if seg.len() >= HEADER {
                seg[..4].copy_from_slice(MAGIC);
                seg[4..8].copy_from_slice(&(cap as u32).to_le_bytes());
                seg[8..16].copy_from_slice(&1u64.to_le_bytes());
            }
        }
        Index { seg, cap, changed }
    }

    /// Whether anything was written since [`open`](Self::open): if not, the
    /// segment need not be published.
    pub fn changed(&self) -> bool {
        self.changed
    }

    /// Number of slots.
    pub fn capacity(&self) -> usize {
        self.cap
    }

    fn slot(&self, i: usize) -> Slot {
        let b = &self.seg[HEADER + i * SLOT..HEADER + (i + 1) * SLOT];
        Slot {
            key: b[..16].try_into().unwrap_or([0; 16]),
            state: b[16],
            flags: b[17],
            uses: u32_at(b, 20),
            birth_ms: u64_at(b, 24),
            last_use_ms: u64_at(b, 32),
            size: u64_at(b, 40),
            version: u64_at(b, 48),
            fresh_until_ms: u64_at(b, 56),
        }
    }

    fn put(&mut self, i: usize, s: &Slot) {
        self.changed = true;
        let b = &mut self.seg[HEADER + i * SLOT..HEADER + (i + 1) * SLOT];
        b[..16].copy_from_slice(&s.key);
        b[16] = s.state;
        b[17] = s.flags;
        b[20..24].copy_from_slice(&s.uses.to_le_bytes());
        b[24..32].copy_from_slice(&s.birth_ms.to_le_bytes());
        b[32..40].copy_from_slice(&s.last_use_ms.to_le_bytes());
        b[40..48].copy_from_slice(&s.size.to_le_bytes());
        b[48..56].copy_from_slice(&s.version.to_le_bytes());
        b[56..64].copy_from_slice(&s.fresh_until_ms.to_le_bytes());
    }

    fn next_version(&mut self) -> u64 {
        let v = u64_at(self.seg, 8);
        self.changed = true;
        self.seg[8..16].copy_from_slice(&(v + 1).to_le_bytes());
        v
    }

    fn home(&self, key: &KeyHash) -> usize {
        (u64::from_le_bytes(key[..8].try_into().unwrap_or([0; 8])) % self.cap.max(1) as u64) as usize
    }

    /// Slot index holding `key`, if any.
    fn find(&self, key: &KeyHash) -> Option<usize> {
        let mut i = self.home(key);
        for _ in 0..self.cap {
            let s = self.slot(i);
            match s.state {
                EMPTY => return None,
                COUNTING | STORED if &s.key == key => return Some(i),
                _ => {}
            }
            i = (i + 1) % self.cap;
        }
        None
    }

    /// A free slot for `key`, evicting the least-recently used entry if full.
    fn free_slot(&mut self, key: &KeyHash, evicted: &mut Vec<KeyHash>) -> Option<usize> {
        let mut i = self.home(key);
        for _ in 0..self.cap {
            let st = self.slot(i).state;
            if st == EMPTY || st == TOMBSTONE {
                return Some(i);
            }
            i = (i + 1) % self.cap;
        }
        let lru = self.lru(None)?;
        self.drop_slot(lru, evicted);
        Some(lru)
    }

    fn lru(&self, except: Option<usize>) -> Option<usize> {
        (0..self.cap)
            .filter(|&i| Some(i) != except)
            .map(|i| (i, self.slot(i)))
            .filter(|(_, s)| s.state == COUNTING || s.state == STORED)
            .min_by_key(|(_, s)| (s.state == STORED, s.last_use_ms))
            .map(|(i, _)| i)
    }

    fn drop_slot(&mut self, i: usize, evicted: &mut Vec<KeyHash>) {
        let mut s = self.slot(i);
        if s.state == STORED {
            evicted.push(s.key);
        }
        s.state = TOMBSTONE;
        s.size = 0;
        self.put(i, &s);
    }

    /// Records a request for `key` at `now_ms` and says what to do.
    pub fn lookup(&mut self, key: &KeyHash, now_ms: u64, p: &Policy, evicted: &mut Vec<KeyHash>) -> Lookup {
        if self.cap == 0 {
            return Lookup::Miss { store: false };
        }
        if let Some(i) = self.find(key) {
            let mut s = self.slot(i);
            if now_ms.saturating_sub(s.last_use_ms) > p.inactive_ms {
                self.drop_slot(i, evicted);
            } else if s.state == STORED {
                // `uses` only decides when to store; a stored entry's hit
                // touches its last use, at most once per granularity.
                if now_ms.saturating_sub(s.last_use_ms) >= TOUCH_GRANULARITY_MS {
                    s.last_use_ms = now_ms;
                    self.put(i, &s);
                }
                return if s.flags & FLAG_VARY != 0 {
                    Lookup::Vary(s.stored())
                } else if now_ms < s.fresh_until_ms {
                    Lookup::Hit(s.stored())
                } else {
                    Lookup::Stale(s.stored())
                };
            } else {
                s.uses = s.uses.saturating_add(1);
                s.last_use_ms = now_ms;
                self.put(i, &s);
                return Lookup::Miss {
                    store: s.uses >= p.min_uses,
                };
            }
        }
        let Some(i) = self.free_slot(key, evicted) else {
            return Lookup::Miss { store: false };
        };
        let s = Slot {
            key: *key,
            state: COUNTING,
            flags: 0,
            uses: 1,
            birth_ms: 0,
            last_use_ms: now_ms,
            size: 0,
            version: 0,
            fresh_until_ms: 0,
        };
        self.put(i, &s);
        Lookup::Miss {
            store: p.min_uses <= 1,
        }
    }

    /// Marks `key` stored as `e`; returns its new version, or `None` if
    /// it cannot fit. Evicts least-recently used and inactive entries as needed.
    pub fn commit(
        &mut self,
        key: &KeyHash,
        e: NewEntry,
        now_ms: u64,
        p: &Policy,
        evicted: &mut Vec<KeyHash>,
    ) -> Option<u64> {
        let size = e.size;
        if size > p.max_size || self.cap == 0 {
            return None;
        }
        // Sweep inactive entries first, as nginx's cache manager would.
        for i in 0..self.cap {
            let s = self.slot(i);
            if (s.state == STORED || s.state == COUNTING)
                && &s.key != key
                && now_ms.saturating_sub(s.last_use_ms) > p.inactive_ms
            {
                self.drop_slot(i, evicted);
            }
        }
        let i = match self.find(key) {
            Some(i) => {
                let s = self.slot(i);
                if s.state == STORED {
                    evicted.push(s.key);
                }
                i
            }
            None => self.free_slot(key, evicted)?,
        };
        let mut total: u64 = (0..self.cap)
            .map(|j| self.slot(j))
            .filter(|s| s.state == STORED && &s.key != key)
            .map(|s| s.size)
            .sum();
        while total + size > p.max_size {
            let victim = (0..self.cap)
                .filter(|&j| j != i)
                .map(|j| (j, self.slot(j)))
                .filter(|(_, s)| s.state == STORED)
                .min_by_key(|(_, s)| s.last_use_ms)
                .map(|(j, _)| j)?;
            total -= self.slot(victim).size;
            self.drop_slot(victim, evicted);
        }
        let version = self.next_version();
        let old = self.slot(i);
        let uses = if &old.key == key && old.state != TOMBSTONE && old.state != EMPTY {
            old.uses
        } else {
            1
        };
        self.put(
            i,
            &Slot {
                key: *key,
                state: STORED,
                flags: if e.vary { FLAG_VARY } else { 0 },
                uses,
                birth_ms: e.birth_ms,
                last_use_ms: now_ms,
                size,
                version,
                fresh_until_ms: e.fresh_until_ms,
            },
        );
        // A replaced generation's file is overwritten in place, not removed.
        evicted.retain(|k| k != key);
        Some(version)
    }

    /// Renews the freshness of `key`'s generation `version` (a 304 from the
    /// origin, RFC 9111 §4.3.4); with `bump`, the generation gets a new version
    /// (its file was rewritten). Returns the version now stored, or `None`
    /// when another generation replaced it meanwhile.
    pub fn refresh(
        &mut self,
        key: &KeyHash,
        version: u64,
        birth_ms: u64,
        fresh_until_ms: u64,
        bump: bool,
    ) -> Option<u64> {
        let i = self.find(key)?;
        let mut s = self.slot(i);
        if s.state != STORED || s.version != version {
            return None;
        }
        if bump {
            s.version = self.next_version();
        }
        s.birth_ms = birth_ms;
        s.fresh_until_ms = fresh_until_ms;
        self.put(i, &s);
        Some(s.version)
    }

    /// Stored keys, for a purge that must look at every entry.
    pub fn stored_keys(&self) -> Vec<KeyHash> {
        (0..self.cap)
            .map(|i| self.slot(i))
            .filter(|s| s.state == STORED)
            .map(|s| s.key)
            .collect()
    }

    /// Drops `key` if a response or vary record is stored under it (RFC 9111
    /// §4.4 invalidation); returns whether it was a vary record. A key only
    /// counted towards `min_uses` keeps its count: nothing stored is wrong.
    pub fn remove_stored(&mut self, key: &KeyHash) -> Option<bool> {
        let i = self.find(key)?;
        let s = self.slot(i);
        if s.state != STORED {
            return None;
        }
        let mut ev = Vec::new();
        self.drop_slot(i, &mut ev);
        Some(s.flags & FLAG_VARY != 0)
    }

    /// Forgets `key` (its file is gone or unreadable).
    pub fn remove(&mut self, key: &KeyHash) {
        if let Some(i) = self.find(key) {
            let mut ev = Vec::new();
            self.drop_slot(i, &mut ev);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k(n: u8) -> KeyHash {
        [n; 16]
    }
    const P: Policy = Policy {
        inactive_ms: 10_000,
        max_size: 100,
        min_uses: 1,
    };

    /// An entry of `size` bytes born at `now`, fresh for 1 s.
    fn e(size: u64, now: u64) -> NewEntry {
        NewEntry {
            size,
            birth_ms: now,
            fresh_until_ms: now + 1000,
            vary: false,
        }
    }

    fn version(l: Lookup) -> Option<u64> {
        match l {
            Lookup::Hit(s) => Some(s.version),
            _ => None,
        }
    }

    #[test]
    fn miss_commit_hit_expire() {
        let mut seg = vec![0u8; 16 + 64 * 8];
        let mut ix = Index::open(&mut seg);
        let mut ev = vec![];
        assert_eq!(ix.lookup(&k(1), 0, &P, &mut ev), Lookup::Miss { store: true });
        let v = ix.commit(&k(1), e(10, 0), 0, &P, &mut ev).unwrap();
        let s = Stored {
            version: v,
            size: 10,
            birth_ms: 0,
            fresh_until_ms: 1000,
        };
        assert_eq!(ix.lookup(&k(1), 500, &P, &mut ev), Lookup::Hit(s));
        assert_eq!(ix.lookup(&k(1), 1500, &P, &mut ev), Lookup::Stale(s));
        // A 304 renews it in place; a stale version is not renewed.
        assert_eq!(ix.refresh(&k(1), v, 1500, 2500, false), Some(v));
        assert_eq!(ix.refresh(&k(1), v + 7, 1500, 2500, false), None);
        assert_eq!(version(ix.lookup(&k(1), 2000, &P, &mut ev)), Some(v));
        let v2 = ix.commit(&k(1), e(10, 2500), 2500, &P, &mut ev).unwrap();
        assert!(v2 > v);
        assert!(ev.is_empty());
        let mut vary = e(0, 3000);
        vary.vary = true;
        ix.lookup(&k(2), 3000, &P, &mut ev);
        ix.commit(&k(2), vary, 3000, &P, &mut ev).unwrap();
        assert!(matches!(ix.lookup(&k(2), 3000, &P, &mut ev), Lookup::Vary(_)));
        assert_eq!(ix.stored_keys().len(), 2);
        // Invalidation drops stored entries only, saying which were vary records.
        ix.lookup(&k(3), 3000, &P, &mut ev);
        assert_eq!(ix.remove_stored(&k(3)), None);
        assert_eq!(ix.remove_stored(&k(2)), Some(true));
        assert_eq!(ix.remove_stored(&k(1)), Some(false));
        assert_eq!(ix.remove_stored(&k(1)), None);
        assert!(ix.stored_keys().is_empty());
        assert_eq!(ix.lookup(&k(1), 3000, &P, &mut ev), Lookup::Miss { store: true });
    }

    #[test]
    fn a_hit_writes_nothing_until_its_last_use_is_a_granule_old() {
        let mut seg = vec![0u8; 16 + 64 * 8];
        let mut ev = vec![];
        let v = {
            let mut ix = Index::open(&mut seg);
            assert!(ix.changed(), "formatting a blank segment is a change");
            ix.lookup(&k(1), 0, &P, &mut ev);
            ix.commit(&k(1), e(10, 0), 0, &P, &mut ev).unwrap()
        };
        let before = seg.clone();
        let mut ix = Index::open(&mut seg);
        let hit = ix.lookup(&k(1), TOUCH_GRANULARITY_MS - 1, &P, &mut ev);
        assert_eq!((version(hit), ix.changed()), (Some(v), false));
        assert_eq!(seg, before);
        let p = P;
        Index::open(&mut seg)
            .refresh(&k(1), v, 0, 100 * TOUCH_GRANULARITY_MS, false)
            .unwrap();
        let mut ix = Index::open(&mut seg);
        let hit = ix.lookup(&k(1), TOUCH_GRANULARITY_MS, &p, &mut ev);
        assert_eq!((version(hit), ix.changed()), (Some(v), true));
        // The touched last use keeps the entry from going inactive.
        let mut ix = Index::open(&mut seg);
        let late = TOUCH_GRANULARITY_MS + P.inactive_ms;
        assert_eq!(version(ix.lookup(&k(1), late, &p, &mut ev)), Some(v));
        // A miss always counts (and so always changes the segment).
        let mut ix = Index::open(&mut seg);
        ix.lookup(&k(2), late, &p, &mut ev);
        assert!(ix.changed());
    }

    #[test]
    fn min_uses_counts_requests() {
        let mut seg = vec![0u8; 16 + 64 * 8];
        let mut ix = Index::open(&mut seg);
        let p = Policy { min_uses: 3, ..P };
        let mut ev = vec![];
        assert_eq!(ix.lookup(&k(1), 0, &p, &mut ev), Lookup::Miss { store: false });
        assert_eq!(ix.lookup(&k(1), 1, &p, &mut ev), Lookup::Miss { store: false });
        assert_eq!(ix.lookup(&k(1), 2, &p, &mut ev), Lookup::Miss { store: true });
    }

    #[test]
    fn evicts_lru_over_max_size_and_inactive() {
        let mut seg = vec![0u8; 16 + 64 * 8];
        let mut ix = Index::open(&mut seg);
        let mut ev = vec![];
        for n in 1..=3 {
            ix.lookup(&k(n), n as u64, &P, &mut ev);
            ix.commit(&k(n), e(40, n as u64), n as u64, &P, &mut ev).unwrap();
        }
        assert_eq!(ev, vec![k(1)]);
        assert_eq!(ix.lookup(&k(1), 10, &P, &mut ev), Lookup::Miss { store: true });
        assert!(matches!(ix.lookup(&k(2), 10, &P, &mut ev), Lookup::Hit(_)));
        assert!(ix.commit(&k(9), e(101, 10), 10, &P, &mut ev).is_none());
        ev.clear();
        ix.lookup(&k(4), 20_000, &P, &mut ev);
        ix.commit(&k(4), e(1, 20_000), 20_000, &P, &mut ev).unwrap();
        ev.sort();
        assert_eq!(ev, vec![k(2), k(3)]);
    }

    #[test]
    fn full_table_evicts_least_recent() {
        let mut seg = vec![0u8; 16 + 64 * 2];
        let mut ix = Index::open(&mut seg);
        assert_eq!(ix.capacity(), 2);
        let mut ev = vec![];
        for n in 1..=3 {
            ix.lookup(&k(n), n as u64, &P, &mut ev);
            ix.commit(&k(n), e(1, n as u64), n as u64, &P, &mut ev).unwrap();
        }
        assert_eq!(ev, vec![k(1)]);
    }
}
