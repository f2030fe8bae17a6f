//! Crash test: a child process writes and flushes in a loop and is killed
//! with SIGKILL at a random moment. Reopening must give the last root the
//! child reported or the one it was sealing, and every block must read as
//! a version the child wrote or fail with an integrity error — never a
//! panic, never wrong data. (Guarantee documented in docs/storage.md.)

mod common;

use common::*;
use conclave_bd::{open, BdError, BlockDevice, DeviceKind, DeviceSpec, BLOCK_SIZE};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

const CHILD_ENV: &str = "CONCLAVE_BD_CRASH_CHILD";
const BLOCKS_PER_ROUND: u64 = 40;

/// Block `b` at generation `gen`: header (b, gen), then a fill byte.
fn pattern(b: u64, gen: u64) -> [u8; BLOCK_SIZE] {
    let mut blk = [(b as u8) ^ (gen as u8) ^ 0x5a; BLOCK_SIZE];
    blk[..8].copy_from_slice(&b.to_le_bytes());
    blk[8..16].copy_from_slice(&gen.to_le_bytes());
    blk
}

fn is_valid(b: u64, blk: &[u8; BLOCK_SIZE], max_gen: u64) -> bool {
    if blk.iter().all(|&x| x == 0) {
        return true; // never written
    }
    let gen = u64::from_le_bytes(blk[8..16].try_into().unwrap());
    gen <= max_gen && *blk == pattern(b, gen)
}

fn spec_from_env(dir: &std::path::Path) -> DeviceSpec {
    let kind: DeviceKind = std::env::var("CONCLAVE_BD_CRASH_KIND").unwrap().parse().unwrap();
    spec_in(dir, kind)
}

/// The child: not a test on its own (ignored), run by `crash_keeps_old_or_new_root`.
#[test]
#[ignore = "run as a child process by crash_keeps_old_or_new_root"]
fn crash_child() {
    let Ok(dir) = std::env::var(CHILD_ENV) else { return };
    let spec = spec_from_env(std::path::Path::new(&dir));
    let start_gen: u64 = std::env::var("CONCLAVE_BD_CRASH_GEN").unwrap().parse().unwrap();
    let dev = open(&spec).unwrap();
    let mut rng = Rng(start_gen * 7919 + 1);
    for gen in start_gen.. {
        for _ in 0..BLOCKS_PER_ROUND {
            let b = rng.below(dev.block_count());
            dev.write_block(b, &pattern(b, gen)).unwrap();
        }
        dev.flush().unwrap();
        let r = dev.sealed_root().unwrap();
        println!("SEALED {gen} {} {}", r.counter, r.hex());
    }
}

#[test]
fn crash_keeps_old_or_new_root() {
    for kind in [DeviceKind::Verity, DeviceKind::Vericrypt] {
        let dir = tempfile::tempdir().unwrap();
        let raw = dir.path().join("raw.img");
        std::fs::write(&raw, vec![0u8; 1 << 20]).unwrap();
        let spec = spec_in(dir.path(), kind);
        let mut last = conclave_bd::create(&spec, &raw, &fast_opts()).unwrap().unwrap();
        let mut gen = 1u64;
        let mut rng = Rng(kind as u64 + 11);
        let mut failed_before = std::collections::BTreeSet::new();
        for round in 0..8 {
            let mut child = Command::new(std::env::current_exe().unwrap())
                .args([
                    "--exact",
                    "crash_child",
                    "--ignored",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env(CHILD_ENV, dir.path())
                .env("CONCLAVE_BD_CRASH_KIND", kind.name())
                .env("CONCLAVE_BD_CRASH_GEN", gen.to_string())
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            let stdout = child.stdout.take().unwrap();
            let (tx, rx) = std::sync::mpsc::channel();
            let reader = std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                    if let Some(rest) = line.strip_prefix("SEALED ") {
                        let v: Vec<String> = rest.split(' ').map(String::from).collect();
                        let _ = tx.send((
                            v[0].parse::<u64>().unwrap(),
                            v[1].parse::<u64>().unwrap(),
                            v[2].clone(),
                        ));
                    }
                }
            });
            // Let it seal a few rounds, then kill it at a random point of the next ones.
            let wait_for = 2 + rng.below(4);
            let mut seen = Vec::new();
            while (seen.len() as u64) < wait_for {
                match rx.recv_timeout(Duration::from_secs(60)) {
                    Ok(s) => seen.push(s),
                    Err(_) => {
                        let _ = child.kill();
                        panic!("{kind} round {round}: child sealed nothing");
                    }
                }
            }
            std::thread::sleep(Duration::from_micros(rng.below(30_000)));
            child.kill().unwrap();
            child.wait().unwrap();
            reader.join().unwrap();
            seen.extend(rx.try_iter());
            let (last_gen, last_counter, last_hex) = seen.last().cloned().unwrap();
            assert!(last_counter > last.counter);
            let dev = open(&spec).unwrap_or_else(|e| panic!("{kind} round {round}: reopen failed: {e}"));
            let r = dev.sealed_root().unwrap();
            assert!(
                (r.counter == last_counter && r.hex() == last_hex) || r.counter == last_counter + 1,
                "{kind} round {round}: reopened at counter {} (last reported {last_counter})",
                r.counter
            );
            // Every block: a version the child wrote, or an integrity error.
            let max_gen = last_gen + 1;
            let mut buf = [0u8; BLOCK_SIZE];
            let mut failed = std::collections::BTreeSet::new();
            for b in 0..dev.block_count() {
                match dev.read_block(b, &mut buf) {
                    Ok(()) => assert!(
                        is_valid(b, &buf, max_gen),
                        "{kind} round {round}: block {b} has wrong data"
                    ),
                    Err(BdError::Integrity { .. }) => {
                        failed.insert(b);
                    }
                    Err(e) => panic!("{kind} round {round}: block {b}: {e}"),
                }
            }
            // Blocks written after the last completed seal fail (until rewritten): at most one
            // round's worth more than before this crash.
            let new_failures = failed.difference(&failed_before).count() as u64;
            eprintln!(
                "{kind} round {round}: reopened at counter {} (last reported {last_counter}), {} blocks fail, {new_failures} new",
                r.counter,
                failed.len()
            );
            assert!(
                new_failures <= BLOCKS_PER_ROUND,
                "{kind} round {round}: {new_failures} new blocks failed, more than one round wrote"
            );
            failed_before = failed;
            if r.counter == last_counter {
                open(&spec.clone().expect_root(last_hex)).unwrap();
            }
            last = r;
            gen = max_gen + 1;
        }
    }
}
