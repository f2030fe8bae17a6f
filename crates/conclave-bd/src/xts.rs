//! The block cipher of crypt and vericrypt: AES-256-XTS over one 4096-byte
//! block, tweak = the data block number as a 128-bit little-endian integer
//! (dm-crypt's `plain64` with 4096-byte sectors and `iv_large_sectors`).

use crate::BLOCK_SIZE;
use aes::cipher::{Array, BlockCipherEncrypt, KeyInit};
use aes::Aes256;

/// AES blocks (16 bytes) in one device block.
const AES_BLOCKS: usize = BLOCK_SIZE / 16;

/// AES-256-XTS keyed for whole 4096-byte data units. Unlike a block-at-a-time
/// loop, it hands all 256 AES blocks of a unit to the cipher at once, so the
/// AES-NI/VAES backend can pipeline them (no ciphertext stealing is needed:
/// 4096 is a multiple of 16).
pub(crate) struct Xts {
    data: Aes256,
    tweak: Aes256,
}

impl Xts {
    /// From the 64-byte XTS key: key1 (data) ‖ key2 (tweak).
    pub fn new(key: &[u8; 64]) -> Xts {
        Xts {
            data: Aes256::new_from_slice(&key[..32]).expect("32-byte key"),
            tweak: Aes256::new_from_slice(&key[32..]).expect("32-byte key"),
        }
    }

    /// XORs each AES block of `buf` with its tweak T_j = E_k2(idx) · α^j.
    fn whiten(&self, idx: u64, buf: &mut [u8; BLOCK_SIZE], tweaks: &mut [u128; AES_BLOCKS], fresh: bool) {
        if fresh {
            let mut t = Array::from((idx as u128).to_le_bytes());
            self.tweak.encrypt_block(&mut t);
            let mut t = u128::from_le_bytes(t.0);
            for slot in tweaks.iter_mut() {
                *slot = t;
                // Multiply by α in GF(2^128), little-endian (IEEE 1619 §5.2).
                t = (t << 1) ^ ((t >> 127) * 0x87);
            }
        }
        for (chunk, t) in buf.chunks_exact_mut(16).zip(tweaks.iter()) {
            let v = u128::from_le_bytes(chunk.try_into().expect("16 bytes")) ^ t;
            chunk.copy_from_slice(&v.to_le_bytes());
        }
    }

    /// Encrypts data unit `idx` in place.
    pub fn encrypt(&self, idx: u64, buf: &mut [u8; BLOCK_SIZE]) {
        let mut tweaks = [0u128; AES_BLOCKS];
        self.whiten(idx, buf, &mut tweaks, true);
        let (blocks, _) = Array::slice_as_chunks_mut(&mut buf[..]);
        self.data.encrypt_blocks(blocks);
        self.whiten(idx, buf, &mut tweaks, false);
    }

    /// Decrypts data unit `idx` in place.
    pub fn decrypt(&self, idx: u64, buf: &mut [u8; BLOCK_SIZE]) {
        use aes::cipher::BlockCipherDecrypt;
        let mut tweaks = [0u128; AES_BLOCKS];
        self.whiten(idx, buf, &mut tweaks, true);
        let (blocks, _) = Array::slice_as_chunks_mut(&mut buf[..]);
        self.data.decrypt_blocks(blocks);
        self.whiten(idx, buf, &mut tweaks, false);
    }
}

/// Encrypts block `idx` in place.
pub(crate) fn encrypt_block(xts: &Xts, idx: u64, buf: &mut [u8; BLOCK_SIZE]) {
    xts.encrypt(idx, buf);
}

/// Decrypts block `idx` in place.
pub(crate) fn decrypt_block(xts: &Xts, idx: u64, buf: &mut [u8; BLOCK_SIZE]) {
    xts.decrypt(idx, buf);
}

/// Encrypts block `idx` under a raw 64-byte XTS key (key1 ‖ key2), the way
/// every crypt device does: for interoperability tests against OpenSSL and
/// for tools that talk to dm-crypt.
pub fn encrypt_with_raw_key(key: &[u8; 64], idx: u64, buf: &mut [u8; BLOCK_SIZE]) {
    Xts::new(key).encrypt(idx, buf);
}

