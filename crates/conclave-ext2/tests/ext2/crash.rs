//! Crash simulation: a device that stops accepting writes after N of them (as if the
//! process died). The image left behind must open without panicking, report itself
//! unclean, refuse writes, and be repairable by `e2fsck -fy` to a clean state.

use crate::support::{e2fsck, mkfs, Rng};
use conclave_bd::{BdError, BlockDevice, MemBlockDevice};
use conclave_ext2::{Ext2Error, Ext2Fs};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

struct DyingDevice {
    inner: MemBlockDevice,
    writes_left: AtomicU64,
}

impl BlockDevice for DyingDevice {
    fn block_count(&self) -> u64 {
        self.inner.block_count()
    }
    fn read_block(&self, idx: u64, buf: &mut [u8; 4096]) -> Result<(), BdError> {
        self.inner.read_block(idx, buf)
    }
    fn write_block(&self, idx: u64, buf: &[u8; 4096]) -> Result<(), BdError> {
        if self.writes_left.load(Ordering::SeqCst) == 0 {
            return Err(BdError::Io(std::io::Error::other("simulated crash")));
        }
        self.writes_left.fetch_sub(1, Ordering::SeqCst);
        self.inner.write_block(idx, buf)
    }
    fn flush(&self) -> Result<(), BdError> {
        Ok(())
    }
}

/// A workload touching every kind of metadata.
fn workload(fs: &mut Ext2Fs, rng: &mut Rng) -> Result<(), Ext2Error> {
    fs.mkdir_path("/d", 0o755)?;
    for i in 0..6 {
        let f = fs.create_path(format!("/d/f{i}"), 0o644)?;
        fs.write(f, 0, &rng.bytes(30_000 + i * 20_000))?;
    }
    fs.symlink_path("x".repeat(100), "/d/slow")?;
    fs.rename_path("/d/f0", "/moved")?;
    fs.unlink_path("/d/f1")?;
    let f2 = fs.lookup("/d/f2")?;
    fs.truncate(f2, 5000)?;
    fs.mkdir_path("/e", 0o755)?;
    fs.rename_path("/d", "/e/d")?;
    fs.sync()
}

#[test]
fn a_crash_at_any_write_leaves_an_unclean_but_repairable_image() {
    let base = mkfs(None, "8M", &[]);
    // Count the writes of a full run.
    let full = {
        let dev = Arc::new(DyingDevice {
            inner: MemBlockDevice::from_image(base.clone()),
            writes_left: u64::MAX.into(),
        });
        let mut fs = Ext2Fs::open(dev.clone()).unwrap();
        workload(&mut fs, &mut Rng(5)).unwrap();
        u64::MAX - dev.writes_left.load(Ordering::SeqCst)
    };
    assert!(full > 50, "workload should write a lot ({full})");
    let mut rng = Rng(11);
    let mut points: Vec<u64> = (0..12).map(|_| 1 + rng.below(full - 2)).collect();
    points.extend([1, 2, full - 1]);
    for n in points {
        let dev = Arc::new(DyingDevice {
            inner: MemBlockDevice::from_image(base.clone()),
            writes_left: n.into(),
        });
        let mut fs = Ext2Fs::open(dev.clone()).unwrap();
        let err = workload(&mut fs, &mut Rng(5)).unwrap_err();
        assert!(
            matches!(err, Ext2Error::Device(_)),
            "crash after {n} writes: {err}"
        );
        let image = dev.inner.to_image();
        let reopened = Ext2Fs::open(Arc::new(MemBlockDevice::from_image(image.clone()))).unwrap();
        assert!(
            !reopened.was_clean(),
            "crash after {n} writes must leave the image marked unclean"
        );
        let _ = reopened.readdir(conclave_ext2::Ino::ROOT);
        let mut reopened = reopened;
        assert!(matches!(
            reopened.mkdir_path("/x", 0o755),
            Err(Ext2Error::NeedsCheck)
        ));
        // e2fsck -fy repairs it; afterwards it is clean and writable again.
        let tmp = tempfile::tempdir().unwrap();
        let img = tmp.path().join("img");
        std::fs::write(&img, &image).unwrap();
        let out = std::process::Command::new("e2fsck")
            .arg("-fy")
            .arg(&img)
            .output()
            .unwrap();
        let code = out.status.code().unwrap_or(-1);
        assert!(
            code == 0 || code == 1,
            "e2fsck -fy could not repair the crash after {n} writes (exit {code})"
        );
        let repaired = std::fs::read(&img).unwrap();
        let (code, text) = e2fsck(&repaired);
        assert_eq!(code, 0, "after repair of the crash after {n} writes:\n{text}");
        let mut fs = Ext2Fs::open(Arc::new(MemBlockDevice::from_image(repaired))).unwrap();
        assert!(fs.was_clean());
        fs.mkdir_path("/after-repair", 0o755).unwrap();
    }
}
