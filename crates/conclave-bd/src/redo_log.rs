//! The redo log: every block of one commit, written and synced before any of
//! them is written in place, so a crash during the in-place writes is
//! finished at the next open (replaying is idempotent), and a crash while
//! the log itself is written leaves a record whose MAC fails (discarded: the
//! device is still exactly the previous commit).
//!
//! Layout (little-endian), always at offset 0 of the log file:
//! magic "CNCLREDO" ‖ kind u8 ‖ 7 zero bytes ‖ blocks u64 ‖ counter u64 ‖
//! base_root [32] ‖ n u64 ‖ n × (block u64 ‖ data [4096]) ‖
//! HMAC(K_commit, "redo" ‖ everything before) [32].
//! Data is XTS-encrypted under the commit key on devices with a secret, so
//! the log never holds plaintext the image would not. Bytes after the MAC
//! (left by a longer earlier record) are ignored.

use crate::keys::{ct_eq32, CommitKeys, HmacSha256};
use crate::state_file::Binding;
use crate::{BdError, BLOCK_SIZE};
use hmac::Mac;
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Seek, SeekFrom, Write};

const MAGIC: &[u8; 8] = b"CNCLREDO";
const HEADER: usize = 8 + 8 + 8 + 8 + 32 + 8;
const ENTRY: usize = 8 + BLOCK_SIZE;

/// What a valid record says about itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LogHeader {
    /// The commit this record makes.
    pub counter: u64,
    /// The root of the commit it follows.
    pub base_root: [u8; 32],
    /// Blocks it carries.
    pub n: u64,
}

/// What the log file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LogContent {
    /// Nothing (never written).
    Empty,
    /// A record that does not verify: torn by a crash while it was written.
    Torn,
    /// A complete record.
    Valid(LogHeader),
}

fn header_bytes(bind: Binding, h: &LogHeader) -> [u8; HEADER] {
    let mut v = [0u8; HEADER];
    v[..8].copy_from_slice(MAGIC);
    v[8] = bind.kind.code();
    v[16..24].copy_from_slice(&bind.blocks.to_le_bytes());
    v[24..32].copy_from_slice(&h.counter.to_le_bytes());
    v[32..64].copy_from_slice(&h.base_root);
    v[64..72].copy_from_slice(&h.n.to_le_bytes());
    v
}

fn start_mac(mac: &HmacSha256) -> HmacSha256 {
    let mut m = mac.clone();
    m.update(b"redo");
    m
}

/// Writes one record (blocks sorted or not) and syncs it.
pub(crate) fn write(
    file: &File,
    keys: &CommitKeys,
    bind: Binding,
    counter: u64,
    base_root: [u8; 32],
    blocks: &[(u64, &[u8; BLOCK_SIZE])],
) -> Result<(), BdError> {
    let h = LogHeader {
        counter,
        base_root,
        n: blocks.len() as u64,
    };
    let mut m = start_mac(&keys.mac);
    let mut out = BufWriter::with_capacity(1 << 20, file);
    out.seek(SeekFrom::Start(0))?;
    let hb = header_bytes(bind, &h);
    m.update(&hb);
    out.write_all(&hb)?;
    let mut buf = [0u8; BLOCK_SIZE];
    for &(idx, data) in blocks {
        buf.copy_from_slice(data);
        if let Some(x) = &keys.xts {
            x.encrypt(idx, &mut buf);
        }
        m.update(&idx.to_le_bytes());
        m.update(&buf);
        out.write_all(&idx.to_le_bytes())?;
        out.write_all(&buf)?;
    }
    out.write_all(&m.finalize().into_bytes())?;
    out.flush()?;
    drop(out);
    file.sync_data()?;
    Ok(())
}

/// Reads the record and verifies its MAC over every entry. Verifying and
/// applying ([`replay`]) are two passes, so nothing of a torn record is applied.
pub(crate) fn inspect(file: &File, keys: &CommitKeys, bind: Binding) -> Result<LogContent, BdError> {
    let len = file.metadata()?.len();
    if len == 0 {
        return Ok(LogContent::Empty);
    }
    if len < HEADER as u64 + 32 {
        return Ok(LogContent::Torn);
    }
    let mut r = BufReader::with_capacity(1 << 20, file);
    r.seek(SeekFrom::Start(0))?;
    let mut hb = [0u8; HEADER];
    r.read_exact(&mut hb)?;
    if &hb[..8] != MAGIC {
        return Ok(if hb.iter().all(|&b| b == 0) {
            LogContent::Empty
        } else {
            LogContent::Torn
        });
    }
    let u64_at = |o: usize| u64::from_le_bytes(hb[o..o + 8].try_into().expect("8 bytes"));
    let h = LogHeader {
        counter: u64_at(24),
        base_root: hb[32..64].try_into().expect("32 bytes"),
        n: u64_at(64),
    };
    let fits =
        h.n.checked_mul(ENTRY as u64)
            .and_then(|b| b.checked_add(HEADER as u64 + 32))
            .is_some_and(|total| total <= len);
    if !fits || h.n > bind.blocks {
        return Ok(LogContent::Torn);
    }
    let mut m = start_mac(&keys.mac);
    m.update(&hb);
    let mut entry = vec![0u8; ENTRY];
    for _ in 0..h.n {
        r.read_exact(&mut entry)?;
        m.update(&entry);
    }
    let mut stored = [0u8; 32];
    r.read_exact(&mut stored)?;
    let ok = ct_eq32(&m.finalize().into_bytes().into(), &stored);
    if !ok || hb[8] != bind.kind.code() || u64_at(16) != bind.blocks {
        return Ok(LogContent::Torn);
    }
    Ok(LogContent::Valid(h))
}