/// Decrypts block `idx` under a raw 64-byte XTS key (see [`encrypt_with_raw_key`]).
pub fn decrypt_with_raw_key(key: &[u8; 64], idx: u64, buf: &mut [u8; BLOCK_SIZE]) {
    Xts::new(key).decrypt(idx, buf);
}

#[cfg(test)]
mod tests {
    use super::*;
    use xts_mode::{get_tweak_default, Xts128};

    /// IEEE 1619-2007 annex B, vector 10 (XTS-AES-256, data unit 0xff, 512 bytes).
    const V10_KEY1: &str = "2718281828459045235360287471352662497757247093699959574966967627";
    const V10_KEY2: &str = "3141592653589793238462643383279502884197169399375105820974944592";
    const V10_CT: &str = concat!(
        "1c3b3a102f770386e4836c99e370cf9bea00803f5e482357a4ae12d414a3e63b",
        "5d31e276f8fe4a8d66b317f9ac683f44680a86ac35adfc3345befecb4bb188fd",
        "5776926c49a3095eb108fd1098baec70aaa66999a72a82f27d848b21d4a741b0",
        "c5cd4d5fff9dac89aeba122961d03a757123e9870f8acf1000020887891429ca",
        "2a3e7a7d7df7b10355165c8b9a6d0a7de8b062c4500dc4cd120c0f7418dae3d0",
        "b5781c34803fa75421c790dfe1de1834f280d7667b327f6c8cd7557e12ac3a0f",
        "93ec05c52e0493ef31a12d3d9260f79a289d6a379bc70c50841473d1a8cc81ec",
        "583e9645e07b8d9670655ba5bbcfecc6dc3966380ad8fecb17b6ba02469a020a",
        "84e18e8f84252070c13e9f1f289be54fbc481457778f616015e1327a02b140f1",
        "505eb309326d68378f8374595c849d84f4c333ec4423885143cb47bd71c5edae",
        "9be69a2ffeceb1bec9de244fbe15992b11b77c040f12bd8f6a975a44a0f90c29",
        "a9abc3d4d893927284c58754cce294529f8614dcd2aba991925fedc4ae74ffac",
        "6e333b93eb4aff0479da9a410e4450e0dd7ae4c6e2910900575da401fc07059f",
        "645e8b7e9bfdef33943054ff84011493c27b3429eaedb4ed5376441a77ed4385",
        "1ad77f16f541dfd269d50d6a5f14fb0aab1cbb4c1550be97f7ab4066193c4caa",
        "773dad38014bd2092fa755c824bb5e54c4f36ffda9fcea70b9c6e693e148c151",
    );

    #[test]
    fn batched_xts_matches_the_xts_mode_crate_on_4k_units() {
        let key: [u8; 64] = core::array::from_fn(|i| (i * 7 + 3) as u8);
        let reference = Xts128::new(
            Aes256::new_from_slice(&key[..32]).unwrap(),
            Aes256::new_from_slice(&key[32..]).unwrap(),
        );
        for idx in [0u64, 1, 77, 1 << 33, u64::MAX] {
            let pt: [u8; BLOCK_SIZE] = core::array::from_fn(|i| (i as u64 ^ idx) as u8);
            let mut ours = pt;
            encrypt_with_raw_key(&key, idx, &mut ours);
            let mut theirs = pt;
            reference.encrypt_sector(&mut theirs, get_tweak_default(idx as u128));
            assert_eq!(ours, theirs, "unit {idx}");
            decrypt_with_raw_key(&key, idx, &mut ours);
            assert_eq!(ours, pt);
        }
    }

    #[test]
    fn matches_ieee_1619_vector_10() {
        // XTS blocks of a unit are independent (no stealing at 4096 bytes), so
        // the first 512 bytes of a 4096-byte unit with the vector's data unit
        // number are the vector's 512-byte ciphertext.
        let mut key = [0u8; 64];
        hex::decode_to_slice(V10_KEY1, &mut key[..32]).unwrap();
        hex::decode_to_slice(V10_KEY2, &mut key[32..]).unwrap();
        let pt: [u8; BLOCK_SIZE] = core::array::from_fn(|i| i as u8);
        let mut buf = pt;
        encrypt_with_raw_key(&key, 0xff, &mut buf);
        assert_eq!(hex::encode(&buf[..512]), V10_CT);
        decrypt_with_raw_key(&key, 0xff, &mut buf);
        assert_eq!(buf, pt);
    }
}
