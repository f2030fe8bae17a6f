//! Bit flips: the tamper the storage and memory tests inject.

use std::os::unix::fs::FileExt;
use std::path::Path;

/// Flips bit `bit` (counted from the file's first byte, low bit first) of the
/// file at `path` in place: tampering as a hostile host would, one bit at a time.
pub fn flip_bit(path: &Path, bit: u64) {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap_or_else(|e| panic!("cannot open {} to flip a bit: {e}", path.display()));
    let mut b = [0u8];
    f.read_exact_at(&mut b, bit / 8).unwrap();
    b[0] ^= 1 << (bit % 8);
    f.write_all_at(&b, bit / 8).unwrap();
}

/// Flips bit `bit` of `bytes` (an image or file read into memory), numbered
/// as in [`flip_bit`].
pub fn flip_bit_in(bytes: &mut [u8], bit: u64) {
    bytes[(bit / 8) as usize] ^= 1 << (bit % 8);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flips_the_named_bit_and_back() {
        let dir = std::env::temp_dir().join(format!("testkit-bits-{}", std::process::id()));
        std::fs::write(&dir, [0u8; 4]).unwrap();
        flip_bit(&dir, 2 * 8 + 4);
        assert_eq!(std::fs::read(&dir).unwrap(), [0, 0, 0x10, 0]);
        flip_bit(&dir, 2 * 8 + 4);
        assert_eq!(std::fs::read(&dir).unwrap(), [0; 4]);
        std::fs::remove_file(&dir).unwrap();
        let mut b = [0u8; 2];
        flip_bit_in(&mut b, 9);
        assert_eq!(b, [0, 2]);
    }
}
