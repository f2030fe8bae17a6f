//! The cache index as it lies in a shared segment (the `keys_zone`).
//!
//! Layout (little endian): a 16-byte header `"CZI1"`, capacity u32, next version
//! u64; then `capacity` 64-byte slots, open addressing by key hash with linear
//! probing and tombstones. Slot: key hash [16] | state u8 | 3 pad | uses u32 |
//! stored_ms u64 | last_use_ms u64 | size u64 | version u64 | 8 pad.
//! The whole index lives in the segment so every worker sharing the segment sees
//! the same entries; each operation runs under the segment's lock.

/// Hash of a cache key (SHA-256, truncated).
pub type KeyHash = [u8; 16];

const MAGIC: &[u8; 4] = b"CZI1";
const HEADER: usize = 16;
const SLOT: usize = 64;

const EMPTY: u8 = 0;
const COUNTING: u8 = 1;
const STORED: u8 = 2;
const TOMBSTONE: u8 = 3;

/// Policy numbers the index applies.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    /// Freshness of a stored entry (ms).
    pub valid_ms: u64,
    /// Unused entries are dropped after this (ms).
    pub inactive_ms: u64,
    /// Max total stored bytes.
    pub max_size: u64,
    /// Uses before storing.
    pub min_uses: u32,
}

/// What a lookup found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup {
    /// Fresh stored entry with this version and size.
    Hit {
        /// Version (names the stored generation).
        version: u64,
    },
    /// Stored but past `valid`.
    Expired,
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
    uses: u32,
    stored_ms: u64,
    last_use_ms: u64,
    size: u64,
    version: u64,
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
            uses: u32_at(b, 20),
            stored_ms: u64_at(b, 24),
            last_use_ms: u64_at(b, 32),
            size: u64_at(b, 40),
            version: u64_at(b, 48),
        }
    }

    fn put(&mut self, i: usize, s: &Slot) {
        self.changed = true;
        let b = &mut self.seg[HEADER + i * SLOT..HEADER + (i + 1) * SLOT];
        b[..16].copy_from_slice(&s.key);
        b[16] = s.state;
        b[20..24].copy_from_slice(&s.uses.to_le_bytes());
        b[24..32].copy_from_slice(&s.stored_ms.to_le_bytes());
        b[32..40].copy_from_slice(&s.last_use_ms.to_le_bytes());
        b[40..48].copy_from_slice(&s.size.to_le_bytes());
        b[48..56].copy_from_slice(&s.version.to_le_bytes());
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
                return if now_ms.saturating_sub(s.stored_ms) < p.valid_ms {
                    Lookup::Hit { version: s.version }
                } else {
                    Lookup::Expired
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
            uses: 1,
            stored_ms: 0,
            last_use_ms: now_ms,
            size: 0,
            version: 0,
        };
        self.put(i, &s);
        Lookup::Miss {
            store: p.min_uses <= 1,
        }
    }

    /// Marks `key` stored with `size` bytes; returns its new version, or `None` if
    /// it cannot fit. Evicts least-recently used and inactive entries as needed.
    pub fn commit(
        &mut self,
        key: &KeyHash,
        size: u64,
        now_ms: u64,
        p: &Policy,
        evicted: &mut Vec<KeyHash>,
    ) -> Option<u64> {
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
                uses,
                stored_ms: now_ms,
                last_use_ms: now_ms,
                size,
                version,
            },
        );
        // A replaced generation's file is overwritten in place, not removed.
        evicted.retain(|k| k != key);
        Some(version)
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
        valid_ms: 1000,
        inactive_ms: 10_000,
        max_size: 100,
        min_uses: 1,
    };

    #[test]
    fn miss_commit_hit_expire() {
        let mut seg = vec![0u8; 16 + 64 * 8];
        let mut ix = Index::open(&mut seg);
        let mut ev = vec![];
        assert_eq!(ix.lookup(&k(1), 0, &P, &mut ev), Lookup::Miss { store: true });
        let v = ix.commit(&k(1), 10, 0, &P, &mut ev).unwrap();
        assert_eq!(ix.lookup(&k(1), 500, &P, &mut ev), Lookup::Hit { version: v });
        assert_eq!(ix.lookup(&k(1), 1500, &P, &mut ev), Lookup::Expired);
        let v2 = ix.commit(&k(1), 10, 1500, &P, &mut ev).unwrap();
        assert!(v2 > v);
        assert!(ev.is_empty());
    }

    #[test]
    fn a_hit_writes_nothing_until_its_last_use_is_a_granule_old() {
        let mut seg = vec![0u8; 16 + 64 * 8];
        let mut ev = vec![];
        let v = {
            let mut ix = Index::open(&mut seg);
            assert!(ix.changed(), "formatting a blank segment is a change");
            ix.lookup(&k(1), 0, &P, &mut ev);
            ix.commit(&k(1), 10, 0, &P, &mut ev).unwrap()
        };
        let before = seg.clone();
        let mut ix = Index::open(&mut seg);
        let hit = ix.lookup(&k(1), TOUCH_GRANULARITY_MS - 1, &P, &mut ev);
        assert_eq!((hit, ix.changed()), (Lookup::Hit { version: v }, false));
        assert_eq!(seg, before);
        let p = Policy {
            valid_ms: 100 * TOUCH_GRANULARITY_MS,
            ..P
        };
        let mut ix = Index::open(&mut seg);
        let hit = ix.lookup(&k(1), TOUCH_GRANULARITY_MS, &p, &mut ev);
        assert_eq!((hit, ix.changed()), (Lookup::Hit { version: v }, true));
        // The touched last use keeps the entry from going inactive.
        let mut ix = Index::open(&mut seg);
        let late = TOUCH_GRANULARITY_MS + P.inactive_ms;
        assert_eq!(ix.lookup(&k(1), late, &p, &mut ev), Lookup::Hit { version: v });
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
            ix.commit(&k(n), 40, n as u64, &P, &mut ev).unwrap();
        }
        assert_eq!(ev, vec![k(1)]);
        assert_eq!(ix.lookup(&k(1), 10, &P, &mut ev), Lookup::Miss { store: true });
        assert!(matches!(ix.lookup(&k(2), 10, &P, &mut ev), Lookup::Hit { .. }));
        assert!(ix.commit(&k(9), 101, 10, &P, &mut ev).is_none());
        ev.clear();
        ix.lookup(&k(4), 20_000, &P, &mut ev);
        ix.commit(&k(4), 1, 20_000, &P, &mut ev).unwrap();
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
            ix.commit(&k(n), 1, n as u64, &P, &mut ev).unwrap();
        }
        assert_eq!(ev, vec![k(1)]);
    }
}
