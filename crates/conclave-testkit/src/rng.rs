//! Seeded pseudo-randomness for tests.

/// xorshift64*: the seeded randomness of a test (workloads, kill points,
/// corruption offsets), so a failing seed can be run again.
pub struct Rng(pub u64);

impl Rng {
    /// The next 64 pseudo-random bits (the seed must not be 0).
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}