/// Hands every block of a record [`inspect`] found valid to `apply`, decrypted.
pub(crate) fn replay(
    file: &File,
    keys: &CommitKeys,
    bind: Binding,
    h: &LogHeader,
    mut apply: impl FnMut(u64, &[u8; BLOCK_SIZE]) -> Result<(), BdError>,
) -> Result<(), BdError> {
    let mut r = BufReader::with_capacity(1 << 20, file);
    r.seek(SeekFrom::Start(HEADER as u64))?;
    let mut idx = [0u8; 8];
    let mut buf = [0u8; BLOCK_SIZE];
    for _ in 0..h.n {
        r.read_exact(&mut idx)?;
        r.read_exact(&mut buf)?;
        let b = u64::from_le_bytes(idx);
        if b >= bind.blocks {
            return Err(BdError::OutOfRange {
                block: b,
                count: bind.blocks,
            });
        }
        if let Some(x) = &keys.xts {
            x.decrypt(b, &mut buf);
        }
        apply(b, &buf)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::DeviceKeys;
    use crate::DeviceKind;
    use std::os::unix::fs::FileExt;

    fn bind() -> Binding {
        Binding {
            kind: DeviceKind::Crypt,
            blocks: 64,
        }
    }

    fn file(dir: &std::path::Path) -> File {
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(dir.join("log"))
            .unwrap()
    }

    #[test]
    fn a_record_replays_its_blocks_and_keeps_no_plaintext() {
        let keys = DeviceKeys::from_master(&[5; 32], &[6; 16]).commit;
        let dir = tempfile::tempdir().unwrap();
        let f = file(dir.path());
        assert_eq!(inspect(&f, &keys, bind()).unwrap(), LogContent::Empty);
        let (a, b) = ([0xabu8; BLOCK_SIZE], [0xcdu8; BLOCK_SIZE]);
        write(&f, &keys, bind(), 3, [7; 32], &[(9, &a), (2, &b)]).unwrap();
        let LogContent::Valid(h) = inspect(&f, &keys, bind()).unwrap() else {
            panic!("record not valid")
        };
        assert_eq!((h.counter, h.base_root, h.n), (3, [7; 32], 2));
        let raw = std::fs::read(dir.path().join("log")).unwrap();
        assert!(
            !raw.windows(64).any(|w| w.iter().all(|&x| x == 0xab)),
            "plaintext in the log"
        );
        let mut got = Vec::new();
        replay(&f, &keys, bind(), &h, |i, d| {
            got.push((i, d[0]));
            Ok(())
        })
        .unwrap();
        assert_eq!(got, vec![(9, 0xab), (2, 0xcd)]);
    }

    #[test]
    fn torn_or_tampered_or_foreign_records_are_not_valid() {
        let keys = DeviceKeys::from_master(&[5; 32], &[6; 16]).commit;
        let dir = tempfile::tempdir().unwrap();
        let f = file(dir.path());
        let blocks: Vec<[u8; BLOCK_SIZE]> = (0..4).map(|i| [i as u8; BLOCK_SIZE]).collect();
        let refs: Vec<(u64, &[u8; BLOCK_SIZE])> =
            blocks.iter().enumerate().map(|(i, b)| (i as u64, b)).collect();
        write(&f, &keys, bind(), 1, [0; 32], &refs).unwrap();
        let len = f.metadata().unwrap().len();
        // a shorter record over a longer one: the tail is ignored
        write(&f, &keys, bind(), 2, [0; 32], &refs[..1]).unwrap();
        assert!(matches!(inspect(&f, &keys, bind()).unwrap(), LogContent::Valid(h) if h.counter == 2));
        write(&f, &keys, bind(), 1, [0; 32], &refs).unwrap();
        let raw = std::fs::read(dir.path().join("log")).unwrap();
        for cut in [len - 1, len / 2, 40] {
            let g = std::fs::File::create(dir.path().join("cut")).unwrap();
            g.write_all_at(&raw[..cut as usize], 0).unwrap();
            let g = std::fs::File::open(dir.path().join("cut")).unwrap();
            assert_eq!(
                inspect(&g, &keys, bind()).unwrap(),
                LogContent::Torn,
                "cut at {cut}"
            );
        }
        let mut raw = std::fs::read(dir.path().join("log")).unwrap();
        raw[HEADER + 8 + 100] ^= 1;
        std::fs::write(dir.path().join("flip"), &raw).unwrap();
        let g = std::fs::File::open(dir.path().join("flip")).unwrap();
        assert_eq!(inspect(&g, &keys, bind()).unwrap(), LogContent::Torn);
        let other = Binding { blocks: 65, ..bind() };
        assert_eq!(inspect(&f, &keys, other).unwrap(), LogContent::Torn);
        let std_keys = CommitKeys::public();
        assert_eq!(inspect(&f, &std_keys, bind()).unwrap(), LogContent::Torn);
    }
}
