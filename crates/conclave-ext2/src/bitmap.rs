//! A group's block or inode bitmap (one file-system block; bit i = item i of the group).

/// One bitmap block, with the number of meaningful bits.
#[derive(Clone, Debug)]
pub struct Bitmap {
    bits: Vec<u8>,
    len: usize,
}

impl Bitmap {
    /// A bitmap over `len` items of the block `b` (at most `8 * b.len()`; the
    /// superblock parser checked the geometry).
    pub fn from_bytes(b: &[u8], len: usize) -> Bitmap {
        Bitmap {
            bits: b.to_vec(),
            len: len.min(b.len() * 8),
        }
    }

    /// The block as it should be written back.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bits
    }

    /// Whether item `i` is in use (items past the end count as in use).
    pub fn is_set(&self, i: usize) -> bool {
        i >= self.len || self.bits[i / 8] & (1 << (i % 8)) != 0
    }

    /// Marks item `i` used.
    pub fn set(&mut self, i: usize) {
        if i < self.len {
            self.bits[i / 8] |= 1 << (i % 8);
        }
    }

    /// Marks item `i` free.
    pub fn clear(&mut self, i: usize) {
        if i < self.len {
            self.bits[i / 8] &= !(1 << (i % 8));
        }
    }

    /// The first free item at or after `start`, wrapping around once.
    pub fn find_free(&self, start: usize) -> Option<usize> {
        let start = if start < self.len { start } else { 0 };
        (start..self.len).chain(0..start).find(|&i| {
            // Skip whole used bytes quickly.
            self.bits[i / 8] != 0xff && !self.is_set(i)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_free_bits_wrapping_and_treats_the_tail_as_used() {
        let mut raw = [0xffu8; 4096];
        raw[0] = 0b1110_1111; // bit 4 free
        raw[10] = 0b0111_1111; // bit 87 free
        let mut bm = Bitmap::from_bytes(&raw, 100);
        assert_eq!(bm.find_free(0), Some(4));
        assert_eq!(bm.find_free(5), Some(87));
        assert_eq!(bm.find_free(88), Some(4));
        bm.set(4);
        bm.set(87);
        assert_eq!(bm.find_free(0), None);
        bm.clear(99);
        assert_eq!(bm.find_free(0), Some(99));
        assert!(bm.is_set(100), "past the end counts as used");
        bm.clear(5000);
        assert!(bm.is_set(5000));
    }
}
