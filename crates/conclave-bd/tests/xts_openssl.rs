//! Our AES-256-XTS block layout against OpenSSL's, through Python's
//! `cryptography` package: same key, tweak = block number (little-endian,
//! 16 bytes), 4096-byte data units. Fails loudly when python3 or
//! `cryptography` is missing: the interoperability claim must be checked.

mod common;

use common::Rng;
use conclave_bd::BLOCK_SIZE;
use std::io::Write;
use std::process::{Command, Stdio};

const SCRIPT: &str = r#"
import sys
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
for line in sys.stdin:
    key, block, pt = line.split()
    e = Cipher(algorithms.AES(bytes.fromhex(key)), modes.XTS(int(block).to_bytes(16, 'little'))).encryptor()
    print((e.update(bytes.fromhex(pt)) + e.finalize()).hex())
"#;

#[test]
fn xts_blocks_match_openssl_for_the_same_key_and_tweak() {
    let mut rng = Rng(1619);
    let mut cases = Vec::new();
    for block in [
        0u64,
        1,
        2,
        255,
        4096,
        0xffff_ffff,
        0x1_0000_0000,
        0x0123_4567_89ab_cdef,
    ] {
        let mut key = [0u8; 64];
        key.iter_mut().for_each(|b| *b = rng.next_u64() as u8);
        if key[..32] == key[32..] {
            key[0] ^= 1; // OpenSSL refuses XTS with key1 == key2
        }
        let mut pt = [0u8; BLOCK_SIZE];
        pt.iter_mut().for_each(|b| *b = rng.next_u64() as u8);
        let mut ct = pt;
        conclave_bd::xts::encrypt_with_raw_key(&key, block, &mut ct);
        assert_ne!(ct, pt);
        cases.push((key, block, pt, ct));
    }
    let mut child = Command::new("python3")
        .args(["-c", SCRIPT])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 is required for the OpenSSL XTS interoperability test (apt install python3 python3-cryptography)");
    {
        let mut stdin = child.stdin.take().unwrap();
        for (key, block, pt, _) in &cases {
            writeln!(stdin, "{} {block} {}", hex::encode(key), hex::encode(pt)).unwrap();
        }
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "python3 with the `cryptography` package is required (pip install cryptography / apt install python3-cryptography): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = std::str::from_utf8(&out.stdout).unwrap().lines().collect();
    assert_eq!(lines.len(), cases.len());
    for ((_, block, _, ct), line) in cases.iter().zip(lines) {
        assert_eq!(
            hex::encode(ct),
            line,
            "block {block}: our XTS differs from OpenSSL's"
        );
    }
}
