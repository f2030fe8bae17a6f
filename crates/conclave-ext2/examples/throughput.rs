//! Rough throughput of the ext2 engine over an in-memory device (no device cost), so
//! the file-system overhead alone is visible:
//! `cargo run --release -p conclave-ext2 --example throughput`.

use conclave_bd::MemBlockDevice;
use conclave_ext2::Ext2Fs;
use std::sync::Arc;
use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let tmp = tempfile::tempdir()?;
    let img = tmp.path().join("img");
    let status = std::process::Command::new("mkfs.ext2")
        .args([
            "-q",
            "-F",
            "-b",
            "4096",
            "-I",
            "256",
            "-O",
            "^resize_inode,^dir_index",
        ])
        .arg(&img)
        .arg("512M")
        .status()?;
    assert!(status.success(), "mkfs.ext2 failed");
    let dev = Arc::new(MemBlockDevice::from_image(std::fs::read(&img)?));
    let mut fs = Ext2Fs::open(dev.clone())?;
    let size: usize = 256 << 20;
    let mb = size as f64 / (1 << 20) as f64;
    let chunk = vec![0x5au8; 1 << 20];
    let f = fs.create_path("/big", 0o644)?;
    let t = Instant::now();
    for i in 0..size / chunk.len() {
        fs.write(f, (i * chunk.len()) as u64, &chunk)?;
    }
    fs.sync()?;
    println!(
        "sequential write, 1 MiB calls: {:.0} MB/s",
        mb / t.elapsed().as_secs_f64()
    );
    for call in [4096usize, 65536, 1 << 20] {
        let mut buf = vec![0u8; call];
        let t = Instant::now();
        let mut off = 0u64;
        while fs.read(f, off, &mut buf)? > 0 {
            off += call as u64;
        }
        println!(
            "sequential read, {:>7} B calls: {:.0} MB/s",
            call,
            mb / t.elapsed().as_secs_f64()
        );
    }
    let mut buf = vec![0u8; 4096];
    let mut x: u64 = 12345;
    let n = 100_000;
    let t = Instant::now();
    for _ in 0..n {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        fs.read(f, (x >> 33) % (size as u64 / 4096) * 4096, &mut buf)?;
    }
    println!(
        "random 4 KiB reads: {:.2} us each",
        t.elapsed().as_secs_f64() * 1e6 / n as f64
    );
    let t = Instant::now();
    let files = 2000;
    fs.mkdir_path("/many", 0o755)?;
    for i in 0..files {
        fs.create_path(format!("/many/file-{i:06}"), 0o644)?;
    }
    println!(
        "create in one directory: {:.1} us each ({files} files)",
        t.elapsed().as_secs_f64() * 1e6 / files as f64
    );
    let t = Instant::now();
    for i in 0..files {
        fs.stat_path(format!("/many/file-{i:06}"))?;
    }
    println!(
        "stat by path: {:.1} us each",
        t.elapsed().as_secs_f64() * 1e6 / files as f64
    );
    fs.sync()?;
    std::fs::write(&img, dev.to_image())?;
    let check = std::process::Command::new("e2fsck")
        .arg("-fn")
        .arg(&img)
        .output()?;
    println!(
        "e2fsck -fn afterwards: exit {}",
        check.status.code().unwrap_or(-1)
    );
    Ok(())
}
