//! Blocking RPC calls made from async code.
//!
//! Some callers cannot await: rustls asks for a signature synchronously, and
//! the edge's storage and shared-state seams are synchronous traits. Their
//! round trip to a kernel server would stall a tokio worker thread and every
//! connection on it. Inside a multi-thread runtime, [`run_blocking`] runs the
//! call in `block_in_place`: tokio hands this thread's other tasks to a fresh
//! thread for the duration, so the process keeps as many threads *running*
//! tasks as it was configured with — like an nginx worker that blocks in an
//! OpenSSL engine while its peers go on.

/// Runs `f`, a blocking call, without stalling a tokio worker where that is
/// allowed (a multi-thread runtime); elsewhere (no runtime, or a
/// current-thread one, where `block_in_place` would panic) it just runs `f`.
pub fn run_blocking<T>(f: impl FnOnce() -> T) -> T {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current() {
        Ok(h) if h.runtime_flavor() == RuntimeFlavor::MultiThread => tokio::task::block_in_place(f),
        _ => f(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_outside_a_runtime_and_inside_both_flavors() {
        assert_eq!(run_blocking(|| 1), 1);
        let ct = tokio::runtime::Builder::new_current_thread().build().unwrap();
        assert_eq!(ct.block_on(async { run_blocking(|| 2) }), 2);
        let mt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .build()
            .unwrap();
        // With one worker, a task blocked in run_blocking must not stop another
        // task from running: the second task releases the first.
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let got = mt.block_on(async move {
            let waiter = tokio::spawn(async move { run_blocking(move || rx.recv().is_ok()) });
            tokio::task::yield_now().await;
            let sender = tokio::spawn(async move { tx.send(()).is_ok() });
            (waiter.await.unwrap(), sender.await.unwrap())
        });
        assert_eq!(got, (true, true));
    }
}
