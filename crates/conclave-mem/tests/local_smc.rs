//! The server-less kinds in one process: local (mutex) and smc (flock +
//! sealed host files).

use conclave_mem::smc::SegmentFile;
use conclave_mem::{connect, AsyncMemoryStore, MemError, MemOptions, MemSpec, MemoryStore};
use conclave_testkit::{file_with_extension, flip_bit_in};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

fn smc(dir: &Path) -> (MemSpec, MemOptions) {
    let secret = dir.join("secret");
    conclave_testkit::write_private(&secret, [7u8; 32]);
    let spec: MemSpec = format!("smc://{}", dir.join("mf").display()).parse().unwrap();
    (
        spec,
        MemOptions {
            creds: None,
            secret_file: Some(secret),
        },
    )
}

fn hammer(store: Arc<dyn MemoryStore>) {
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let store = store.clone();
            std::thread::spawn(move || {
                let mut f = store.open("ctr", 8).unwrap();
                for _ in 0..500 {
                    let mut g = f.lock().unwrap();
                    let v = u64::from_le_bytes(g[..8].try_into().unwrap());
                    g[..8].copy_from_slice(&(v + 1).to_le_bytes());
                }
                f
            })
        })
        .collect();
    let mut files: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    let g = files[0].lock().unwrap();
    assert_eq!(u64::from_le_bytes(g[..8].try_into().unwrap()), 2000);
}

#[test]
fn counter_is_exact_under_threads_for_local_and_smc() {
    hammer(connect(&MemSpec::Local, &MemOptions::default()).unwrap());
    let dir = tempfile::tempdir().unwrap();
    let (spec, opts) = smc(dir.path());
    hammer(connect(&spec, &opts).unwrap());
}

#[test]
fn local_and_smc_refuse_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let (spec, opts) = smc(dir.path());
    for store in [
        connect(&MemSpec::Local, &MemOptions::default()).unwrap(),
        connect(&spec, &opts).unwrap(),
    ] {
        let mut f = store.open("x", 16).unwrap();
        assert!(matches!(f.unlock_unheld(), Err(MemError::NotHolder(_))));
        let mut g = f.lock().unwrap();
        g[0] = 1;
        g.unlock().unwrap();
        assert!(matches!(
            store.open("x", 8),
            Err(MemError::SizeMismatch {
                requested: 8,
                existing: 16,
                ..
            })
        ));
        assert!(matches!(
            store.open(&"n".repeat(256), 8),
            Err(MemError::NameTooLong { .. })
        ));
        let mut other = store.open("x", 16).unwrap();
        let _held = f.lock().unwrap();
        assert!(matches!(
            other.lock_timeout(Some(Duration::from_millis(50))),
            Err(MemError::Timeout { .. })
        ));
    }
}

#[test]
fn smc_detects_tampering_but_not_rollback_and_cleans_up() {
    let dir = tempfile::tempdir().unwrap();
    let (spec, opts) = smc(dir.path());
    let store = connect(&spec, &opts).unwrap();
    let mut f = store.open("z", 32).unwrap();
    let mut g = f.lock().unwrap();
    g[0] = 5;
    g.unlock().unwrap();
    let seg = file_with_extension(&dir.path().join("mf"), "seg");
    let v1 = std::fs::read(&seg).unwrap();
    assert_eq!(SegmentFile::from_bytes(&v1).unwrap().version, 1);
    let mut bad = v1.clone();
    flip_bit_in(&mut bad, (SegmentFile::HEADER_LEN as u64 + 3) * 8);
    std::fs::write(&seg, &bad).unwrap();
    assert!(matches!(f.lock(), Err(MemError::Tampered { .. })));
    std::fs::write(&seg, &v1).unwrap();
    let mut g = f.lock().unwrap();
    g[0] = 6;
    g.unlock().unwrap();
    // Documented limit: an old copy put back is accepted (no rollback protection).
    std::fs::write(&seg, &v1).unwrap();
    assert_eq!(f.lock().unwrap()[0], 5);
    // A different secret cannot open it.
    let other_secret = dir.path().join("other");
    conclave_testkit::write_private(&other_secret, [8u8; 32]);
    let other = connect(
        &spec,
        &MemOptions {
            creds: None,
            secret_file: Some(other_secret),
        },
    )
    .unwrap();
    let mut o = other.open("z", 32).unwrap();
    assert!(matches!(o.lock(), Err(MemError::Tampered { .. })));
    drop(o);
    f.close().unwrap();
    assert!(!seg.exists(), "the last close removes the segment");
    // A short secret is refused.
    conclave_testkit::write_private(dir.path().join("short"), b"abc");
    let short = MemOptions {
        creds: None,
        secret_file: Some(dir.path().join("short")),
    };
    assert!(matches!(connect(&spec, &short), Err(MemError::Config(_))));
}

#[test]
fn async_client_works_for_local_and_smc() {
    let dir = tempfile::tempdir().unwrap();
    let (spec, opts) = smc(dir.path());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    for (spec, opts) in [(MemSpec::Local, MemOptions::default()), (spec, opts)] {
        rt.block_on(async {
            let store = AsyncMemoryStore::new(&spec, &opts).unwrap();
            let mut a = store.open("a", 8).await.unwrap();
            let mut b = store.open("a", 8).await.unwrap();
            let mut g = a.lock().await.unwrap();
            g[0] = 3;
            g.unlock().await.unwrap();
            let g = b.lock().await.unwrap();
            assert_eq!(g[0], 3);
            g.release().await.unwrap();
            a.close().await.unwrap();
            b.close().await.unwrap();
        });
    }
}
